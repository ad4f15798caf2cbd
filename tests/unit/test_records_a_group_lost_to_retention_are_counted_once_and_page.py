"""What retention deleted before a consumer group read it is counted, once, by the lag
monitor: ``gun_hub_consumergroup_lost_to_retention_total{consumergroup,topic}``, which
``GunHubRecordsLostToRetention`` pages on (docs/operations.md, "Records lost to
retention").

``gun_hub_consumergroup_lost_to_retention_records`` says how far a group's commit lies
below a partition's log start, and only while it does: a group back after a long stop
(the clearance system's reader of ``gun.decisions``) reads from the log start and commits
within seconds, and the series is gone before an alert could hold on to it; no alert
read it anyway, and only the hub's inputs and the adapters' requests paged once lost.
The counter keeps the loss: a commit first found below the log start counts what lies
between them, whole; the log start moving on while the commit stays counts what it moved
by, once; the same measured again counts nothing, nor a group measured again after a
measurement that could not describe it. A group that committed past the log start counts
no more, and counts only what is newly lost should it fall behind again. A monitor
started again (the measuring worker restarted) reads back what the snapshots on
``gun.ops.lag`` show counted, and counts only what was lost since (docs/adr/0028).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import GroupAuthorizationFailedError
from prometheus_client import REGISTRY

from gun_contract.topics import topic_registry
from gun_hub.ops.lag import LagSnapshot, PartitionLag, counted_before
from gun_hub.ops.lag_monitor import LagMonitor, WatchedGroup, not_counted_here, watched_groups

DECISIONS = "gun.decisions"
LOST = "gun_hub_consumergroup_lost_to_retention_total"
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
SEEN_FOR_S = 60.0  # LagMonitor's default: a scrape of the worker that counted it since


def counted(group: str, topic: str = DECISIONS) -> float:
    """What the process counted lost to retention for ``group`` on ``topic`` (every test
    has a group of its own: the registry is the process's)."""
    return REGISTRY.get_sample_value(LOST, {"consumergroup": group, "topic": topic}) or 0.0


@dataclass
class OffsetMeta:
    offset: int


class Cluster:
    """One group's commits and each partition's log start and end, as a test sets them;
    both the admin client and the offsets consumers the monitor asks."""

    def __init__(self, group: str, *, partitions: int = 2, topic: str = DECISIONS) -> None:
        self.group = group
        self.commits: dict[tuple[str, int], int] = {}
        self.starts = {(topic, p): 0 for p in range(partitions)}
        self.ends = {(topic, p): 1000 for p in range(partitions)}
        self.denied = False  # the group cannot be described (an ACL, a broker refusing)

    def monitor(
        self,
        topics: tuple[str, ...] = (DECISIONS,),
        clock: Callable[[], datetime] = lambda: T0,
    ) -> LagMonitor:
        return LagMonitor(
            None,  # type: ignore[arg-type]
            [WatchedGroup(self.group, topics)],
            admin=self,
            offsets=self,
            stable_offsets=self,
            clock=clock,
        )

    async def list_consumer_group_offsets(self, group: str) -> dict[TopicPartition, Any]:
        if self.denied:
            raise GroupAuthorizationFailedError
        if group != self.group:
            return {}
        return {TopicPartition(t, p): OffsetMeta(o) for (t, p), o in self.commits.items()}

    async def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]:
        return [
            {"topic": t, "partitions": [{"partition": p} for tt, p in self.ends if tt == t]}
            for t in topics
            if any(tt == t for tt, _ in self.ends)
        ]

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[(tp.topic, tp.partition)] for tp in tps}

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.starts[(tp.topic, tp.partition)] for tp in tps}


async def test_a_commit_first_found_below_the_log_start_counts_what_lies_between_whole() -> None:
    cluster = Cluster("clearance-first-sighting")
    cluster.commits = {(DECISIONS, 0): 10, (DECISIONS, 1): 70}
    cluster.starts = {(DECISIONS, 0): 60, (DECISIONS, 1): 60}
    await cluster.monitor().measure()
    # partition 0 lost 50; partition 1 committed above the log start, lost nothing
    assert counted(cluster.group) == 50


