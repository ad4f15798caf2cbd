"""Declarations the admission limit leaves for later are handed to the intake once each,
in offset order, none missing (runtime/strict_consumer.py ``getmany``, ``unthrottle``).

A simulation of faust's own fetch loop (its real ``Consumer.getmany``: the live set of
active partitions, the round-robin over partitions) over a broker of lists, with a seek
that takes a few turns of the loop to reach the consumer's thread, an intake that takes
records from its queue at its own pace, and the hub's question "may the intake take one
more" (at most four waiting). Each seed interleaves them differently.

Written from the review of stop 49's change, whose simulation found, before the fixes:
declarations handed twice and out of order in 176 of 200 runs with one partition
(resumed before its seek was done; sought from its first unsettled record when the
first record after a seek was left at once), and with two partitions some never handed
over in 10 of 60.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.utils import DefaultSchedulingStrategy
from faust.types import TP

from gun_hub.runtime.offsets import EmptyOffsets, FetchGaps
from gun_hub.runtime.strict_consumer import PassedOver, StrictOffsetsConsumer, _ReadOffsets

DECLARATIONS = "declarations"
PER_PARTITION = 60
FETCHED_AT_ONCE = 8  # records of a partition a fetch brings
QUEUE_LIMIT = 4  # declarations the intake may have waiting


class _Record:
    def __init__(self, tp: TP, offset: int) -> None:
        self.topic, self.partition, self.offset = tp.topic, tp.partition, offset
        self.timestamp, self.timestamp_type = None, None


class _Message:
    def __init__(self, tp: TP, offset: int) -> None:
        self.tp, self.offset = tp, offset
        self.topic, self.partition = tp.topic, tp.partition
        self.refcount, self.tracked, self.acked = 1, False, False


class _Broker:
    """Each partition a list of offsets 0..size-1, read from a position a seek moves."""

    def __init__(self, partitions: list[TP]) -> None:
        self.position = dict.fromkeys(partitions, 0)

    def fetch(self, active: set[TP]) -> dict[TP, list[_Record]]:
        fetched = {}
        for tp in sorted(active):
            start = self.position[tp]
            stop = min(start + FETCHED_AT_ONCE, PER_PARTITION)
            if stop > start:
                fetched[tp] = [_Record(tp, offset) for offset in range(start, stop)]
                self.position[tp] = stop
        return fetched


def _consumer(broker: _Broker, may_hand_over: Any, turns: random.Random) -> Any:
    """The strict consumer's state and faust's, no connection: fetches read ``broker``."""
    consumer: Any = object.__new__(StrictOffsetsConsumer)
    partitions = list(broker.position)
    consumer._handled, consumer._empty = defaultdict(set), defaultdict(EmptyOffsets)
    consumer._start = dict.fromkeys(partitions, 0)
    consumer._committing, consumer._confirmed, consumer._committed_when_assigned = {}, {}, {}
    consumer._fetched, consumer._delivering, consumer._sought = {}, None, {}
    consumer._reseeking = set()
    consumer._read_offset = _ReadOffsets(consumer._reseeking)
    consumer._passed_over, consumer._handed, consumer._held = defaultdict(PassedOver), {}, set()
    consumer.throttled, consumer._resume_at, consumer._unthrottling = set(), {}, set()
    consumer._rebalances = 0
    consumer._gaps, consumer._positions_moved = FetchGaps(), 0
    consumer._committed_offset = defaultdict(lambda: None)
    consumer._active_partitions = None
    consumer._paused_partitions, consumer._buffered_partitions = set(), set()
    consumer._stopped, consumer._crashed = asyncio.Event(), asyncio.Event()
    consumer.suspend_flow, consumer.flow_active = asyncio.Event(), True
    consumer.scheduler = DefaultSchedulingStrategy()
    consumer.log = SimpleNamespace(dev=lambda *_, **__: None)
    consumer.app = SimpleNamespace(
        consumer_generation_id=1,
        monitor=SimpleNamespace(track_tp_end_offset=lambda *_: None),
        topics=SimpleNamespace(_topic_name_index={}),
        may_hand_over=may_hand_over,
        client_only=False,
    )
    consumer.assignment = lambda: set(partitions)
    consumer.highwater = lambda tp: PER_PARTITION
    consumer._to_message = lambda tp, record: _Message(tp, record.offset)
    consumer._broker = broker

    async def on_the_consumers_thread(_seek: Any, _thread: Any, tp: TP, offset: int) -> None:
        for _ in range(turns.randint(1, 4)):  # to the consumer's thread and back
            await asyncio.sleep(0)
        broker.position[tp] = offset

    consumer._thread = SimpleNamespace(call_thread=on_the_consumers_thread)
    return consumer


@pytest.fixture
def faust_fetching_from_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    """faust's fetch loop as it is, its broker round trip replaced by ``_Broker.fetch``."""

    async def fetch(self: Any, active_partitions: Any, timeout: float) -> Any:  # noqa: ASYNC109
        await asyncio.sleep(0)
        return self._broker.fetch(set(active_partitions or ()))

    async def next_records(self: Any, timeout: float) -> Any:  # noqa: ASYNC109
        active = self._get_active_partitions()
        if not active:
            await asyncio.sleep(0)
            return {}, active
        return await self._getmany(active_partitions=active, timeout=timeout), active

    monkeypatch.setattr(faust_aiokafka.Consumer, "_getmany", fetch)
    monkeypatch.setattr(faust_consumer.Consumer, "_wait_next_records", next_records)


