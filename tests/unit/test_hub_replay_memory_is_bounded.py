"""The hub's replay memory forgets what has expired, by the log's clock (issue 12,
bounded state; ADR 0008): a copy accepted by the broker after ``exp + skew`` is refused
as expired anyway, so remembering its id longer only grows the table."""

from __future__ import annotations

from typing import Any

from gun_contract.security.replay import TableReplayGuard
from gun_hub.pipeline.admission import claim_partition, claims_memory

KEEP_S = 300


def _sight(guard: TableReplayGuard, n: int, expires_at: int, at: float, partition: int = 0) -> bool:
    return guard.first_sighting(f"id-{n}", expires_at, f"gun.declarations/{partition}/{n}", at)


def test_ids_are_forgotten_once_the_log_clock_is_past_their_expiry() -> None:
    table: dict[bytes, bytes] = {}
    guard = TableReplayGuard(table, keep_after_expiry_s=KEEP_S)
    for n in range(1000):  # one message a second, each valid ten minutes
        assert _sight(guard, n, expires_at=n + 600, at=float(n))
    # The log is at 999 s: ids that expired before 999 - 300 are gone, the rest kept.
    assert b"id-0" not in table
    assert b"id-999" in table
    assert len(table) <= 1000 - 50
    assert all(int(v.split(b"|")[1]) >= 999 - KEEP_S - 200 for v in table.values())


def test_a_replay_is_still_refused_while_its_id_could_be_accepted() -> None:
    table: dict[bytes, bytes] = {}
    guard = TableReplayGuard(table, keep_after_expiry_s=KEEP_S)
    assert _sight(guard, 1, expires_at=600, at=0.0)
    for n in range(2, 600):
        _sight(guard, n, expires_at=n + 600, at=float(n))
    assert not guard.first_sighting("id-1", 600, "gun.declarations/1/999", 599.0)
    assert guard.first_sighting("id-1", 600, "gun.declarations/0/1", 599.0)  # redelivery


def test_a_backlog_read_days_later_keeps_its_ids() -> None:
    """The clock is the broker's time of what is read, never the reader's."""
    table: dict[bytes, bytes] = {}
    guard = TableReplayGuard(table, keep_after_expiry_s=KEEP_S)
    three_days_ago = 1_700_000_000.0
    for n in range(500):
        _sight(guard, n, expires_at=int(three_days_ago) + n + 600, at=three_days_ago + n)
    assert len(table) == 500


def test_each_partition_forgets_only_the_ids_it_recorded() -> None:
    """faust deletes a key in the current event's partition: only that partition's ids."""
    table: dict[bytes, bytes] = {b"old-on-3": b"gun.responses.dgal/3/7|10"}
    guard = TableReplayGuard(table, keep_after_expiry_s=KEEP_S)
    for n in range(400):
        _sight(guard, n, expires_at=n + 600, at=float(n) + 10_000, partition=0)
    assert b"old-on-3" in table  # expired, but recorded by partition 3
    for n in range(400, 600):
        _sight(guard, n, expires_at=n + 600, at=float(n) + 10_000, partition=3)
    assert b"old-on-3" not in table  # forgotten while handling partition 3


def test_a_partition_taken_back_after_another_worker_had_it_forgets_that_workers_ids() -> None:
    """Several workers (issue 12): while partition 0 was another worker's, that worker
    recorded ids in the shared table; once 0 comes back, they are forgotten here too."""
    table: dict[bytes, bytes] = {}
    guard = TableReplayGuard(table, keep_after_expiry_s=KEEP_S)
    _sight(guard, 0, expires_at=600, at=0.0)
    guard.release([0])  # partition 0 revoked from this worker
    table[b"other-worker"] = b"gun.declarations/0/77|650"  # recorded by its next owner
    for n in range(1, 400):  # partition 0 is ours again; the log moves on
        _sight(guard, n, expires_at=n + 2000, at=float(n) + 2000)
    assert b"other-worker" not in table
    assert b"id-0" not in table


# -- found by review in stop 34 ------------------------------------------------------------


