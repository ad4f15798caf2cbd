"""Keeps the lag figures of a process that does not measure them (``gun-hub view``).

The lag monitor runs on a hub worker and publishes each measurement on ``gun.ops.lag``
(ops/lag_monitor.py). The operations view process shows lag on its dashboard without
measuring it again: it reads that topic without a group, from the last record of each
partition, and keeps the newest snapshot. A record that is not a snapshot is skipped
(logged): any party may write on the topic, and the dashboard is not worth stopping for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from gun_contract.consume import Batch, consume
from gun_contract.kafka.admin import topic_partitions
from gun_contract.kafka.client import (
    ClientConfig,
    reached,
    read_without_group,
    reader_without_group,
    start_or_close,
)
from gun_hub.ops.lag import LagSnapshot
from gun_hub.ops.lag_metrics import OpsState

log = logging.getLogger(__name__)

# Read back from before the newest snapshot's time by this much beyond what is asked:
# the snapshots of the seconds before the cut are there to be read (records are dated by
# their producer, snapshots by their monitor).
READ_BACK_SLACK_S = 30.0

# How many times ``back_s`` (the time a process must have shown a loss for it to be taken
# as counted: ``counted_before``) the read-back covers: a loss a process showed that long
# is read back although short-lived processes came after it (a crash loop), or although
# several workers measure at long intervals (a review of stop 59: with a window of
# ``back_s`` alone, neither was, and a restart paged again).
READ_BACK_SPANS = 5

# A snapshot dated further ahead of this process's clock is skipped: kept as the newest,
# one dated in the year 9999 hid every real one until a restart (review stop 46). The
# contract's clock skew, as the heartbeat gate allows.
AHEAD_AT_MOST = timedelta(seconds=300)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _snapshot_of(record: ConsumerRecord[bytes, bytes], now: datetime) -> LagSnapshot | None:
    """The snapshot ``record`` carries, or None (logged) if it is none or is dated too far
    ahead of ``now``."""
    try:
        snapshot = LagSnapshot.model_validate_json(record.value or b"")
    except ValidationError as err:
        log.warning(
            "lag record at %s/%d/%d skipped: %s",
            record.topic,
            record.partition,
            record.offset,
            err.errors()[0]["msg"] if err.errors() else err,
        )
        return None
    if snapshot.at > now + AHEAD_AT_MOST:
        log.warning(
            "lag record at %s/%d/%d skipped: dated %s, ahead of this process's clock "
            "by more than %d s",
            record.topic,
            record.partition,
            record.offset,
            snapshot.at.isoformat(),
            AHEAD_AT_MOST.total_seconds(),
        )
        return None
    return snapshot


async def recent_snapshots(
    connect: ClientConfig,
    topic: str,
    back_s: float,
    *,
    clock: Callable[[], datetime] = _utc_now,
    timeout_s: float = 10.0,
) -> list[LagSnapshot]:
    """The snapshots on ``topic`` published from ``READ_BACK_SPANS`` times ``back_s`` (and
    ``READ_BACK_SLACK_S``) before its newest record to its end, however old that is, and
    the one before that on each partition (at a long measuring interval, none may lie in
    the window: a review of stop 59): what a lag monitor started again
    reads back of what was counted (``counted_before``). Nothing when the topic does not
    exist or holds nothing; ``TimeoutError`` when it cannot be read within ``timeout_s``,
    every request to the broker included (a broker silent after the reader started held
    the monitor's start for its requests' own timeouts)."""
    async with asyncio.timeout(timeout_s):
        return await _recent_snapshots(connect, topic, back_s, clock, timeout_s)


async def _recent_snapshots(
    connect: ClientConfig,
    topic: str,
    back_s: float,
    clock: Callable[[], datetime],
    timeout_s: float,
) -> list[LagSnapshot]:
    try:
        existing = await topic_partitions(connect, topic)
    except LookupError:
        return []
    consumer = reader_without_group(connect, "gun-hub-lag-monitor")
    await start_or_close(consumer)
    try:
        partitions = [TopicPartition(topic, p) for p in existing]
        consumer.assign(partitions)
        ends = {tp: end for tp, end in (await consumer.end_offsets(partitions)).items() if end}
        if not ends:
            return []
        # The newest record of each partition dates where to read back from.
        for tp, end in ends.items():
            consumer.seek(tp, end - 1)
        last = await _read_to(consumer, ends, timeout_s)
        if not last:
            return []
        newest = max(r.timestamp for r in last)
        since = newest - int((READ_BACK_SPANS * back_s + READ_BACK_SLACK_S) * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(ends, max(0, since)))
        for tp, end in ends.items():
            at = found.get(tp)
            first = at.offset if at is not None else end - 1
            consumer.seek(tp, max(0, first - 1))  # and the snapshot before the window
        now = clock()
        return [
            snapshot
            for record in await _read_to(consumer, ends, timeout_s)
            if (snapshot := _snapshot_of(record, now)) is not None
        ]
    finally:
        await consumer.stop()


async def _read_to(
    consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int], timeout_s: float
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record from where ``consumer`` stands to ``ends``."""
    read: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    while not await reached(consumer, ends):
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not read {sorted(ends)} to their end in {timeout_s} s")
        for records in (await consumer.getmany(*ends, timeout_ms=200)).values():
            read += [r for r in records if r.offset < ends[TopicPartition(r.topic, r.partition)]]
    return read


class LagFollower:
    def __init__(
        self,
        connect: ClientConfig,
        topic: str,
        state: OpsState,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._connect = connect
        self._topic = topic
        self._state = state
        self._clock = clock

    async def run(self) -> None:
        await read_without_group(self._connect, "gun-hub-view-lag", self._assign, self.follow)

    async def follow(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        async def keep_newest(batch: Batch) -> None:
            for records in batch.values():
                for record in records:
                    self.apply(record)

        await consume(consumer, keep_newest, commit=False)

    def apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Keep the snapshot ``record`` carries if it is newer than the one kept (partitions
        are read side by side: the newest measurement wins, not the last record read)."""
        snapshot = _snapshot_of(record, self._clock())
        if snapshot is None:
            return
        kept = self._state.lag
        if kept is None or snapshot.at >= kept.at:
            self._state.lag = snapshot

    async def _assign(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        try:
            existing = await topic_partitions(self._connect, self._topic)
        except LookupError:
            existing = []  # no lag measured yet: nothing to follow
        partitions = [TopicPartition(self._topic, p) for p in existing]
        consumer.assign(partitions)
        # Only the latest measurement matters: start at the last record of each partition.
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, max(0, ends[tp] - 1))
        return partitions
