"""An adapter the hub has never heard from is as silent as one that stopped: every routed
authority has a heartbeat age on /metrics, counted from when this process began to listen,
so `GunHubAdapterSilent` pages for an adapter that crash-loops on a new deployment or whose
heartbeats are all refused (its key never imported). It used to have no series at all, and
nothing paged (found by review, stop 37, H6)."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gun_contract.health import CircuitStatus, PartnerHealth
from gun_hub.ops.lag_metrics import HEARTBEAT_AGE, OpsCollector, OpsState


def heartbeat_ages(state: OpsState, now: float) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(OpsCollector(state, lag=False, clock=lambda: now))
    from prometheus_client import generate_latest

    ages: dict[str, float] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        if family.name == HEARTBEAT_AGE:
            ages |= {sample.labels["authority"]: sample.value for sample in family.samples}
    return ages


def test_every_routed_authority_has_a_heartbeat_age_heard_or_not() -> None:
    state = OpsState(expected_partners=frozenset({"dgal", "cites", "dga"}), listening_since=1000.0)
    heard_at = datetime.fromtimestamp(1090.0, tz=UTC)
    state.partners[("dgal", "")] = PartnerHealth(
        authority="dgal",
        adapter="adapter-dgal-1",
        circuit=CircuitStatus.CLOSED,
        pending_operations=0,
        at=heard_at,
        every_s=5.0,
    )
    assert heartbeat_ages(state, now=1100.0) == {"dgal": 10.0, "cites": 100.0, "dga": 100.0}


def test_an_adapter_never_heard_from_ages_from_when_the_process_began_to_listen() -> None:
    state = OpsState(expected_partners=frozenset({"dga"}), listening_since=500.0)
    assert heartbeat_ages(state, now=530.0) == {"dga": 30.0}
    assert heartbeat_ages(state, now=620.0) == {"dga": 120.0}  # past the alert's 60 s


def test_an_adapter_heard_that_is_no_longer_routed_keeps_its_series() -> None:
    state = OpsState(expected_partners=frozenset(), listening_since=0.0)
    state.partners[("cites", "")] = PartnerHealth(
        authority="cites",
        adapter="adapter-cites-1",
        circuit=CircuitStatus.OPEN,
        pending_operations=3,
        at=datetime.fromtimestamp(10.0, tz=UTC),
        every_s=5.0,
    )
    assert heartbeat_ages(state, now=15.0) == {"cites": 5.0}


def test_an_authority_taken_out_of_the_routing_table_has_no_series_any_more() -> None:
    """Its heartbeats are refused since, and the view keeps its last one: exported, it
    aged for ever and paged ``GunHubAdapterSilent`` (its circuit's alert too, if it was
    open) for an authority removed on purpose (review of stop 47). Without the routed
    authorities known (above), every one heard keeps its series."""
    state = OpsState(expected_partners=frozenset({"dgal"}), listening_since=0.0)
    for authority in ("dgal", "cites"):
        state.partners[(authority, "")] = PartnerHealth(
            authority=authority,
            adapter=f"adapter-{authority}-1",
            circuit=CircuitStatus.OPEN,
            pending_operations=0,
            at=datetime.fromtimestamp(10.0, tz=UTC),
            every_s=5.0,
        )
    assert heartbeat_ages(state, now=3 * 86_400.0) == {"dgal": 3 * 86_400.0 - 10.0}
    assert list(state.routed_partners(3 * 86_400.0)) == ["dgal"]  # what the dashboard shows