def test_an_entry_whose_position_holds_the_separator_does_not_stall_its_partition() -> None:
    """A position with ``|`` in it (a forged redrive claim's ``read_as``) made the seeding
    after every restart fail, and every later claim of its partition with it."""
    table: dict[bytes, bytes] = {b"evil": b"x|y|1", b"kept": b"gun.declarations/0/3|50"}
    # As the claims table: an id is recorded by its claim partition, whatever its position.
    guard = TableReplayGuard(table, keep_after_expiry_s=10, table_partition=lambda _i, _p: 0)
    assert guard.first_sighting("fresh", 100, "gun.declarations/0/7", seen_at=1.0)
    assert not guard.first_sighting("kept", 100, "gun.declarations/0/9", seen_at=1.0)


def test_a_broker_time_that_is_not_finite_does_not_stop_the_memory() -> None:
    guard = TableReplayGuard({}, keep_after_expiry_s=10)
    guard.first_sighting("first", 100, "gun.declarations/0/1", seen_at=float("inf"))
    for n in range(1_000):
        assert guard.first_sighting(f"id {n}", 100, f"gun.declarations/0/{n + 2}", seen_at=5.0)


def test_an_entry_kept_before_expiries_were_stored_still_names_its_position() -> None:
    """Entries stored as the bare position (before expiries were kept beside it) are read
    as that position, not as an empty one: a record read again at its own position is a
    redelivery, not a replay (found by review in stop 34)."""
    table: dict[bytes, bytes] = {b"old-id": b"gun.responses.dgal/0/5"}
    guard = TableReplayGuard(table, keep_after_expiry_s=10)
    assert guard.first_sighting("old-id", 100, "gun.responses.dgal/0/5", seen_at=1.0)
    assert guard.position_of("old-id") == "gun.responses.dgal/0/5"


# -- the claims memory hears of every declarations partition (found by review in stop 35) ---

PARTITIONS = 4
READABLE_S = 14 * 24 * 3600
THREE_HOURS_AGO = 1_700_000_000.0
NOW = THREE_HOURS_AGO + 3 * 3600


def _claims_memory(table: dict[bytes, bytes]) -> TableReplayGuard:
    return claims_memory(table, PARTITIONS, keep_after_expiry_s=KEEP_S, readable_s=READABLE_S)


_COMMITTED_AS_READ = -1.0


def _read_on(
    guard: TableReplayGuard,
    partitions: range,
    at: float,
    count: int = 4_000,
    readable_from: float | None = _COMMITTED_AS_READ,
) -> None:
    """Other declarations, read from ``partitions`` at broker time ``at``: enough for
    every claims partition to look for what it may forget, several times. Each claim
    says its partition can no longer be read again before ``readable_from`` (by default
    ``at``: committed as read; None: a claim from a worker that did not say)."""
    for n in range(count):
        partition = partitions[n % len(partitions)]
        assert guard.first_sighting(
            f"other-{at}-{n}",
            int(at) + 600,
            f"gun.declarations/{partition}/{n + 1000}",
            at,
            readable_from=at if readable_from == _COMMITTED_AS_READ else readable_from,
        )


def test_an_id_is_kept_while_a_partition_has_not_been_read_past_its_expiry() -> None:
    """Back after hours away: partition 1 holds a copy of a declaration whose original
    waits in partition 0's longer backlog. Partition 1 read to the present must not make
    the memory forget the id, or the original is a first sighting too and the version is
    decided twice, on two partitions (ADR 0008: an id is forgotten once every partition
    it may be read from is read past its expiry)."""
    table: dict[bytes, bytes] = {}
    guard = _claims_memory(table)
    expires_at = int(THREE_HOURS_AGO) + 600 + KEEP_S
    guard.first_sighting("old-on-0", expires_at, "gun.declarations/0/1", THREE_HOURS_AGO)
    assert guard.first_sighting("copied", expires_at, "gun.declarations/1/3", THREE_HOURS_AGO + 60)
    _read_on(guard, range(1, PARTITIONS), NOW)  # partition 0 not read on yet
    assert not guard.first_sighting("copied", expires_at, "gun.declarations/0/2", THREE_HOURS_AGO)


