"""Consumer lag arithmetic, growth detection and its Prometheus exposition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest

from gun_contract.health import CircuitStatus, PartnerHealth
from gun_contract.topics import topic_registry
from gun_hub.ops.lag import (
    GrowthWatch,
    TransactionHold,
    partition_lags,
    snapshot,
    transaction_holds,
)
from gun_hub.ops.lag_metrics import OpsCollector, OpsState
from gun_hub.ops.lag_monitor import watched_groups

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def test_lag_is_the_end_offset_minus_the_committed_offset() -> None:
    [lag] = partition_lags("g", {("t", 0): 40}, {("t", 0): 100})
    assert (lag.committed, lag.end, lag.lag) == (40, 100, 60)


def test_a_partition_never_committed_counts_what_it_still_holds() -> None:
    [lag] = partition_lags("g", {}, {("t", 0): 100}, {("t", 0): 30})
    assert (lag.committed, lag.lag) == (None, 70)


def test_lag_is_never_negative() -> None:
    # A commit read just after the end offsets were fetched can be ahead of them.
    [lag] = partition_lags("g", {("t", 0): 105}, {("t", 0): 100})
    assert lag.lag == 0


def test_a_group_is_flagged_only_when_its_lag_rises_at_each_of_its_last_measurements() -> None:
    watch = GrowthWatch(samples=3)
    assert [watch.observe("g", lag) for lag in (0, 5, 10)] == [False, False, False]
    assert watch.observe("g", 15) is True
    assert watch.observe("g", 15) is False  # a plateau is not growth
    assert [watch.observe("g", lag) for lag in (16, 17)] == [False, False]
    assert watch.observe("g", 18) is True
    assert watch.observe("other", 1000) is False  # each group has its own history


def test_a_snapshot_sums_lag_per_group() -> None:
    lags = partition_lags("a", {("t", 0): 1, ("t", 1): 2}, {("t", 0): 5, ("t", 1): 4})
    lags += partition_lags("b", {("u", 0): 7}, {("u", 0): 7})
    measured = snapshot(NOW, lags, GrowthWatch())
    assert [(g.group, g.lag, g.growing) for g in measured.groups] == [
        ("a", 6, False),
        ("b", 0, False),
    ]


def test_every_group_of_the_topology_is_watched_on_the_topics_it_reads() -> None:
    topics = topic_registry("gun", ["dgal", "cites"])
    groups = {w.group: w.topics for w in watched_groups(topics, "gun-hub", "gun-clearance")}
    assert set(groups) == {
        "gun-hub",
        "gun-hub-publisher",
        "gun-adapter-dgal",
        "gun-adapter-cites",
        "gun-clearance",
    }
    assert groups["gun-adapter-dgal"] == ("gun.requests.dgal",)
    assert "gun.responses.cites" in groups["gun-hub"]
    assert groups["gun-clearance"] == ("gun.decisions",)


def exposition(state: OpsState) -> str:
    registry = CollectorRegistry()
    registry.register(OpsCollector(state))
    return generate_latest(registry).decode()


def test_lag_is_exposed_with_kafka_exporter_names_and_labels() -> None:
    lags = partition_lags(
        "gun-adapter-dgal", {("gun.requests.dgal", 0): 3}, {("gun.requests.dgal", 0): 10}
    )
    watch = GrowthWatch(samples=1)
    watch.observe("gun-adapter-dgal", 1)
    text = exposition(OpsState(lag=snapshot(NOW, lags, watch)))
    group, topic = 'consumergroup="gun-adapter-dgal"', 'topic="gun.requests.dgal"'
    assert f'kafka_consumergroup_lag{{{group},partition="0",{topic}}} 7.0' in text
    assert f"kafka_consumergroup_lag_sum{{{group},{topic}}} 7.0" in text
    assert f'kafka_consumergroup_current_offset{{{group},partition="0",{topic}}} 3.0' in text
    assert f'kafka_topic_partition_current_offset{{partition="0",{topic}}} 10.0' in text
    assert f"gun_hub_consumergroup_lag_growing{{{group}}} 1.0" in text


def test_a_group_gone_from_the_snapshot_is_gone_from_the_metrics() -> None:
    state = OpsState(lag=snapshot(NOW, partition_lags("old", {}, {("t", 0): 1}), GrowthWatch()))
    assert 'consumergroup="old"' in exposition(state)
    state.lag = snapshot(NOW, partition_lags("new", {}, {("t", 0): 1}), GrowthWatch())
    assert 'consumergroup="old"' not in exposition(state)


def test_partner_health_is_exposed_as_one_state_set_per_authority() -> None:
    beat = PartnerHealth(
        authority="cites",
        adapter="adapter.cites",
        circuit=CircuitStatus.OPEN,
        pending_operations=4,
        at=datetime.now(UTC) - timedelta(seconds=3),
        every_s=5,
    )
    text = exposition(OpsState(partners={("cites", ""): beat}))
    assert 'gun_hub_partner_circuit_state{authority="cites",state="open"} 1.0' in text
    assert 'gun_hub_partner_circuit_state{authority="cites",state="closed"} 0.0' in text
    assert 'gun_hub_partner_pending_operations{authority="cites"} 4.0' in text
    age = next(
        line
        for line in text.splitlines()
        if line.startswith("gun_hub_partner_heartbeat_age_seconds")
    )
    assert 2.5 < float(age.split()[-1]) < 60


# -- records held behind an open transaction -------------------------------------------------
# A consumer that reads committed records only (the hub, since stop 31) reads nothing past
# an open transaction's first record, whoever wrote what follows it. The broker aborts a
# transaction left open past its timeout (a minute here), but a "hanging" transaction
# (KAFKA-12671) holds its partition until an operator aborts it (kafka-transactions.sh).


def test_records_behind_an_open_transaction_are_counted_per_partition() -> None:
    held = transaction_holds(
        ends={("gun.declarations", 0): 10, ("gun.declarations", 1): 5},
        stable_ends={("gun.declarations", 0): 7, ("gun.declarations", 1): 5},
        before=[],
        at=NOW,
    )
    assert held == [
        TransactionHold(topic="gun.declarations", partition=0, stable_end=7, records=3, since=NOW)
    ]


def test_a_hold_is_dated_from_when_its_stable_end_stopped_moving() -> None:
    first = transaction_holds({("t", 0): 10}, {("t", 0): 7}, [], NOW)
    later = NOW + timedelta(seconds=90)
    [still] = transaction_holds({("t", 0): 12}, {("t", 0): 7}, first, later)
    assert (still.records, still.since) == (5, NOW)
    [moved] = transaction_holds({("t", 0): 12}, {("t", 0): 9}, first, later)
    assert (moved.records, moved.since) == (3, later)  # another transaction, held anew
    assert transaction_holds({("t", 0): 12}, {("t", 0): 12}, first, later) == []


def test_held_records_and_how_long_are_exposed_per_partition() -> None:
    at = datetime.now(UTC) - timedelta(seconds=40)
    held = [
        TransactionHold(topic="gun.declarations", partition=2, stable_end=7, records=3, since=at)
    ]
    text = exposition(OpsState(lag=snapshot(NOW, [], GrowthWatch(), held)))
    where = 'partition="2",topic="gun.declarations"'
    assert f"gun_hub_partition_open_transaction_records{{{where}}} 3.0" in text
    age = next(
        line
        for line in text.splitlines()
        if line.startswith("gun_hub_partition_open_transaction_age_seconds")
    )
    assert where in age
    assert 39 < float(age.split()[-1]) < 120


def test_a_hold_is_kept_with_its_date_while_the_stable_end_cannot_be_read() -> None:
    """One failed question to the broker must not make a hanging transaction look new."""
    first = transaction_holds({("t", 0): 10}, {("t", 0): 7}, [], NOW)
    later = NOW + timedelta(seconds=300)
    assert transaction_holds({("t", 0): 12}, {}, first, later) == first
