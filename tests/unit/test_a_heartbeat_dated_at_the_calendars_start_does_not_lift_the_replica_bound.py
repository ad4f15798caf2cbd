"""A heartbeat dated at the calendar's start in a zone east of UTC lifts the view's bound
on replicas per authority.

``PartnerHealth.at`` is any aware datetime pydantic reads: ``0001-01-01T00:00:00+14:00``
is one (it lies 14 hours before the first instant UTC can name). The heartbeat gate
believes it (not ahead of the clock, not older than a replica never heard before; signed
by the authority's own key, the very misuse ``REPLICAS_KEPT`` is there for). The view
stores it, and from then on ``OpsView._keep_replicas_of`` (view.py) sorts the kept
heartbeats by ``_heard_at``, which calls ``.astimezone(UTC)`` on it: ``OverflowError``,
caught by nobody there (``_heard_at`` catches ``ValidationError`` only). Each further
heartbeat of that authority is already INSERTed (no savepoint on the health topic) and
then counted as skipped; the trim never runs again, so a key signing ever new replica
names grows the partners table, and what every scrape and every dashboard poll reads,
without bound.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from gun_contract.health import CircuitStatus, PartnerHealth
from gun_hub.ops.view import REPLICAS_KEPT, FeedRecord, FeedTopics, OpsView

TOPICS = FeedTopics(status="g.status", facts="g.hub.facts", dlq="g.dlq", health="g.ops.health")
NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
CALENDARS_START_EAST = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))


def beat(replica: str, at: datetime) -> PartnerHealth:
    return PartnerHealth(
        authority="dgal",
        adapter="adapter.dgal",
        replica=replica,
        circuit=CircuitStatus.CLOSED,
        pending_operations=0,
        at=at,
        every_s=5,
    )


def record(offset: int, health: PartnerHealth) -> FeedRecord:
    return FeedRecord(TOPICS.health, 0, offset, int(NOON.timestamp() * 1000), health.to_bytes())


def test_one_heartbeat_dated_0001_01_01_plus_14_does_not_let_the_replicas_grow(
    tmp_path: Path,
) -> None:
    view = OpsView(tmp_path / "view.sqlite3", TOPICS)
    records = [record(0, beat("pod-odd", CALENDARS_START_EAST))]
    records += [
        record(n + 1, beat(f"pod-{n}", NOON - timedelta(seconds=n)))
        for n in range(REPLICAS_KEPT + 10)
    ]
    view.apply(records)
    assert view.skipped == 0  # fails: every heartbeat past the 64th raised OverflowError
    assert len(view.partners()) == REPLICAS_KEPT


def test_the_gate_believes_such_a_heartbeat_signed_by_its_authority(keys_dir: Path) -> None:
    """What reaches the view above: the gate lets it through (passes today)."""
    from gun_contract.heartbeats import HeartbeatGate, signed_heartbeat
    from gun_contract.security.entitlements import Entitlements
    from gun_contract.security.keystore import PartyKeys
    from gun_contract.topics import topic_registry
    from tests.conftest import envelope_of

    topics = topic_registry("gun", ("dgal", "cites", "dga"))
    health = beat("pod-odd", CALENDARS_START_EAST)
    value = signed_heartbeat(envelope_of("dgal", topics, keys_dir), health, topics.ops_health)
    gate = HeartbeatGate(PartyKeys.load(keys_dir, "hub"), Entitlements.from_registry(topics))
    assert gate.check(value, topic=topics.ops_health) == health