def test_once_every_partition_is_read_past_an_ids_expiry_it_is_forgotten() -> None:
    table: dict[bytes, bytes] = {}
    guard = _claims_memory(table)
    expires_at = int(THREE_HOURS_AGO) + 600 + KEEP_S
    guard.first_sighting("copied", expires_at, "gun.declarations/1/3", THREE_HOURS_AGO)
    _read_on(guard, range(PARTITIONS), NOW)
    assert b"copied" not in table


def test_a_partition_never_read_that_far_keeps_ids_no_longer_than_a_record_stays_readable() -> None:
    """A partition nobody writes to (or days behind) holds the forgetting back, but no
    longer than a copy could still be in the log: the memory stays bounded."""
    table: dict[bytes, bytes] = {}
    guard = _claims_memory(table)
    expires_at = int(THREE_HOURS_AGO) + 600 + KEEP_S
    guard.first_sighting("copied", expires_at, "gun.declarations/1/3", THREE_HOURS_AGO)
    _read_on(guard, range(1, PARTITIONS), NOW)
    assert b"copied" in table
    _read_on(guard, range(1, PARTITIONS), expires_at + READABLE_S + 1.0)
    assert b"copied" not in table


def test_a_claims_partition_behind_the_others_forgets_by_what_it_has_read() -> None:
    """One worker judges several claims partitions, read at their own pace. Claims from a
    declarations partition reach each claims partition in order, so what one claims
    partition has read says nothing of another's backlog: one running ahead must not
    make a lagging one forget an id whose copy's claim waits there (found by the review
    of stop 35's diff)."""
    table: dict[bytes, bytes] = {}
    guard = claims_memory(table, 2, keep_after_expiry_s=KEEP_S, readable_s=READABLE_S)
    on: dict[int, list[str]] = {0: [], 1: []}
    n = 0
    while min(len(ids) for ids in on.values()) < 2 * TableReplayGuard._PRUNE_EVERY:
        on[claim_partition(f"id-{n}", 2)].append(f"id-{n}")
        n += 1
    original, *later_on_0 = on[0]
    assert guard.first_sighting(original, 1000, "gun.declarations/0/5", 900.0)
    for k, message_id in enumerate(on[1]):  # claims partition 1 runs ahead
        assert guard.first_sighting(
            message_id, 2500, f"gun.declarations/{k % 2}/{k + 9}", 2000.0, readable_from=2000.0
        )
    for k, message_id in enumerate(later_on_0):  # claims partition 0, behind, reads on
        assert guard.first_sighting(
            message_id, 2400, f"gun.declarations/0/{k + 6}", 950.0, readable_from=950.0
        )
    # The copy, appended at 1200 (within exp + skew), its claim next on claims partition 0.
    assert not guard.first_sighting(original, 1000, "gun.declarations/1/7", 1200.0)


class CountingTable(dict[bytes, bytes]):
    """A table that counts its full scans (a faust table's ``items()`` reads every
    active partition's store: seconds at the claims memory's worst case)."""

    scans = 0

    def items(self) -> Any:
        self.scans += 1
        return super().items()