async def test_the_same_commit_measured_again_counts_nothing_more() -> None:
    cluster = Cluster("clearance-measured-again")
    cluster.commits = {(DECISIONS, 0): 10}
    cluster.starts[(DECISIONS, 0)] = 60
    monitor = cluster.monitor()
    for _ in range(3):
        await monitor.measure()
    assert counted(cluster.group) == 50  # not 50 at every measurement


async def test_the_log_start_moving_on_while_the_commit_stays_counts_what_it_moved_by_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = Cluster("clearance-log-start-moves")
    cluster.commits = {(DECISIONS, 0): 10}
    cluster.starts[(DECISIONS, 0)] = 60
    monitor = cluster.monitor()
    with caplog.at_level(logging.WARNING, logger="gun_hub.ops.lag_monitor"):
        await monitor.measure()
        cluster.starts[(DECISIONS, 0)] = 80  # retention deleted 20 more unread
        await monitor.measure()
        await monitor.measure()
    assert counted(cluster.group) == 50 + 20
    warned = [r for r in caplog.records if "below the log start" in r.getMessage()]
    assert len(warned) == 1, "the warning is once per commit, as before"


async def test_a_group_that_committed_past_the_log_start_counts_no_more() -> None:
    cluster = Cluster("clearance-back")
    cluster.commits = {(DECISIONS, 0): 10}
    cluster.starts[(DECISIONS, 0)] = 60
    monitor = cluster.monitor()
    await monitor.measure()
    cluster.commits[(DECISIONS, 0)] = 75  # back: read from the log start, committed
    await monitor.measure()
    cluster.starts[(DECISIONS, 0)] = 70  # retention goes on, behind the commit
    await monitor.measure()
    assert counted(cluster.group) == 50
    # stopped again, and retention passes its commit: only what is newly lost counts
    cluster.starts[(DECISIONS, 0)] = 90
    await monitor.measure()
    assert counted(cluster.group) == 50 + 15


async def test_a_commit_moved_back_below_the_log_start_counts_no_record_twice() -> None:
    """An operator resetting the group's offsets to an earlier point (or the group
    committing where it cannot read) while its commit stays below the log start: the
    records between the old commit and the log start were counted already."""
    cluster = Cluster("clearance-reset")
    cluster.commits = {(DECISIONS, 0): 10}
    cluster.starts[(DECISIONS, 0)] = 60
    monitor = cluster.monitor()
    await monitor.measure()
    cluster.commits[(DECISIONS, 0)] = 5
    await monitor.measure()
    cluster.commits[(DECISIONS, 0)] = 30
    await monitor.measure()
    assert counted(cluster.group) == 50
    cluster.starts[(DECISIONS, 0)] = 100
    await monitor.measure()
    assert counted(cluster.group) == 50 + 40


async def test_a_group_not_described_for_a_measurement_keeps_what_was_counted() -> None:
    cluster = Cluster("clearance-not-described")
    cluster.commits = {(DECISIONS, 0): 10}
    cluster.starts[(DECISIONS, 0)] = 60
    monitor = cluster.monitor()
    await monitor.measure()
    cluster.denied = True
    await monitor.measure()
    cluster.denied = False
    await monitor.measure()
    assert counted(cluster.group) == 50


async def test_a_topic_whose_log_start_was_not_read_keeps_what_was_counted() -> None:
    """The group described, its topic's offsets not (a broker refusing one question):
    not a group that committed past the log start."""
    cluster = Cluster("clearance-topic-not-read")
    cluster.commits = {(DECISIONS, 0): 10}
    cluster.starts[(DECISIONS, 0)] = 60
    monitor = cluster.monitor()
    await monitor.measure()
    starts = cluster.starts
    cluster.starts = {}  # beginning_offsets raises KeyError: the topic is left out
    await monitor.measure()
    cluster.starts = starts
    await monitor.measure()
    assert counted(cluster.group) == 50


