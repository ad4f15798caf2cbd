"""The lag monitor: committed offsets of every group against the end of every partition.

Watches the groups the topology defines (the hub, its decision publisher, each adapter,
the clearance system), each on the topics it reads, plus whatever else those groups have
committed on, but its own topics (faust's changelogs of the hub, named after its group).
A group that never committed counts its whole backlog as lag: an adapter
that has not started yet is behind, not "unknown". A group whose commit is below the
partition's log start (read with the ends: ListOffsets, earliest) lags by what the log
still holds; what retention deleted before it read it is counted apart (``lost``) and
logged once as a warning (carried defect "lag below the log's start"). The gauge of it is
gone once the group commits again, seconds after it is back; so the monitor also counts
what is newly lost in ``gun_hub_consumergroup_lost_to_retention_total`` (each record once:
a monitor started again reads back what the snapshots it and the other measuring workers
published on ``gun.ops.lag`` show counted; each measuring worker counts every loss, and
the alert takes the max over them), which ``GunHubRecordsLostToRetention`` pages on
(docs/adr/0029).

Where a group lags, the monitor dates its oldest unread record on each partition (the
broker timestamp of the first record from its commit point: ``first_records.py``) and
reads the topic's retention from the broker, so that an operator is paged while retention
has not deleted it yet (``lag.UnreadAge``, review stop 38-L, L1).

A group or a topic the monitor cannot describe (an ACL, a topic deleted between two
requests, a broker refusing one question) is left out of that measurement and logged once
until it can be described again; every other group is still measured, and the periodic
loop outlives any failed measurement or publication.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from gun_contract.counters import export_at_zero
from gun_contract.kafka.acls import adapter_group
from gun_contract.kafka.admin import partitions_of, topic_retentions
from gun_contract.kafka.client import ClientConfig, from_settings
from gun_contract.kafka.watched_sends import WatchedSends
from gun_contract.settings import Settings
from gun_contract.topics import TopicRegistry
from gun_hub import metrics
from gun_hub.ops.first_records import FirstRecords, dating_consumer
from gun_hub.ops.lag import (
    GrowthWatch,
    LagSnapshot,
    PartitionLag,
    TransactionHold,
    UnreadAge,
    counted_before,
    partition_lags,
    snapshot,
    transaction_holds,
    unread_ages,
    unread_positions,
)
from gun_hub.ops.lag_follower import recent_snapshots
from gun_hub.ops.lag_metrics import OpsState

log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class WatchedGroup:
    group: str
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _BelowLogStart:
    """A partition where the group's commit was found below the log start."""

    commit: int | None  # warned of once (None: read back, not warned of in this process)
    counted_to: int  # the log start up to which what it lost is counted


def count_lost_from_start(
    groups: Iterable[WatchedGroup], not_counted: Mapping[tuple[str, str], str]
) -> None:
    """``gun_hub_consumergroup_lost_to_retention_total`` at 0 for each group and each topic
    it is meant to read (but those ``not_counted``), so that the alert sees its first
    increment (gun_contract/counters.py). Another topic a group committed on is made at
    its first loss: the alert counts a series new to Prometheus whole
    (deploy/prometheus/gun-hub-alerts.yml)."""
    for watched in groups:
        counted = [t for t in watched.topics if (watched.group, t) not in not_counted]
        export_at_zero(
            metrics.RECORDS_LOST_TO_RETENTION, consumergroup=[watched.group], topic=counted
        )


def not_counted_here(topics: TopicRegistry, hub_app_id: str) -> dict[tuple[str, str], str]:
    """The (group, topic) pairs whose records lost to retention the monitor does not count,
    and why: what the hub makes again (its claims: a hub away longer than their 24 hours
    makes each again when it reads its declaration again), and what the group's own
    reader names, leaving out what it had fetched (the hub's inputs, an adapter's
    requests: INPUT_AGED_OUT_OF_THE_LOG and REQUEST_AGED_OUT_OF_THE_LOG, paged by
    GunHubInputsAgedOut and GunHubRequestsAgedOut). Counted here too, a group catching up
    at the edge of retention was paged for records it had fetched before its commit
    moved, and every loss of those paged twice (a review of stop 58)."""
    named_by_hub = "named by the hub's reader (INPUT_AGED_OUT_OF_THE_LOG)"
    return {
        (hub_app_id, topics.claims): "made again by the hub",
        (hub_app_id, topics.declarations): named_by_hub,
        **{(hub_app_id, t): named_by_hub for t in topics.all_responses()},
        **{
            (adapter_group(topics, a), topics.requests(a)): (
                "named by the adapter (REQUEST_AGED_OUT_OF_THE_LOG)"
            )
            for a in topics.authorities
        },
    }


