"""Every adapter replica counts in its authority's health (found by the review of stop 54).

Adapters run as several replicas per authority (``adapter.replica_id``, one pending file
each; the partitions of the request topic spread over them), and each replica has a
circuit and a pending queue of its own. The operations view kept one heartbeat per
authority (``partners`` keyed by authority, ``INSERT OR REPLACE``), whichever replica sent
it, so ``gun_hub_partner_circuit_state`` and ``gun_hub_partner_pending_operations`` said
what the replica heard last said: a replica whose calls all fail (circuit open, 40
write-offs queued) and one with no traffic on its partitions (closed, nothing queued)
alternated every heartbeat; ``GunHubPartnerCircuitOpen`` (``for: 5m``) was reset by every
scrape that fell on the idle replica's beat and never fired, and the queued write-offs
read 0 half the time.

Now each heartbeat names its replica (``PartnerHealth.replica``; an older adapter's, with
none, reads as the nameless replica's), the view keeps one per (authority, replica), and
per authority the circuit is the worst among the replicas with a fresh heartbeat and the
pending operations their sum; a replica whose heartbeat is stale (older than three of its
periods, as the dashboard has always judged it) counts no more.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gun_contract.health import CircuitStatus, PartnerHealth, replica_name
from gun_contract.heartbeats import (
    HeartbeatFault,
    HeartbeatGate,
    HeartbeatRefused,
    signed_heartbeat,
)
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.keystore import PartyKeys
from gun_contract.settings import AdapterSettings, SecuritySettings, Settings
from gun_contract.topics import topic_registry
from gun_hub.ops.dashboard import live_figures
from gun_hub.ops.feed import OpsFeed
from gun_hub.ops.lag_metrics import CIRCUIT, HEARTBEAT_AGE, PENDING, OpsCollector, OpsState
from gun_hub.ops.view import REPLICAS_KEPT, FeedRecord, FeedTopics, OpsView
from tests.adapter_fixtures import adapter_runner
from tests.conftest import envelope_of

TOPICS = FeedTopics(status="g.status", facts="g.hub.facts", dlq="g.dlq", health="g.ops.health")
NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def health(
    replica: str, circuit: CircuitStatus, pending: int, *, age_s: float = 0
) -> PartnerHealth:
    return PartnerHealth(
        authority="dgal",
        adapter="adapter.dgal",  # the same client id for every replica
        replica=replica,
        circuit=circuit,
        pending_operations=pending,
        at=NOON - timedelta(seconds=age_s),
        every_s=5,
    )


def record(offset: int, beat: PartnerHealth) -> FeedRecord:
    return FeedRecord(TOPICS.health, 0, offset, int(NOON.timestamp() * 1000), beat.to_bytes())


def state_of(view: OpsView) -> OpsState:
    state = OpsState(expected_partners=frozenset({"dgal"}), listening_since=NOON.timestamp())
    state.partners = view.partners()
    return state


def scraped(view: OpsView) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry()
    registry.register(OpsCollector(state_of(view), lag=False, clock=lambda: NOON.timestamp()))
    seen: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if family.name == CIRCUIT:
                seen[(CIRCUIT, sample.labels["state"])] = sample.value
            elif family.name in (PENDING, HEARTBEAT_AGE):
                seen[(family.name, "")] = sample.value
    return seen


def test_an_idle_replicas_heartbeat_does_not_hide_another_replicas_open_circuit(
    tmp_path: Path,
) -> None:
    view = OpsView(tmp_path / "view.sqlite3", TOPICS)
    # Replica a's partitions carry the traffic: its partner calls fail, its circuit is
    # open, 40 write-offs wait. Replica b's partitions are quiet: closed, nothing queued.
    a = health("a", CircuitStatus.OPEN, 40, age_s=2)
    b = health("b", CircuitStatus.CLOSED, 0)
    for beats in ([a, b], [b, a]):  # whichever beat last
        view.apply([record(0, beats[0]), record(1, beats[1])])
        metrics = scraped(view)
        assert metrics[(CIRCUIT, "open")] == 1
        assert metrics[(CIRCUIT, "closed")] == 0, "the idle replica hid the failing one"
        assert metrics[(PENDING, "")] == 40, "the 40 write-offs replica a holds are not counted"
        assert metrics[(HEARTBEAT_AGE, "")] == 0  # the freshest replica's
    assert view.partners() == {("dgal", "a"): a, ("dgal", "b"): b}


def test_the_pending_operations_of_the_replicas_with_a_fresh_heartbeat_add_up(
    tmp_path: Path,
) -> None:
    view = OpsView(tmp_path / "view.sqlite3", TOPICS)
    view.apply(
        [
            record(0, health("a", CircuitStatus.HALF_OPEN, 40)),
            record(1, health("b", CircuitStatus.CLOSED, 2)),
        ]
    )
    metrics = scraped(view)
    assert (metrics[(CIRCUIT, "half_open")], metrics[(PENDING, "")]) == (1, 42)


def test_a_replica_whose_heartbeat_is_stale_counts_no_more(tmp_path: Path) -> None:
    """Replica a stopped (scaled away, or cut off) 20 s ago, open with 40 queued: over
    three of its 5-s periods, it no longer says how the authority is. The page and the
    dashboard's JSON still list it, marked stale."""
    view = OpsView(tmp_path / "view.sqlite3", TOPICS)
    view.apply(
        [
            record(0, health("a", CircuitStatus.OPEN, 40, age_s=20)),
            record(1, health("b", CircuitStatus.CLOSED, 1, age_s=4)),
        ]
    )
    metrics = scraped(view)
    assert (metrics[(CIRCUIT, "open")], metrics[(CIRCUIT, "closed")]) == (0, 1)
    assert (metrics[(PENDING, "")], metrics[(HEARTBEAT_AGE, "")]) == (1, 4)

    [dgal] = live_figures(state_of(view), NOON.timestamp())["partners"]
    assert (dgal["circuit"], dgal["pending_operations"], dgal["stale"]) == ("closed", 1, False)
    assert [(r["replica"], r["circuit"], r["stale"]) for r in dgal["replicas"]] == [
        ("a", "open", True),
        ("b", "closed", False),
    ]


