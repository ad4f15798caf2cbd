"""The lag monitor survives a group or a topic it cannot describe (issue 10, defect 3).

A group the monitor may not read (an ACL), a topic deleted between two requests, a broker
that refuses one question: every other group is still measured, the fault is logged once
(not at every tick), and the periodic loop goes on, even when publishing fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import GroupAuthorizationFailedError, KafkaTimeoutError

from gun_hub.ops.lag import LagSnapshot
from gun_hub.ops.lag_metrics import OpsState
from gun_hub.ops.lag_monitor import LagMonitor, WatchedGroup

GROUPS = [
    WatchedGroup("hub", ("decl", "resp")),
    WatchedGroup("forbidden", ("req",)),
    WatchedGroup("clearance", ("decisions",)),
]
PARTITIONS = {"decl": 2, "resp": 1, "req": 1, "decisions": 1}


@dataclass
class OffsetMeta:
    offset: int


class FakeAdmin:
    def __init__(self, *, denied_groups: Iterable[str] = (), broken_topics: Iterable[str] = ()):
        self.denied_groups = set(denied_groups)
        self.broken_topics = set(broken_topics)

    async def list_consumer_group_offsets(self, group: str) -> dict[TopicPartition, Any]:
        if group in self.denied_groups:
            raise GroupAuthorizationFailedError
        if group == "hub":
            return {
                TopicPartition("decl", 0): OffsetMeta(3),
                TopicPartition("gone", 0): OffsetMeta(1),
            }
        return {}

    async def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]:
        if self.broken_topics & set(topics):
            raise KafkaTimeoutError
        return [
            {"topic": t, "partitions": [{"partition": p} for p in range(PARTITIONS[t])]}
            for t in topics
            if t in PARTITIONS
        ]


class FakeOffsets:
    def __init__(self, *, broken_topics: Iterable[str] = ()) -> None:
        self.broken_topics = set(broken_topics)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        if any(tp.topic in self.broken_topics for tp in tps):
            raise KafkaTimeoutError
        return dict.fromkeys(tps, 10)

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)


def monitor(admin: FakeAdmin, offsets: FakeOffsets | None = None) -> LagMonitor:
    return LagMonitor(
        None,  # type: ignore[arg-type]
        GROUPS,
        admin=admin,
        offsets=offsets or FakeOffsets(),
        stable_offsets=offsets or FakeOffsets(),
    )


def lags(measured: LagSnapshot) -> dict[str, int]:
    return {g.group: g.lag for g in measured.groups}


async def test_a_group_it_may_not_read_leaves_the_others_measured(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watcher = monitor(FakeAdmin(denied_groups={"forbidden"}))
    with caplog.at_level(logging.WARNING, logger="gun_hub.ops.lag_monitor"):
        first = await watcher.measure()
        second = await watcher.measure()
    assert lags(first) == lags(second) == {"hub": 7 + 10 + 10, "clearance": 10}
    warned = [r.getMessage() for r in caplog.records if "forbidden" in r.getMessage()]
    assert len(warned) == 1, warned  # once, not at every measurement


async def test_a_topic_it_cannot_describe_leaves_the_others_measured() -> None:
    measured = await monitor(FakeAdmin(broken_topics={"req"})).measure()
    assert lags(measured) == {"hub": 27, "clearance": 10}
    assert {p.topic for p in measured.partitions} == {"decl", "resp", "decisions"}


async def test_a_topic_whose_end_it_cannot_read_leaves_the_others_measured() -> None:
    measured = await monitor(FakeAdmin(), FakeOffsets(broken_topics={"resp"})).measure()
    assert lags(measured) == {"hub": 17, "forbidden": 10, "clearance": 10}


async def test_the_loop_outlives_failed_measurements_and_failed_publications() -> None:
    class Flaky(FakeAdmin):
        calls = 0

        async def list_consumer_group_offsets(self, group: str) -> dict[TopicPartition, Any]:
            Flaky.calls += 1
            if Flaky.calls <= 3:  # the whole first measurement fails
                raise RuntimeError("broker gone")
            return await super().list_consumer_group_offsets(group)

    published: list[LagSnapshot] = []

    async def publish(measured: LagSnapshot) -> None:
        published.append(measured)
        if len(published) == 1:
            raise KafkaTimeoutError

    state = OpsState()
    loop = asyncio.create_task(monitor(Flaky()).run(state, 0.001, publish))
    try:
        for _ in range(500):
            if len(published) >= 3:
                break
            await asyncio.sleep(0.01)
    finally:
        loop.cancel()
    assert len(published) >= 3
    assert state.lag is not None
    assert lags(state.lag) == {"hub": 27, "forbidden": 10, "clearance": 10}


async def test_the_hubs_own_changelogs_are_not_counted_as_its_lag() -> None:
    """faust commits the hub's group at offset 0 on each of its changelogs (and its
    leader topic), which the worker never reads in the group: counted, every state write
    was an unread record, and a hub keeping up was flagged "lag keeps growing" at any
    steady load (review stop 40-PR, PR2). A group's own topics (named after it, as faust
    names an app's) are not its inputs."""

    class WithChangelogs(FakeAdmin):
        async def list_consumer_group_offsets(self, group: str) -> dict[TopicPartition, Any]:
            committed = await super().list_consumer_group_offsets(group)
            if group == "hub":
                committed[TopicPartition("hub-cases-changelog", 0)] = OffsetMeta(0)
                committed[TopicPartition("hub-__assignor-__leader", 0)] = OffsetMeta(0)
            return committed

    PARTITIONS.update({"hub-cases-changelog": 1, "hub-__assignor-__leader": 1})
    try:
        measured = await monitor(WithChangelogs()).measure()
    finally:
        del PARTITIONS["hub-cases-changelog"], PARTITIONS["hub-__assignor-__leader"]
    assert lags(measured)["hub"] == 27  # decl and resp only, as without them
    assert not {p.topic for p in measured.partitions} & {
        "hub-cases-changelog",
        "hub-__assignor-__leader",
    }
