"""The adapters' and clearance reader's replay memory (SQLite) read from a backlog.

Freshness is judged at the broker's log-append time (ADR 0006), so a reader days behind
still accepts what it reads; its replay memory must then follow the log's clock too: an id
is remembered while a copy of its message could still be accepted (broker time before
``exp`` plus the skew), whatever the reader's own clock says, and forgotten after.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from gun_contract.envelope import ContentType, EnvelopeRejected
from gun_contract.envelope import EnvelopeRejectionKind as Kind
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.jose_envelope import EnvelopePolicy, JoseEnvelope
from gun_contract.security.keystore import PartyKeys
from gun_contract.security.replay import SqliteReplayGuard
from gun_contract.topics import topic_registry
from tests.conftest import envelope_of

TOPICS = topic_registry("gun", ["cites", "dga", "dgal"])
TOPIC = TOPICS.requests("dgal")
POLICY = EnvelopePolicy(lifetime_s=3600, max_clock_skew_s=300)
T0 = 1_800_000_000.0  # when the broker accepted the first message
DAY = 86_400.0
BATCH = 1_200  # more than any pruning cadence of the guard


def sealed_at(
    keys_dir: Path, at: float, count: int, monkeypatch: pytest.MonkeyPatch
) -> list[bytes]:
    """``count`` requests sealed by the hub at ``at`` (the sender's clock)."""
    monkeypatch.setattr(time, "time", lambda: at)
    hub = envelope_of("hub", TOPICS, keys_dir)
    return [
        hub.seal(b"{}", recipient="dgal", topic=TOPIC, content_type=ContentType.JSON)
        for _ in range(count)
    ]


PARTITIONS = 2


def reader(keys_dir: Path, state: Path, guard: SqliteReplayGuard | None = None) -> JoseEnvelope:
    """DGAL's adapter as the factory builds it (gun_hub/security/factory.py)."""
    guard = guard or SqliteReplayGuard(
        state, keep_after_expiry_s=POLICY.max_clock_skew_s, partitions=PARTITIONS
    )
    return JoseEnvelope(
        PartyKeys.load(keys_dir, "dgal"), Entitlements.from_registry(TOPICS), guard, POLICY
    )


def read(envelope: JoseEnvelope, records: list[bytes], partition: int, at: float) -> None:
    """Read ``records`` from ``partition``, accepted by the broker from ``at`` on."""
    for offset, record in enumerate(records):
        envelope.open(
            record,
            topic=TOPIC,
            position=f"{TOPIC}/{partition}/{offset}",
            accepted_at=at + offset / 100,
        )


def test_an_id_read_days_late_is_remembered_while_a_copy_could_be_fresh(
    keys_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [original] = sealed_at(keys_dir, T0, 1, monkeypatch)
    backlog = sealed_at(keys_dir, T0 + 1, BATCH, monkeypatch)
    # The adapter comes back three days later and reads its backlog.
    monkeypatch.setattr(time, "time", lambda: T0 + 3 * DAY)
    envelope = reader(keys_dir, tmp_path / "replay.sqlite")
    read(envelope, [original], partition=0, at=T0)
    read(envelope, backlog, partition=0, at=T0 + 1)

    # A copy the broker accepted a minute after the original was fresh when accepted.
    with pytest.raises(EnvelopeRejected) as rejection:
        envelope.open(original, topic=TOPIC, position=f"{TOPIC}/1/0", accepted_at=T0 + 60)
    assert rejection.value.kind is Kind.REPLAY


def test_the_memory_forgets_ids_once_the_log_is_past_their_expiry(
    keys_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    early = sealed_at(keys_dir, T0, BATCH, monkeypatch)
    later = T0 + DAY
    late = sealed_at(keys_dir, later, BATCH, monkeypatch)
    monkeypatch.setattr(time, "time", lambda: T0 + 3 * DAY)
    state = tmp_path / "replay.sqlite"
    memory = SqliteReplayGuard(
        state, keep_after_expiry_s=POLICY.max_clock_skew_s, partitions=PARTITIONS
    )
    envelope = reader(keys_dir, state, memory)
    read(envelope, early, partition=0, at=T0)
    # Each partition committed past the early ids' expiry (by its own clock: stop 38, L3).
    read(envelope, late[: BATCH // 2], partition=1, at=later)
    memory.committed(TOPIC, 0, later)
    memory.committed(TOPIC, 1, later)
    read(envelope, late[BATCH // 2 :], partition=0, at=later)

    # Bounded: only ids of messages a copy of which could still be accepted remain.
    with sqlite3.connect(state) as db:
        (kept,) = db.execute("SELECT count(*) FROM seen").fetchone()
    assert kept <= BATCH
