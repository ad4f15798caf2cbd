"""The adapters' and clearance reader's replay memory (SQLite, ADR 0008) forgets a
message id only once every partition of the topic it reads has been committed past the
id's expiry, each by its own clock (the broker time at its confirmed commit point: see
test_a_reader_forgets_a_message_id_only_past_its_partitions_commit.py), never by the
latest broker time read anywhere; and, while one partition is not read that far (idle,
another replica's), still forgets once no copy can be left in the log.

Found by review in stop 38 (L3): an adapter back after a day reads partition 0's short
backlog to the present first; the memory forgot every id expired before that, and a copy
of a request already handled, waiting in partition 1's longer backlog, was a first
sighting: a second call to the partner for one request.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gun_contract.security.entitlements import CLEARANCE_PARTY, Entitlements
from gun_contract.security.replay import SqliteReplayGuard
from gun_contract.topics import topic_registry
from gun_hub.security.factory import readable_s

SKEW = 300
LIFETIME = 300
T0 = 1_800_000_000.0  # the original's log-append time (the adapter is away from then)
DAY = 86_400.0
TOPIC = "gun.requests.dgal"
PRUNING = 1000  # sightings between two prunings of the memory


def read_to_the_present(guard: SqliteReplayGuard, partition: int, at: float, *, tag: str) -> None:
    """A backlog on ``partition`` accepted at ``at``, long enough to prune the memory."""
    for n in range(PRUNING):
        assert guard.first_sighting(
            f"{tag}-{n}", int(at + LIFETIME + SKEW), f"{TOPIC}/{partition}/{100 + n}", at
        )


def remembered(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {jti for (jti,) in db.execute("SELECT jti FROM seen")}


def test_a_copy_waiting_on_a_slower_partition_stays_a_replay(tmp_path: Path) -> None:
    guard = SqliteReplayGuard(tmp_path / "replay.sqlite", keep_after_expiry_s=SKEW, partitions=2)
    expiry = int(T0 + LIFETIME + SKEW)
    assert guard.first_sighting("jti-original", expiry, f"{TOPIC}/0/10", T0)
    assert guard.first_sighting("jti-other", expiry, f"{TOPIC}/1/2", T0)
    # Back a day later: partition 0's backlog is short, read to the present first.
    read_to_the_present(guard, 0, T0 + DAY, tag="p0")
    # Partition 1's backlog: a copy the broker accepted a minute after the original.
    assert not guard.first_sighting("jti-original", expiry, f"{TOPIC}/1/3", T0 + 60)


def test_a_partition_not_read_from_yet_holds_the_forgetting_back(tmp_path: Path) -> None:
    """Partition 1 not read from at all since the start (its backlog not reached yet):
    nothing says how far it is, so its copies are still possible."""
    guard = SqliteReplayGuard(tmp_path / "replay.sqlite", keep_after_expiry_s=SKEW, partitions=2)
    expiry = int(T0 + LIFETIME + SKEW)
    assert guard.first_sighting("jti-original", expiry, f"{TOPIC}/0/10", T0)
    read_to_the_present(guard, 0, T0 + DAY, tag="p0")
    assert not guard.first_sighting("jti-original", expiry, f"{TOPIC}/1/3", T0 + 60)


def test_without_the_partition_count_no_partition_is_taken_as_read(tmp_path: Path) -> None:
    guard = SqliteReplayGuard(tmp_path / "replay.sqlite", keep_after_expiry_s=SKEW)
    expiry = int(T0 + LIFETIME + SKEW)
    assert guard.first_sighting("jti-original", expiry, f"{TOPIC}/0/10", T0)
    read_to_the_present(guard, 0, T0 + DAY, tag="p0")
    assert not guard.first_sighting("jti-original", expiry, f"{TOPIC}/1/3", T0 + 60)


def test_ids_are_forgotten_once_every_partition_is_committed_past_them(tmp_path: Path) -> None:
    """Committed, not only read (the commit point: stop 38, L3's rest)."""
    path = tmp_path / "replay.sqlite"
    guard = SqliteReplayGuard(path, keep_after_expiry_s=SKEW, partitions=2)
    expiry = int(T0 + LIFETIME + SKEW)
    assert guard.first_sighting("jti-original", expiry, f"{TOPIC}/0/10", T0)
    assert guard.first_sighting("jti-other", expiry, f"{TOPIC}/1/2", T0 + DAY)
    guard.committed(TOPIC, 1, T0 + DAY)
    guard.committed(TOPIC, 0, T0 + DAY)
    read_to_the_present(guard, 0, T0 + DAY, tag="p0")
    assert "jti-original" not in remembered(path)


def test_an_idle_partition_holds_the_forgetting_back_no_longer_than_the_log_keeps_a_copy(
    tmp_path: Path,
) -> None:
    """Partition 1 gets nothing (its clock never moves): the memory stays bounded, by
    ``readable_s`` past an id's expiry, by when no copy accepted before it is in the log."""
    path = tmp_path / "replay.sqlite"
    readable_s = 14 * int(DAY)
    guard = SqliteReplayGuard(path, keep_after_expiry_s=SKEW, partitions=2, readable_s=readable_s)
    expiry = int(T0 + LIFETIME + SKEW)
    assert guard.first_sighting("jti-original", expiry, f"{TOPIC}/0/10", T0)
    read_to_the_present(guard, 0, T0 + readable_s - DAY, tag="within")
    assert "jti-original" in remembered(path)
    read_to_the_present(guard, 0, expiry + readable_s + 1, tag="beyond")
    assert "jti-original" not in remembered(path)
    assert remembered(path) >= {f"beyond-{n}" for n in range(PRUNING)}


def test_each_party_keeps_ids_as_long_as_the_topics_it_reads_keep_a_copy() -> None:
    """Twice the retention of the topics addressed to the party: seven days for an
    authority's requests, thirty for the clearance system's decisions."""
    topics = topic_registry("gun", ["dgal"])
    entitlements = Entitlements.from_registry(topics)
    assert readable_s(topics, entitlements, "dgal") == 14 * int(DAY)
    assert readable_s(topics, entitlements, CLEARANCE_PARTY) == 60 * int(DAY)