def test_taking_many_partitions_reads_the_table_once() -> None:
    """A worker given eight partitions at start-up seeds each one's expiry order at its
    first record: from one reading of the table, not one each (before: eight full scans
    on the event loop, where no heartbeat is sent)."""
    table = CountingTable(
        {f"old-{p}".encode(): f"gun.declarations/{p}/1|10".encode() for p in range(8)}
    )
    guard = TableReplayGuard(table, keep_after_expiry_s=KEEP_S)
    for n in range(8 * 200):  # 200 on each partition in turn: each forgets once
        _sight(guard, n, expires_at=n + 600, at=float(n) + 10_000, partition=n // 200)
    assert table.scans == 1
    assert not any(f"old-{p}".encode() in table for p in range(8))  # each seeded, forgotten


def test_a_partition_taken_back_is_seeded_from_a_new_reading() -> None:
    """What another worker recorded while it held the partition is in the table now: the
    reading made before the revocation does not stand for it."""
    table = CountingTable()
    guard = TableReplayGuard(table, keep_after_expiry_s=KEEP_S)
    _sight(guard, 1, expires_at=600, at=0.0, partition=0)
    guard.release([0, 1])
    table[b"theirs"] = b"gun.declarations/1/9|10"  # written by the other owner of 1
    for n in range(2, 2 + 400):
        _sight(guard, n, expires_at=n + 600, at=float(n) + 10_000, partition=1)
    assert table.scans == 2
    assert b"theirs" not in table


# -- a source partition's clock is how far it can no longer be read again (review, stop 36) --


def test_a_partition_read_past_an_ids_expiry_but_not_committed_past_it_keeps_the_id() -> None:
    """Found by review, stop 36 (A): a partition read to the present whose commit point
    is still before a copy of the id (the copy judged a replay, its record read again
    after a crash, a rebalance or a watchdog seek) must keep the id remembered: each
    claim says how far its partition can no longer be read again (``readable_from``),
    and only that moves the partition's clock, not the claim's own broker time."""
    table: dict[bytes, bytes] = {}
    guard = _claims_memory(table)
    expires_at = int(THREE_HOURS_AGO) + 600 + KEEP_S
    guard.first_sighting("copied", expires_at, "gun.declarations/1/3", THREE_HOURS_AGO)
    _read_on(guard, range(PARTITIONS), NOW, readable_from=THREE_HOURS_AGO + 60)
    assert b"copied" in table
    _read_on(guard, range(PARTITIONS), NOW + 1, readable_from=NOW)  # committed on
    assert b"copied" not in table


def test_a_claim_from_an_older_worker_does_not_move_its_partitions_clock() -> None:
    """During a rolling upgrade, a claim written without ``readable_from`` says nothing
    of how far its partition can be read again: the id is kept, but no longer than a
    record stays readable (the memory stays bounded)."""
    table: dict[bytes, bytes] = {}
    guard = _claims_memory(table)
    expires_at = int(THREE_HOURS_AGO) + 600 + KEEP_S
    guard.first_sighting("copied", expires_at, "gun.declarations/1/3", THREE_HOURS_AGO)
    _read_on(guard, range(PARTITIONS), NOW, readable_from=None)
    assert b"copied" in table
    _read_on(guard, range(PARTITIONS), expires_at + READABLE_S + 1.0, readable_from=None)
    assert b"copied" not in table


def test_an_id_whose_copy_was_refused_is_kept_while_that_copy_can_be_redriven() -> None:
    """A copy refused as a replay stays in the log for the declarations' retention, and
    anyone who writes gun.declarations can claim it, with a redrive header, as an
    original read again: the gate reads it back, finds it, and the claim is judged at
    the copy's position. Once the id was forgotten (every partition read past its
    expiry), that claim was a first sighting and the version was decided a second time
    (a second case on the copy's partition): the dead-letter desk refuses such a redrive,
    the gate did not know (stop 46's open item). The id is now kept, from the refusal,
    as long as a record can stay in the log."""
    table: dict[bytes, bytes] = {}
    guard = _claims_memory(table)
    expires_at = int(THREE_HOURS_AGO) + 600 + KEEP_S
    assert guard.first_sighting("copied", expires_at, "gun.declarations/0/3", THREE_HOURS_AGO)
    copy = "gun.declarations/1/7"
    assert not guard.first_sighting("copied", expires_at, copy, THREE_HOURS_AGO + 60)

    _read_on(guard, range(PARTITIONS), NOW)  # every partition read past its expiry
    # The redrive: the copy read again, at its position and broker time.
    redriven = guard.first_sighting("copied", expires_at, copy, THREE_HOURS_AGO + 60)
    assert not redriven, "a redrive laundered the replay"
    # Still bounded: forgotten once the copy can no longer be in the log.
    _read_on(guard, range(PARTITIONS), THREE_HOURS_AGO + 60 + READABLE_S + KEEP_S + 1.0)
    assert b"copied" not in table


def test_an_id_whose_copy_was_refused_is_kept_after_a_worker_takes_the_partition_over() -> None:
    """The later forgetting is in the table itself, not only this worker's expiry order:
    a worker seeding the partition from the table keeps the id as long."""
    table: dict[bytes, bytes] = {}
    guard = _claims_memory(table)
    expires_at = int(THREE_HOURS_AGO) + 600 + KEEP_S
    guard.first_sighting("copied", expires_at, "gun.declarations/0/3", THREE_HOURS_AGO)
    guard.first_sighting("copied", expires_at, "gun.declarations/1/7", THREE_HOURS_AGO + 60)

    successor = _claims_memory(table)
    _read_on(successor, range(PARTITIONS), NOW)
    assert b"copied" in table


# -- the answers' memory: each id by its own partition's commit (JOSE review of stop 48) ----
#
# The hub's memory of answer ids forgot by one clock for all, the latest broker time read
# on any response partition: after a stop, an authority whose partition was read up to
# the present made the ids of another's backlog forgotten while a copy of one of them
# still waited there, and the copy, fresh by its own broker time, was taken (a second
# write-off reported, a fact written twice). An answer is refused on any topic but the
# one it was sealed for, and a copy on another partition meets neither the memory nor
# the case of this one: so an id waits for its own partition to be committed past it.

DGA_0, DGAL_0 = "gun.responses.dga/0", "gun.responses.dgal/0"


class Commits:
    """Where each response partition can no longer be read again, in broker time (what
    the hub's commit clocks say: gun_contract/commit_clock.py)."""

    def __init__(self) -> None:
        self.readable_from: dict[tuple[str, int], float] = {}

    def of(self, topic: str, partition: int) -> float | None:
        return self.readable_from.get((topic, partition))


def _answers_memory(table: dict[bytes, bytes], commits: Commits) -> TableReplayGuard:
    return TableReplayGuard(
        table, keep_after_expiry_s=KEEP_S, source_clock=commits.of, readable_s=READABLE_S
    )


def _an_answer_read_three_hours_ago(guard: TableReplayGuard) -> int:
    """DGA's answer ``answer``, read at ``DGA_0/100`` three hours ago; its expiry."""
    expires_at = int(THREE_HOURS_AGO) + 3600 + KEEP_S
    assert guard.first_sighting("answer", expires_at, f"{DGA_0}/100", THREE_HOURS_AGO)
    return expires_at


def _answers_read_on(guard: TableReplayGuard, where: str, at: float, count: int = 400) -> None:
    for n in range(count):
        assert guard.first_sighting(f"{where}-{at}-{n}", int(at) + 600, f"{where}/{n + 1000}", at)


def test_an_answers_id_is_kept_while_its_own_partition_is_not_committed_past_it() -> None:
    table: dict[bytes, bytes] = {}
    commits = Commits()
    guard = _answers_memory(table, commits)
    expires_at = _an_answer_read_three_hours_ago(guard)
    # DGAL's partition 0 is read and committed to the present; DGA's is three hours behind.
    commits.readable_from[("gun.responses.dgal", 0)] = NOW
    commits.readable_from[("gun.responses.dga", 0)] = THREE_HOURS_AGO
    _answers_read_on(guard, DGAL_0, NOW)
    _answers_read_on(guard, DGA_0, THREE_HOURS_AGO + 30, count=200)
    assert b"answer" in table
    assert not guard.first_sighting("answer", expires_at, f"{DGA_0}/102", THREE_HOURS_AGO + 60)


def test_an_answers_id_read_past_but_not_committed_past_is_kept() -> None:
    table: dict[bytes, bytes] = {}
    commits = Commits()
    guard = _answers_memory(table, commits)
    _an_answer_read_three_hours_ago(guard)
    commits.readable_from[("gun.responses.dga", 0)] = THREE_HOURS_AGO  # the commit held back
    _answers_read_on(guard, DGA_0, NOW)
    assert b"answer" in table


def test_an_answers_id_is_forgotten_once_its_partition_is_committed_past_its_expiry() -> None:
    table: dict[bytes, bytes] = {}
    commits = Commits()
    guard = _answers_memory(table, commits)
    _an_answer_read_three_hours_ago(guard)
    commits.readable_from[("gun.responses.dga", 0)] = NOW  # DGAL's not known: no matter
    _answers_read_on(guard, DGA_0, NOW)
    assert b"answer" not in table


def test_an_answers_id_is_forgotten_no_later_than_a_copy_could_stay_in_the_log() -> None:
    table: dict[bytes, bytes] = {}
    guard = _answers_memory(table, Commits())  # no commit ever confirmed
    expires_at = _an_answer_read_three_hours_ago(guard)
    _answers_read_on(guard, DGA_0, expires_at + READABLE_S + 1.0)
    assert b"answer" not in table