def test_with_every_replica_stale_the_last_heartbeat_heard_says_what_is_known(
    tmp_path: Path,
) -> None:
    """As before replicas named themselves: the adapter silent, its last word stands
    (``GunHubAdapterSilent`` pages on the age; an open circuit stays open)."""
    view = OpsView(tmp_path / "view.sqlite3", TOPICS)
    view.apply(
        [
            record(0, health("a", CircuitStatus.OPEN, 40, age_s=90)),
            record(1, health("b", CircuitStatus.CLOSED, 3, age_s=120)),
        ]
    )
    metrics = scraped(view)
    assert (metrics[(CIRCUIT, "open")], metrics[(PENDING, "")]) == (1, 40)
    assert metrics[(HEARTBEAT_AGE, "")] == 90
    [dgal] = live_figures(state_of(view), NOON.timestamp())["partners"]
    assert dgal["stale"] is True


def test_a_heartbeat_from_an_adapter_that_names_no_replica_still_reads(tmp_path: Path) -> None:
    """An adapter from before stop 54 sends no ``replica``: it is the nameless replica."""
    old = health("", CircuitStatus.OPEN, 5).model_dump(mode="json")
    del old["replica"]
    view = OpsView(tmp_path / "view.sqlite3", TOPICS)
    view.apply([FeedRecord(TOPICS.health, 0, 0, 0, json.dumps(old).encode())])
    assert view.skipped == 0
    assert view.partners()[("dgal", "")].circuit is CircuitStatus.OPEN


def test_a_view_file_that_kept_one_heartbeat_per_authority_is_migrated(tmp_path: Path) -> None:
    """A view made before stop 54 (``partners`` keyed by authority alone): its heartbeat is
    kept as the nameless replica's, and each replica's next heartbeat gets a row of its
    own."""
    path = tmp_path / "view.sqlite3"
    OpsView(path, TOPICS).close()
    before = health("", CircuitStatus.OPEN, 7, age_s=60).model_dump(mode="json")
    del before["replica"]
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE partners")
        db.execute("CREATE TABLE partners (authority TEXT PRIMARY KEY, health TEXT NOT NULL)")
        db.execute("INSERT INTO partners VALUES (?, ?)", ("dgal", json.dumps(before)))
    db.close()

    view = OpsView(path, TOPICS)
    [(key, kept)] = view.partners().items()
    assert (key, kept.circuit, kept.pending_operations) == (("dgal", ""), CircuitStatus.OPEN, 7)
    a = health("a", CircuitStatus.CLOSED, 0)
    view.apply([record(0, a)])
    assert view.partners() == {("dgal", ""): kept, ("dgal", "a"): a}
    # The old row is stale by now: replica a alone says how DGAL is.
    metrics = scraped(view)
    assert (metrics[(CIRCUIT, "closed")], metrics[(PENDING, "")]) == (1, 0)
    view.close()
    assert sorted(OpsView(path, TOPICS).partners()) == [("dgal", ""), ("dgal", "a")]