def watched_groups(
    topics: TopicRegistry, hub_app_id: str, clearance_group: str
) -> list[WatchedGroup]:
    """Every consumer group of the topology and the topics it is meant to read."""
    return [
        WatchedGroup(
            hub_app_id,
            (topics.declarations, *topics.all_responses(), topics.dlq, topics.deadlines),
        ),
        WatchedGroup(f"{hub_app_id}-publisher", (topics.decision_outbox,)),
        *(
            WatchedGroup(adapter_group(topics, a), (topics.requests(a),))
            for a in topics.authorities
        ),
        WatchedGroup(clearance_group, (topics.decisions,)),
    ]


class LagMonitor:
    """Measures lag on demand (``measure``) or periodically (``run``)."""

    def __init__(
        self,
        connect: ClientConfig,
        groups: list[WatchedGroup],
        *,
        growing_after: int = 3,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        admin: AIOKafkaAdminClient | None = None,
        offsets: AIOKafkaConsumer | None = None,
        stable_offsets: AIOKafkaConsumer | None = None,
        records: AIOKafkaConsumer | None = None,
        hanging_after_s: float = 120.0,
        dating_timeout_s: float = 2.0,
        dating_interval_s: float = 60.0,
        not_counted: Mapping[tuple[str, str], str] | None = None,
        snapshots_topic: str | None = None,
        seen_for_s: float = 60.0,
    ) -> None:
        self._connect = connect
        # Where the monitors publish their snapshots: read back at the start, what they
        # show lost at least ``seen_for_s`` before the newest is not counted again.
        self._snapshots_topic = snapshots_topic
        self._seen_for_s = seen_for_s
        # Names this process in its snapshots: a restarted monitor compares a process's
        # snapshots with its own (``counted_before``), never two clocks.
        self._by = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"
        # (group, topic): why its loss is in the lag and its gauge but not counted for a
        # page (``not_counted_here``).
        self._not_counted = dict(not_counted or {})
        self._groups = groups
        count_lost_from_start(groups, self._not_counted)
        self._growth = GrowthWatch(growing_after)
        self._clock = clock
        self._hanging_after_s = hanging_after_s
        # Reads offsets only: the admin client for the groups' commits, group-less
        # consumers for the partitions' ends and their stable ends (the end a committed
        # reader sees: an open transaction's first record), made here unless given; and
        # one that reads the first unread record of lagging partitions, to date it (not
        # made when the others are given without it: nothing is dated then).
        if admin is None or offsets is None or stable_offsets is None:
            options = connect.options()
            admin = admin or AIOKafkaAdminClient(**options, client_id="gun-hub-lag-monitor")
            offsets = offsets or AIOKafkaConsumer(
                **options, client_id="gun-hub-lag-monitor", group_id=None
            )
            stable_offsets = stable_offsets or AIOKafkaConsumer(
                **options,
                client_id="gun-hub-lag-monitor",
                group_id=None,
                isolation_level="read_committed",
            )
            records = records or dating_consumer(connect, "gun-hub-lag-monitor")
        self._admin = admin
        self._offsets = offsets
        self._stable_offsets = stable_offsets
        self._records = records
        self._first_records = (
            FirstRecords(records, timeout_s=dating_timeout_s, redate_after_s=dating_interval_s)
            if records is not None
            else None
        )
        self._held: list[TransactionHold] = []  # the last measurement's
        self._warned: set[tuple[str, int, int]] = set()  # holds logged as hanging
        # By (group, topic, partition): a commit logged as below the log start, and how far
        # what it lost is counted (kept while the commit is below, whatever it becomes)
        self._below: dict[tuple[str, str, int], _BelowLogStart] = {}
        self._failing: set[str] = set()  # what is logged as not describable, until it is

    @classmethod
    def for_settings(cls, settings: Settings, topics: TopicRegistry) -> LagMonitor:
        """The monitor of every group of this deployment (inside a running event loop)."""
        return cls(
            from_settings(settings.kafka),
            watched_groups(topics, settings.hub.app_id, settings.ops.clearance_group),
            growing_after=settings.ops.lag_growing_samples,
            hanging_after_s=settings.ops.hanging_transaction_s,
            dating_interval_s=settings.ops.lag_dating_interval_s,
            not_counted=not_counted_here(topics, settings.hub.app_id),
            snapshots_topic=topics.ops_lag,
        )

    async def start(self) -> None:
        await self._admin.start()
        await self._offsets.start()
        await self._stable_offsets.start()
        if self._records is not None:
            await self._records.start()
        if self._snapshots_topic is not None:
            await self._read_back(self._snapshots_topic)

    async def _read_back(self, topic: str) -> None:
        """What the snapshots on ``topic`` show counted (by this worker before its restart,
        or by another measuring worker) is not counted again (``recall``). Unread, what is
        still lost is counted again: a second page rather than none."""
        try:
            snapshots = await recent_snapshots(
                self._connect, topic, self._seen_for_s, clock=self._clock
            )
        except Exception as err:  # noqa: BLE001 - the monitor starts all the same
            log.warning(
                "lag monitor: cannot read back the snapshots on %s (%s: %s); what a group "
                "has still lost to retention is counted again",
                topic,
                type(err).__name__,
                err,
            )
            return
        self.recall(counted_before(snapshots, self._seen_for_s))

    def recall(self, counted: Mapping[tuple[str, str, int], int]) -> None:
        """Take what ``counted`` (``counted_before``) says counted of each partition's loss
        as counted here: a worker restarted while a group's commit is still below the log
        start counts only what retention deleted since. Counted again, the page fired a
        second time for the same records, and the counter's total held them twice (stop
        58). Its warning is still logged once in this process."""
        for where, log_start in counted.items():
            was = self._below.get(where)
            self._below[where] = _BelowLogStart(
                None if was is None else was.commit,
                log_start if was is None else max(log_start, was.counted_to),
            )

    async def stop(self) -> None:
        if self._records is not None:
            await self._records.stop()
        await self._stable_offsets.stop()
        await self._offsets.stop()
        await self._admin.close()

    async def measure(self) -> LagSnapshot:
        committed_by_group: dict[str, dict[TopicPartition, Any]] = {}
        for watched in self._groups:
            committed = await self._attempt(
                f"group {watched.group}",
                self._admin.list_consumer_group_offsets(watched.group),
            )
            if committed is not None:
                committed_by_group[watched.group] = committed
        read = {
            group: {
                *watched_topics(self._groups, group),
                *(tp.topic for tp in committed if not _own_topic(group, tp.topic)),
            }
            for group, committed in committed_by_group.items()
        }
        # Every watched topic's ends, whether or not its group could be described: what an
        # open transaction holds is the topic's, for every reader.
        all_watched = {topic for w in self._groups for topic in w.topics}
        existing = await self._partitions(all_watched.union(*read.values()))
        ends: dict[TopicPartition, int] = {}
        starts: dict[TopicPartition, int] = {}
        stable_ends: dict[TopicPartition, int] = {}
        for topic, numbers in sorted(existing.items()):
            tps = [TopicPartition(topic, p) for p in numbers]
            topic_ends = await self._attempt(f"topic {topic}", self._offsets.end_offsets(tps))
            topic_starts = await self._attempt(
                f"topic {topic}", self._offsets.beginning_offsets(tps)
            )
            if topic_ends is not None and topic_starts is not None:
                ends.update(topic_ends)
                starts.update(topic_starts)
                # asked after the ends: a transaction begun in between reads as nothing held
                topic_stable = await self._attempt(
                    f"topic {topic}", self._stable_offsets.end_offsets(tps)
                )
                stable_ends.update(topic_stable or {})
        lags: list[PartitionLag] = []
        for group, committed in committed_by_group.items():
            wanted = [tp for tp in ends if tp.topic in read[group]]
            lags += partition_lags(
                group,
                _by_name({tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}),
                _by_name({tp: ends[tp] for tp in wanted}),
                _by_name({tp: starts[tp] for tp in wanted}),
            )
        self._count_lost(lags)
        at = self._clock()
        self._held = transaction_holds(_by_name(ends), _by_name(stable_ends), self._held, at)
        self._warn_of_hanging(at)
        unread = await self._unread(
            unread_positions(lags, _by_name(starts)), _by_name(stable_ends), at
        )
        return snapshot(at, lags, self._growth, self._held, unread, by=self._by)

    async def _unread(
        self,
        positions: dict[tuple[str, str, int], int],
        stable_ends: dict[tuple[str, int], int],
        at: datetime,
    ) -> list[UnreadAge]:
        """How old each lagging group's first unread record is, and the retention of its
        topic as the broker says now (an operator may lengthen it for an outage)."""
        if not positions or self._first_records is None:
            return []
        topics = sorted({topic for _, topic, _ in positions})
        retention = await self._attempt(
            "the lagging topics' retention", topic_retentions(self._admin, topics)
        )
        for topic in topics if retention is not None else ():
            # Left out: no DescribeConfigs right on it. Its records are aged all the same,
            # never judged against a retention assumed.
            what = f"the retention of {topic}"
            if retention is not None and topic in retention:
                self._described(what)
            else:
                self._not_described(what, PermissionError("DescribeConfigs refused"))
        first = await self._attempt(
            "the oldest unread records",
            self._first_records.find(
                {(topic, partition, offset) for (_, topic, partition), offset in positions.items()},
                stable_ends,
            ),
        )
        for topic in topics if first is not None else ():
            what = f"the records of {topic}"
            if topic in self._first_records.refused:
                # Their age is unknown, not none: said once (the Read right is missing).
                self._not_described(what, PermissionError("Read refused: not dated"))
            else:
                self._described(what)
        return unread_ages(positions, first or {}, retention or {}, at)

    def _warn_of_hanging(self, at: datetime) -> None:
        """Once per hold older than ``hanging_after_s`` (the metric says it all along)."""
        hanging = {
            (h.topic, h.partition, h.stable_end): h
            for h in self._held
            if (at - h.since).total_seconds() >= self._hanging_after_s
        }
        for key, hold in hanging.items():
            if key not in self._warned:
                log.warning(
                    "%s[%d]: %d record(s) held behind a transaction open since %s, longer "
                    "than the broker lets a transaction run: a hanging transaction? "
                    "(kafka-transactions.sh find-hanging, then abort)",
                    hold.topic,
                    hold.partition,
                    hold.records,
                    hold.since.isoformat(timespec="seconds"),
                )
        self._warned = set(hanging)

    def _count_lost(self, lags: list[PartitionLag]) -> None:
        """Each commit found below its partition's log start (retention deleted what the
        group had not read: the gauge and the snapshot say it all along) is logged once, and
        what it lost counted once (``gun_hub_consumergroup_lost_to_retention_total``): when
        first found, log start minus commit; then what the log start moves on by. A commit
        that moves while it stays below (an operator's reset) is logged again, and counts
        only records not counted yet. Forgotten once the group, measured on that topic,
        committed past the log start: what it loses later is new. A group or a topic not
        measured this time keeps what was said and counted of it. A monitor started again
        counts from what the snapshots it read back show counted (``recall``)."""
        measured = {(lag.group, lag.topic) for lag in lags}
        kept = {where: was for where, was in self._below.items() if where[:2] not in measured}
        for lag in lags:
            committed = lag.committed
            if lag.lost <= 0 or committed is None:
                continue
            where = (lag.group, lag.topic, lag.partition)
            log_start = committed + lag.lost
            was = self._below.get(where)
            elsewhere = self._not_counted.get((lag.group, lag.topic))
            if was is None or was.commit != committed:
                log.log(
                    logging.WARNING if elsewhere is None else logging.INFO,
                    "group %s: %s[%d] committed at %d, below the log start %d: %d record(s) "
                    "past its commit deleted by retention%s (its lag counts the %d still "
                    "there)",
                    lag.group,
                    lag.topic,
                    lag.partition,
                    committed,
                    log_start,
                    lag.lost,
                    # Those a reader names itself it may have fetched before its commit moved.
                    ", unread, lost to it"
                    if elsewhere is None
                    else f", not counted here: {elsewhere}",
                    lag.lag,
                )
            if elsewhere is not None:
                kept[where] = _BelowLogStart(committed, log_start)
                continue
            counted_to = committed if was is None else max(committed, was.counted_to)
            if log_start > counted_to:
                metrics.RECORDS_LOST_TO_RETENTION.labels(
                    consumergroup=lag.group, topic=lag.topic
                ).inc(log_start - counted_to)
            kept[where] = _BelowLogStart(committed, max(counted_to, log_start))
        self._below = kept

    async def _partitions(self, topics: set[str]) -> dict[str, list[int]]:
        """Partitions of the existing topics; one that cannot be described is left out."""
        every = await self._attempt("topics", partitions_of(self._admin, topics), quiet=True)
        if every is not None:
            return every
        found: dict[str, list[int]] = {}
        for topic in sorted(topics):  # one of them spoils the question: ask one by one
            one = await self._attempt(f"topic {topic}", partitions_of(self._admin, [topic]))
            found.update(one or {})
        return found

    async def _attempt(
        self, what: str, question: Awaitable[_T], *, quiet: bool = False
    ) -> _T | None:
        """The answer to ``question``, or None when the cluster cannot give it (logged
        once until ``what`` answers again)."""
        try:
            answer = await question
        except Exception as err:  # noqa: BLE001 - one unanswerable question is not a crash
            if not quiet:
                self._not_described(what, err)
            return None
        self._described(what)
        return answer

    def _not_described(self, what: str, err: Exception) -> None:
        if what not in self._failing:
            self._failing.add(what)
            log.warning(
                "lag monitor: cannot describe %s (%s: %s); measuring the rest",
                what,
                type(err).__name__,
                err,
            )

    def _described(self, what: str) -> None:
        if what in self._failing:
            self._failing.discard(what)
            log.info("lag monitor: %s can be described again", what)

    async def run(
        self,
        state: OpsState,
        interval_s: float,
        publish: Callable[[LagSnapshot], Awaitable[None]],
    ) -> None:
        """Measure every ``interval_s``; keep the latest in ``state``; hand each to
        ``publish``. A failed measurement is logged and retried at the next tick."""
        while True:
            try:
                measured = await self.measure()
                state.lag = measured
                for group in measured.groups:
                    if group.growing:
                        log.warning("group %s: lag keeps growing (%d)", group.group, group.lag)
                await publish(measured)
            except Exception as err:  # noqa: BLE001 - the monitor must outlive a broker hiccup
                log.warning("lag measurement or its publication failed: %s", err)
            await asyncio.sleep(interval_s)


