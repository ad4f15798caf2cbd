"""Lag and partner health as Prometheus metrics, named as kafka_exporter names them.

A collector reads the latest snapshot at scrape time, so a group or partition that
disappears from the cluster disappears from ``/metrics`` too (gauges set once would stay
forever). Labels are bounded: groups, topics, partitions and authorities, never a
reference.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from gun_contract.health import CircuitStatus, PartnerHealth
from gun_hub.ops.lag import LagSnapshot, TransactionHold, UnreadAge

LAG = "kafka_consumergroup_lag"
LAG_SUM = "kafka_consumergroup_lag_sum"
GROUP_OFFSET = "kafka_consumergroup_current_offset"
TOPIC_OFFSET = "kafka_topic_partition_current_offset"
LAG_GROWING = "gun_hub_consumergroup_lag_growing"
LOST = "gun_hub_consumergroup_lost_to_retention_records"
HELD_RECORDS = "gun_hub_partition_open_transaction_records"
HELD_AGE = "gun_hub_partition_open_transaction_age_seconds"
UNREAD_AGE = "gun_hub_consumergroup_oldest_unread_age_seconds"
RETENTION_HEADROOM = "gun_hub_consumergroup_retention_headroom_seconds"
RETENTION = "gun_hub_topic_retention_seconds"
CIRCUIT = "gun_hub_partner_circuit_state"
PENDING = "gun_hub_partner_pending_operations"
HEARTBEAT_AGE = "gun_hub_partner_heartbeat_age_seconds"

STALE_PERIODS = 3
"""A heartbeat older than this many of its periods (``every_s``) is stale: its replica
stopped, or cannot reach the broker."""

# The worst circuit among an authority's replicas is the authority's.
_SEVERITY = {CircuitStatus.CLOSED: 0, CircuitStatus.HALF_OPEN: 1, CircuitStatus.OPEN: 2}


def is_stale(health: PartnerHealth, now: float) -> bool:
    """Whether ``health`` is too old at ``now`` to say anything of its replica."""
    return now - health.fresh_at.timestamp() > STALE_PERIODS * health.every_s


@dataclass(frozen=True)
class AuthorityHealth:
    """An authority's adapter as its replicas' heartbeats tell it at one moment.

    Each replica has a circuit and a pending queue of its own (its partitions' traffic):
    the authority's circuit is the worst among the replicas with a fresh heartbeat, its
    pending operations their sum. A stale replica counts no more (stopped, or scaled
    away); when none is fresh, the last heartbeat heard says what is known, as it did
    before replicas named themselves (the review of stop 54: with one row per authority
    an idle replica's "closed" replaced a failing one's "open" every other beat, and
    ``GunHubPartnerCircuitOpen`` never fired)."""

    authority: str
    circuit: CircuitStatus
    pending_operations: int
    at: datetime
    """The freshest heartbeat of any replica."""
    stale: bool
    """No replica's heartbeat is fresh."""
    replicas: tuple[PartnerHealth, ...]
    """Every replica's last heartbeat kept, by replica name (stale ones included)."""


def authority_health(beats: Iterable[PartnerHealth], now: float) -> dict[str, AuthorityHealth]:
    """Each authority's health at ``now`` from its replicas' last heartbeats."""
    by_authority: dict[str, list[PartnerHealth]] = defaultdict(list)
    for beat in beats:
        by_authority[beat.authority].append(beat)
    told: dict[str, AuthorityHealth] = {}
    for authority, replicas in sorted(by_authority.items()):
        replicas.sort(key=lambda beat: beat.replica)
        fresh = [beat for beat in replicas if not is_stale(beat, now)]
        latest = max(replicas, key=lambda beat: beat.fresh_at)
        counted = fresh or [latest]
        told[authority] = AuthorityHealth(
            authority=authority,
            circuit=max((beat.circuit for beat in counted), key=_SEVERITY.__getitem__),
            pending_operations=sum(beat.pending_operations for beat in counted),
            at=latest.fresh_at,
            stale=not fresh,
            replicas=tuple(replicas),
        )
    return told


@dataclass
class OpsState:
    """What the lag monitor and the health reader last saw (one per hub process)."""

    lag: LagSnapshot | None = None
    partners: dict[tuple[str, str], PartnerHealth] = field(default_factory=dict)
    """The last heartbeat believed of each adapter replica, by (authority, replica)."""
    expected_partners: frozenset[str] = frozenset()
    """The routed authorities: each has a heartbeat age, heard from or not."""
    listening_since: float = field(default_factory=time.time)
    """When this process began to listen for heartbeats: a routed authority never heard
    from is as silent as one last heard then (found by review, stop 37)."""

    def routed_partners(self, now: float) -> dict[str, AuthorityHealth]:
        """The health of each routed authority at ``now`` (of every one heard when the
        routed ones are not known), its replicas' heartbeats together. An authority taken
        out of the routing table has its heartbeats refused since: its last one, kept by
        the view, aged for ever, and ``GunHubAdapterSilent`` (and its circuit's alert)
        paged for an authority removed on purpose (review of stop 47)."""
        told = authority_health(self.partners.values(), now)
        if not self.expected_partners:
            return told
        return {a: h for a, h in told.items() if a in self.expected_partners}


class OpsCollector(Collector):
    def __init__(
        self, state: OpsState, *, lag: bool = True, clock: Callable[[], float] = time.time
    ) -> None:
        self._state = state
        self._lag_exposed = lag
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self._lag_exposed:
            yield from self._lag()
        yield from self._partners()

    def _lag(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            LAG, "Consumer group lag in messages.", labels=["consumergroup", "topic", "partition"]
        )
        lag_sum = GaugeMetricFamily(
            LAG_SUM, "Consumer group lag summed over partitions.", labels=["consumergroup", "topic"]
        )
        offset = GaugeMetricFamily(
            GROUP_OFFSET,
            "Committed offset of a consumer group.",
            labels=["consumergroup", "topic", "partition"],
        )
        end = GaugeMetricFamily(
            TOPIC_OFFSET,
            "End offset (high watermark) of a partition.",
            labels=["topic", "partition"],
        )
        growing = GaugeMetricFamily(
            LAG_GROWING,
            "1 when a group's lag rose at each of its last measurements.",
            labels=["consumergroup"],
        )
        lost = GaugeMetricFamily(
            LOST,
            "Records retention deleted before the group read them: the partition's log "
            "start minus the group's commit, where it committed below it (not in the lag, "
            "which counts what the group can still read). Only where some were lost; gone "
            "once the group commits again (gun_hub_consumergroup_lost_to_retention_total "
            "keeps the count).",
            labels=["consumergroup", "topic", "partition"],
        )
        snapshot = self._state.lag
        if snapshot is not None:
            sums: dict[tuple[str, str], int] = {}
            ends: dict[tuple[str, str], int] = {}
            for p in snapshot.partitions:
                lag.add_metric([p.group, p.topic, str(p.partition)], p.lag)
                if p.lost > 0:
                    lost.add_metric([p.group, p.topic, str(p.partition)], p.lost)
                if p.committed is not None:
                    offset.add_metric([p.group, p.topic, str(p.partition)], p.committed)
                sums[(p.group, p.topic)] = sums.get((p.group, p.topic), 0) + p.lag
                ends[(p.topic, str(p.partition))] = p.end
            for (group, topic), total in sorted(sums.items()):
                lag_sum.add_metric([group, topic], total)
            for (topic, partition), value in sorted(ends.items()):
                end.add_metric([topic, partition], value)
            for g in snapshot.groups:
                growing.add_metric([g.group], 1 if g.growing else 0)
        yield from (lag, lag_sum, offset, end, growing, lost)
        yield from self._held(snapshot.held if snapshot is not None else [])
        yield from self._unread(snapshot.unread if snapshot is not None else [])

    @staticmethod
    def _held(held: list[TransactionHold]) -> Iterator[GaugeMetricFamily]:
        """Only partitions where something is held: absent is nothing held."""
        records = GaugeMetricFamily(
            HELD_RECORDS,
            "Records committed readers cannot read yet: from an open transaction's first "
            "record to the end of the partition, whoever wrote them.",
            labels=["topic", "partition"],
        )
        age = GaugeMetricFamily(
            HELD_AGE,
            "Seconds the partition's stable end has not moved while records are held; "
            "much more than the broker's transaction timeout: a hanging transaction.",
            labels=["topic", "partition"],
        )
        now = time.time()
        for hold in held:
            records.add_metric([hold.topic, str(hold.partition)], hold.records)
            age.add_metric(
                [hold.topic, str(hold.partition)], max(0.0, now - hold.since.timestamp())
            )
        yield from (records, age)

    @staticmethod
    def _unread(unread: list[UnreadAge]) -> Iterator[GaugeMetricFamily]:
        """Only partitions a group lags on, with their first unread record found: a
        partition caught up has no age (never the last one it had)."""
        labels = ["consumergroup", "topic", "partition"]
        age = GaugeMetricFamily(
            UNREAD_AGE,
            "Seconds since the broker appended the group's oldest unread record of the "
            "partition (at the lag monitor's last measurement).",
            labels=labels,
        )
        headroom = GaugeMetricFamily(
            RETENTION_HEADROOM,
            "Seconds left before the topic's retention may delete the group's oldest "
            "unread record of the partition: retention.ms minus its age, never below 0.",
            labels=labels,
        )
        retention = GaugeMetricFamily(
            RETENTION,
            "The topic's retention.ms in seconds, as the broker describes it, for topics "
            "a group lags on (absent: records are not deleted by age).",
            labels=["topic"],
        )
        retentions: dict[str, float] = {}
        for u in unread:
            where = [u.group, u.topic, str(u.partition)]
            age.add_metric(where, u.age_s)
            if u.headroom_s is not None and u.retention_s is not None:
                headroom.add_metric(where, u.headroom_s)
                retentions[u.topic] = u.retention_s
        for topic, seconds in sorted(retentions.items()):
            retention.add_metric([topic], seconds)
        yield from (age, headroom, retention)

    def _partners(self) -> Iterator[GaugeMetricFamily]:
        circuit = GaugeMetricFamily(
            CIRCUIT,
            "1 for the current state of an adapter's circuit towards its partner system: "
            "the worst among its replicas with a fresh heartbeat.",
            labels=["authority", "state"],
        )
        pending = GaugeMetricFamily(
            PENDING,
            "Write-offs and deletions an adapter holds for a partner that was down: the "
            "sum over its replicas with a fresh heartbeat.",
            labels=["authority"],
        )
        age = GaugeMetricFamily(
            HEARTBEAT_AGE,
            "Seconds since an adapter's last heartbeat (of its freshest replica).",
            labels=["authority"],
        )
        now = self._clock()
        heard = self._state.routed_partners(now)
        for authority, health in sorted(heard.items()):
            for state in CircuitStatus:
                circuit.add_metric([authority, state.value], 1 if health.circuit is state else 0)
            pending.add_metric([authority], health.pending_operations)
            age.add_metric([authority], max(0.0, now - health.at.timestamp()))
        # Never heard from: no circuit or queue to tell, but silent all the same.
        for authority in sorted(self._state.expected_partners - heard.keys()):
            age.add_metric([authority], max(0.0, now - self._state.listening_since))
        yield from (circuit, pending, age)


def register_ops_metrics(state: OpsState, *, lag: bool = True) -> None:
    """Expose ``state`` on the process's default registry (once per process). Without
    ``lag``, the partners' health only: ``gun-hub view`` shows the lag it follows on its
    dashboard, and leaves the series to the hub worker that measures it (one source)."""
    REGISTRY.register(OpsCollector(state, lag=lag))