async def published(cluster: Cluster, *, every_s: float, times: int) -> list[LagSnapshot]:
    """The snapshots one monitor (a measuring worker) published over ``times``
    measurements ``every_s`` seconds apart, counting what it found lost."""
    at = iter([T0 + timedelta(seconds=every_s * n) for n in range(times)])
    monitor = cluster.monitor(clock=lambda: next(at))
    return [await monitor.measure() for _ in range(times)]


async def test_a_monitor_started_again_counts_only_what_was_lost_since_the_snapshots() -> None:
    """The measuring worker restarted while the group's commit is still below the log
    start: the new monitor reads back what the snapshots on gun.ops.lag show counted
    (``recall``), and counts only what retention deleted since; counted again, the
    counter's total held the loss twice and the page fired a second time (stop 58)."""
    cluster = Cluster("clearance-restart")
    cluster.commits = {(DECISIONS, 0): 10}
    cluster.starts[(DECISIONS, 0)] = 60
    before = await published(cluster, every_s=30, times=4)  # 90 s showing the loss
    cluster.starts[(DECISIONS, 0)] = 80  # 20 more deleted while it was away
    again = cluster.monitor()
    again.recall(counted_before(before, seen_for_s=SEEN_FOR_S))
    await again.measure()
    await again.measure()
    assert counted(cluster.group) == 50 + 20  # not 50 + 70


