"""The adapters' and clearance reader's replay memory (SQLite) forgets a message id only
once every partition of the topic it reads is *committed* past the id's expiry (the broker
time of the record at each partition's confirmed commit point), never by how far a
partition was *read*.

Found by review in stop 38 (L3, its rest; the hub's claims memory had it in stop 36, ADR
0008): an adapter's commit is held at its oldest pending operation (ADR 0014) while it
reads ahead, so after a rebalance or a restart it reads the partition again from far
back. The memory had forgotten the ids of what it read ahead meanwhile, and a copy it had
judged a replay there was a first sighting the second time: asked of the partner again.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gun_contract.commit_clock import CommitClock
from gun_contract.security.replay import SqliteReplayGuard

SKEW = 300
LIFETIME = 300
T0 = 1_800_000_000.0  # the original's log-append time
DAY = 86_400.0
TOPIC = "gun.requests.dgal"
PRUNING = 1000  # sightings between two prunings of the memory
EXPIRY = int(T0 + LIFETIME + SKEW)


def read_ahead(guard: SqliteReplayGuard, partition: int, at: float, *, tag: str) -> None:
    """Records of ``partition`` accepted at ``at``, enough to prune the memory."""
    for n in range(PRUNING):
        assert guard.first_sighting(
            f"{tag}-{n}", int(at + LIFETIME + SKEW), f"{TOPIC}/{partition}/{100 + n}", at
        )


def remembered(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {jti for (jti,) in db.execute("SELECT jti FROM seen")}


def test_a_copy_read_again_from_a_held_commit_stays_a_replay(tmp_path: Path) -> None:
    guard = SqliteReplayGuard(tmp_path / "replay.sqlite", keep_after_expiry_s=SKEW, partitions=2)
    assert guard.first_sighting("jti-original", EXPIRY, f"{TOPIC}/0/10", T0)
    # A copy on partition 1, a minute later: a replay, dead-lettered.
    assert not guard.first_sighting("jti-original", EXPIRY, f"{TOPIC}/1/3", T0 + 60)
    # Partition 1's commit is held before the copy (an operation pending on a down
    # partner); both partitions are read a day ahead, partition 0 committed there.
    guard.committed(TOPIC, 1, T0 - 1)
    read_ahead(guard, 0, T0 + DAY, tag="p0")
    read_ahead(guard, 1, T0 + DAY, tag="p1")
    guard.committed(TOPIC, 0, T0 + DAY)
    read_ahead(guard, 0, T0 + DAY + 1, tag="p0-more")
    # A rebalance: partition 1 is read again from its commit. The copy is still a replay.
    assert not guard.first_sighting("jti-original", EXPIRY, f"{TOPIC}/1/3", T0 + 60)


def test_ids_are_forgotten_once_every_partition_is_committed_past_them(tmp_path: Path) -> None:
    path = tmp_path / "replay.sqlite"
    guard = SqliteReplayGuard(path, keep_after_expiry_s=SKEW, partitions=2)
    assert guard.first_sighting("jti-original", EXPIRY, f"{TOPIC}/0/10", T0)
    read_ahead(guard, 0, T0 + DAY, tag="p0")
    read_ahead(guard, 1, T0 + DAY, tag="p1")
    assert "jti-original" in remembered(path)  # read past, not committed past
    guard.committed(TOPIC, 0, T0 + DAY)
    guard.committed(TOPIC, 1, T0 + DAY)
    read_ahead(guard, 0, T0 + DAY + 1, tag="p0-more")
    assert "jti-original" not in remembered(path)


def test_a_commit_clock_never_goes_back(tmp_path: Path) -> None:
    """A commit reported late (an older one confirmed after a newer) moves nothing back."""
    path = tmp_path / "replay.sqlite"
    guard = SqliteReplayGuard(path, keep_after_expiry_s=SKEW, partitions=1)
    assert guard.first_sighting("jti-original", EXPIRY, f"{TOPIC}/0/10", T0)
    guard.committed(TOPIC, 0, T0 + DAY)
    guard.committed(TOPIC, 0, T0)
    read_ahead(guard, 0, T0 + DAY + 1, tag="p0")
    assert "jti-original" not in remembered(path)


# -- what a partition can no longer be read again below -----------------------------------


def test_the_commit_point_time_is_the_records_at_the_commit_or_the_last_before_it() -> None:
    clock = CommitClock()
    for offset in range(10):
        clock.saw(0, offset, T0 + offset)
    assert clock.readable_from(0, 4) == T0 + 4  # the record at the commit was read
    assert clock.readable_from(0, 10) == T0 + 9  # not yet: the latest read before it
    assert clock.readable_from(1, 4) is None  # nothing read of that partition


def test_a_commit_below_everything_read_says_nothing() -> None:
    """A commit held at an operation queued before this process read anything (its row
    kept in the pending file): no time is known below it."""
    clock = CommitClock()
    for offset in range(100, 110):
        clock.saw(0, offset, T0 + offset)
    assert clock.readable_from(0, 50) is None


def test_records_without_a_broker_time_say_nothing() -> None:
    clock = CommitClock()
    clock.saw(0, 0, None)
    assert clock.readable_from(0, 1) is None


def test_a_long_read_ahead_keeps_a_bounded_number_of_times_never_a_later_one() -> None:
    """Held at an old commit for a long outage, the reader reads ahead a whole backlog:
    the times kept are thinned, and what is said for a commit point is never later than
    the record's own (a later one would forget ids a copy read again still needs)."""
    clock = CommitClock()
    for offset in range(200_000):
        clock.saw(0, offset, T0 + offset)
    assert clock.kept(0) <= 2 * CommitClock.KEEP
    for commit in (1, 12_345, 150_001, 200_000):
        said = clock.readable_from(0, commit)
        assert said is not None
        assert said <= T0 + commit
    assert clock.readable_from(0, 200_000) == T0 + 199_999


def test_a_revoked_partition_is_forgotten() -> None:
    clock = CommitClock()
    clock.saw(0, 5, T0)
    clock.forget({0})
    assert clock.readable_from(0, 6) is None