def test_replicas_whose_clocks_differ_do_not_refuse_each_others_heartbeats(
    keys_dir: Path,
) -> None:
    """A heartbeat must be newer than the last believed of its own replica, not of its
    authority: replica b's clock a second behind a's had its beats refused."""
    topics = topic_registry("gun", ("dgal",))
    gate = HeartbeatGate(PartyKeys.load(keys_dir, "hub"), Entitlements.from_registry(topics))
    now = datetime.now(UTC)
    b = health("b", CircuitStatus.CLOSED, 0).model_copy(update={"at": now - timedelta(seconds=1)})
    value = signed_heartbeat(envelope_of("dgal", topics, keys_dir), b, topics.ops_health)
    assert gate.check(value, topic=topics.ops_health, latest={("dgal", "a"): now}) == b
    with pytest.raises(HeartbeatRefused) as refused:  # b's own older beat, written again
        gate.check(value, topic=topics.ops_health, latest={("dgal", "b"): now})
    assert refused.value.fault is HeartbeatFault.NOT_NEWER


def test_an_adapter_replica_names_itself_in_its_heartbeat(tmp_path: Path, keys_dir: Path) -> None:
    topics = topic_registry("gun", ("dgal",))
    settings = Settings(
        security=SecuritySettings(keys_dir=keys_dir, state_dir=tmp_path / "state"),
        adapter=AdapterSettings(replica_id="2"),
    )
    runner = adapter_runner("dgal", settings, topics)
    try:
        gate = HeartbeatGate(PartyKeys.load(keys_dir, "hub"), Entitlements.from_registry(topics))
        believed = gate.check(runner.heartbeat(), topic=topics.ops_health)
    finally:
        runner.pending.close()
    assert (believed.adapter, believed.replica_key) == ("adapter.dgal", ("dgal", "2"))


def test_a_replica_without_a_replica_id_is_named_by_its_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Replicas with a volume each (a StatefulSet) need no ``replica_id``: without one,
    the pod's name tells them apart, held to what a replica name may be."""
    assert replica_name("2") == "2"
    monkeypatch.setattr(socket, "gethostname", lambda: "adapter-dgal-1")
    assert replica_name("") == "adapter-dgal-1"
    monkeypatch.setattr(socket, "gethostname", lambda: "h\u00f4te/" + "x" * 80)
    named = replica_name("")
    assert named == ("h_te_" + "x" * 80)[:64]
    assert health(named, CircuitStatus.CLOSED, 0).replica == named  # a valid heartbeat


async def test_a_replica_silent_for_a_day_is_forgotten_but_each_authoritys_latest_stays(
    tmp_path: Path,
) -> None:
    """A replica scaled away, or a pod replaced under another name, is listed (stale) for
    a day, then forgotten; an authority whose every replica is silent keeps its last
    heartbeat, so it stays silent rather than unknown."""
    view = OpsView(tmp_path / "view.sqlite3", TOPICS)
    day = 86_400
    old_cites = health("x", CircuitStatus.OPEN, 1, age_s=3 * day).model_copy(
        update={"authority": "cites"}
    )
    view.apply(
        [
            record(0, health("a", CircuitStatus.OPEN, 40, age_s=2 * day)),
            record(1, health("b", CircuitStatus.CLOSED, 0, age_s=day - 60)),
            record(2, health("c", CircuitStatus.CLOSED, 0)),
            record(3, old_cites),
        ]
    )
    state = state_of(view)
    feed = OpsFeed(None, view, state, retention_s=30 * day)  # type: ignore[arg-type]
    assert await feed.prune_if_due(NOON.timestamp())
    assert sorted(view.partners()) == [("cites", "x"), ("dgal", "b"), ("dgal", "c")]
    assert state.partners == view.partners()


def test_an_authoritys_replicas_kept_are_bounded_the_least_recently_heard_forgotten(
    tmp_path: Path,
) -> None:
    """A replica names itself by its host name without a replica id: a crash-looping
    Deployment's pods (a new name each), or an adapter key misused to sign ever new
    names, would grow the view's table, and every scrape's reading of it, without bound.
    The least recently heard go first; the freshest, failing one stays."""
    view = OpsView(tmp_path / "view.sqlite3", TOPICS)
    names = [f"pod-{n}" for n in range(REPLICAS_KEPT + 10)]
    beats = [
        health(name, CircuitStatus.CLOSED, 0, age_s=len(names) - n) for n, name in enumerate(names)
    ]
    failing = health("pod-now", CircuitStatus.OPEN, 7)
    view.apply([record(n, beat) for n, beat in enumerate([*beats, failing])])
    kept = view.partners()
    assert len(kept) == REPLICAS_KEPT
    assert ("dgal", "pod-now") in kept
    assert ("dgal", "pod-0") not in kept  # heard longest ago
    assert scraped(view)[(CIRCUIT, "open")] == 1