async def test_a_monitor_started_again_still_says_what_it_finds_below_the_log_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Read back, a loss is not counted again, but the new process logs it as its own
    warning (its logs are read on their own)."""
    cluster = Cluster("clearance-restart-logged")
    cluster.commits = {(DECISIONS, 0): 10}
    cluster.starts[(DECISIONS, 0)] = 60
    before = await published(cluster, every_s=30, times=4)
    again = cluster.monitor()
    again.recall(counted_before(before, seen_for_s=SEEN_FOR_S))
    with caplog.at_level(logging.WARNING, logger="gun_hub.ops.lag_monitor"):
        await again.measure()
    assert "below the log start" in caplog.text
    assert counted(cluster.group) == 50


async def test_a_loss_the_snapshots_showed_only_for_moments_is_counted_again() -> None:
    """A worker that died within ``seen_for_s`` of first counting a loss may never have
    been scraped since: its successor counts it again (a second page rather than none)."""
    cluster = Cluster("clearance-restart-unseen")
    cluster.commits = {(DECISIONS, 0): 10}
    cluster.starts[(DECISIONS, 0)] = 60
    before = await published(cluster, every_s=5, times=3)  # shown for 10 s, then gone
    again = cluster.monitor()
    again.recall(counted_before(before, seen_for_s=SEEN_FOR_S))
    await again.measure()
    assert counted(cluster.group) == 50 + 50


async def test_a_group_back_since_the_snapshots_and_behind_again_counts_its_new_loss() -> None:
    """What was read back is what was counted up to then; a loss found since, past it,
    is new, whatever commit the group holds now."""
    cluster = Cluster("clearance-restart-new-loss")
    cluster.commits = {(DECISIONS, 0): 10}
    cluster.starts[(DECISIONS, 0)] = 60
    before = await published(cluster, every_s=30, times=4)
    cluster.commits[(DECISIONS, 0)] = 75  # back, read on, stopped again
    cluster.starts[(DECISIONS, 0)] = 90  # and retention passed its commit
    again = cluster.monitor()
    again.recall(counted_before(before, seen_for_s=SEEN_FOR_S))
    await again.measure()
    assert counted(cluster.group) == 50 + 15


def test_what_was_counted_is_the_highest_log_start_shown_a_minute_before_the_newest() -> None:
    """``counted_before``: over every snapshot read back (several workers publish, each
    measuring all), the highest log start a partition's loss was shown at, in snapshots
    at least ``seen_for_s`` older than the newest; partitions that lost nothing, or
    never committed, have nothing counted."""

    def shown(at_s: float, *partitions: tuple[str, int, int | None, int, int]) -> LagSnapshot:
        return LagSnapshot(
            at=T0 + timedelta(seconds=at_s),
            groups=[],
            partitions=[
                PartitionLag(
                    group=group,
                    topic=DECISIONS,
                    partition=partition,
                    committed=committed,
                    end=1000,
                    lag=0,
                    log_start=log_start,
                    lost=max(0, log_start - (committed or log_start)),
                )
                for group, partition, committed, log_start, _ in partitions
            ],
        )

    snapshots = [
        shown(0, ("a", 0, 10, 60, 0), ("b", 0, 5, 5, 0)),
        shown(30, ("a", 0, 10, 80, 0), ("a", 1, None, 40, 0)),
        shown(50, ("a", 0, 10, 70, 0)),  # another worker, measured before the log start moved
        shown(100, ("a", 0, 10, 95, 0), ("c", 0, 1, 9, 0)),  # the newest: not a minute old
    ]
    assert counted_before(snapshots, seen_for_s=60) == {("a", DECISIONS, 0): 80}
    assert counted_before(list(reversed(snapshots)), seen_for_s=60) == {("a", DECISIONS, 0): 80}
    assert counted_before(snapshots, seen_for_s=0) == {
        ("a", DECISIONS, 0): 95,
        ("c", DECISIONS, 0): 9,
    }
    assert counted_before([], seen_for_s=60) == {}


async def test_a_topic_the_group_was_not_known_to_read_counts_under_its_own_name() -> None:
    """A group is measured on every topic it committed on: one nobody listed has its
    series made at its first loss (the alert counts a new series whole)."""
    cluster = Cluster("clearance-other-topic", topic="their.own")
    cluster.commits = {("their.own", 0): 3}
    cluster.starts[("their.own", 0)] = 8
    await cluster.monitor(topics=()).measure()
    assert counted(cluster.group, "their.own") == 5


def test_the_watched_groups_and_their_topics_are_counted_at_zero_from_the_start() -> None:
    """``GunHubRecordsLostToRetention`` reads the counter's increase: a series made at
    its first loss would have no sample before it (the alert's new-series part covers it,
    but only while Prometheus watched before: a series known in advance is made at 0)."""
    cluster = Cluster("clearance-at-zero")
    cluster.monitor(topics=(DECISIONS, "gun.other"))
    for topic in (DECISIONS, "gun.other"):
        labels = {"consumergroup": cluster.group, "topic": topic}
        assert REGISTRY.get_sample_value(LOST, labels) == 0, topic


@pytest.mark.parametrize(
    ("group", "topic"),
    [
        # a hub away longer than the claims topic keeps records (24 hours) makes each
        # claim again when it reads its declaration again (aged_out steps over them)
        ("gun-hub", "gun.hub.claims"),
        # the hub's inputs and an adapter's requests are named by their own reader, which
        # leaves out what it had fetched (GunHubInputsAgedOut, GunHubRequestsAgedOut):
        # counted here too, a group catching up at the edge of retention paged for records
        # it had read, and every loss paged twice (a review of stop 58)
        ("gun-hub", "gun.declarations"),
        ("gun-hub", "gun.responses.dgal"),
        ("gun-adapter-dgal", "gun.requests.dgal"),
    ],
)
async def test_what_the_hub_makes_again_or_its_reader_names_is_not_counted_here(
    group: str, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Not counted, not paged by this alert; the lag and its gauge still say how far the
    commit lay below the log start, and an INFO line why it is not counted."""
    cluster = Cluster(group, topic=topic)
    cluster.commits = {(topic, 0): 10}
    cluster.starts[(topic, 0)] = 60
    groups = watched_groups(topic_registry("gun", ["dgal"]), "gun-hub", "gun-clearance")
    monitor = LagMonitor(
        None,  # type: ignore[arg-type]
        [WatchedGroup(group, (topic,))],
        admin=cluster,
        offsets=cluster,
        stable_offsets=cluster,
        not_counted=not_counted_here(topic_registry("gun", ["dgal"]), "gun-hub"),
    )
    with caplog.at_level(logging.INFO, logger="gun_hub.ops.lag_monitor"):
        snapshot = await monitor.measure()
    assert [(p.lost, p.lag) for p in snapshot.partitions] == [(50, 940), (0, 1000)]
    assert counted(group, topic) == 0
    assert "not counted" in caplog.text
    assert any(w.group == group and topic in w.topics for w in groups) or topic.endswith("claims")