async def _handed_over(seed: int, partitions: int) -> dict[int, list[int]]:
    """What each partition handed to the intake, in the order handed."""
    turns = random.Random(seed)
    declarations = [TP(DECLARATIONS, p) for p in range(partitions)]
    queue: list[int] = []
    handed: defaultdict[int, list[int]] = defaultdict(list)
    done = asyncio.Event()

    def may_hand_over(tp: TP) -> bool:
        return len(queue) < QUEUE_LIMIT

    consumer = _consumer(_Broker(declarations), may_hand_over, turns)

    async def fetch_loop() -> None:  # faust's _drain_messages, its essentials
        while not done.is_set():
            async for tp, message in consumer.getmany(1.0):
                read = consumer._read_offset[tp]
                if read is None or message.offset >= read:
                    for _ in range(turns.randint(1, 2)):  # the handover to the queue
                        await asyncio.sleep(0)
                    handed[tp.partition].append(message.offset)
                    queue.append(message.offset)
                    consumer._read_offset[tp] = message.offset
            await asyncio.sleep(0)

    async def intake() -> None:
        while not done.is_set():
            for _ in range(turns.randint(2, 12)):
                await asyncio.sleep(0)
            if queue:
                queue.pop(0)
            if consumer.throttled and len(queue) <= QUEUE_LIMIT // 2:
                await consumer.unthrottle()
            everything = all(len(handed[p]) >= PER_PARTITION for p in range(partitions))
            if everything and not queue and not consumer.throttled:
                done.set()

    try:
        await asyncio.wait_for(asyncio.gather(fetch_loop(), intake()), 5)
    except TimeoutError:
        done.set()  # what was handed says what is missing
    assert sum(p.left_for_later for p in consumer._passed_over.values()) > 0, "limit reached"
    return dict(handed)


@pytest.mark.usefixtures("faust_fetching_from_lists")
@pytest.mark.parametrize("partitions", [1, 2, 3])
async def test_each_declaration_is_handed_over_once_in_order_whatever_the_interleaving(
    partitions: int,
) -> None:
    for seed in range(40):
        handed = await _handed_over(seed, partitions)
        for partition in range(partitions):
            assert handed.get(partition) == list(range(PER_PARTITION)), (seed, partition)