def snapshot_publisher(
    send: Callable[[str, bytes], Awaitable[Awaitable[Any]]], topic: str
) -> Callable[[LagSnapshot], Awaitable[None]]:
    """What hands each snapshot to ``send`` (a producer's: returns the delivery) for
    ``topic`` without waiting for the broker, a refusal logged and counted
    (``gun_hub_lag_snapshots_unsent_total``; watched_sends.py)."""
    watched = WatchedSends("lag snapshot", metrics.LAG_SNAPSHOTS_UNSENT.inc)

    async def publish(measured: LagSnapshot) -> None:
        await watched.send(lambda: send(topic, measured.to_bytes()))

    return publish


def watched_topics(groups: Iterable[WatchedGroup], group: str) -> tuple[str, ...]:
    """The topics ``group`` is meant to read."""
    return next((w.topics for w in groups if w.group == group), ())


def _own_topic(group: str, topic: str) -> bool:
    """Whether ``topic`` is one of the group's own, not an input: faust names an app's
    changelogs and leader topic after its id, the hub's group (``gun-hub-cases-changelog``),
    and commits the group on them at offset 0; counted, every state write was an unread
    record and a hub keeping up was flagged growing (review stop 40-PR, PR2)."""
    return topic.startswith(f"{group}-")


def _by_name(offsets: Mapping[TopicPartition, int]) -> dict[tuple[str, int], int]:
    return {(tp.topic, tp.partition): offset for tp, offset in offsets.items()}
