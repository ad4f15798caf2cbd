"""Keeps the lag figures of a process that does not measure them (``gun-hub view``).

The lag monitor runs on a hub worker and publishes each measurement on ``gun.ops.lag``
(ops/lag_monitor.py). The operations view process shows lag on its dashboard without
measuring it again: it reads that topic without a group, from the last record of each
partition, and keeps the newest snapshot. A record that is not a snapshot is skipped
(logged): any party may write on the topic, and the dashboard is not worth stopping for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from gun_contract.consume import Batch, consume
from gun_contract.kafka.admin import topic_partitions
from gun_contract.kafka.client import ClientConfig, read_without_group
from gun_hub.ops.lag import LagSnapshot
from gun_hub.ops.lag_metrics import OpsState

log = logging.getLogger(__name__)

# A snapshot dated further ahead of this process's clock is skipped: kept as the newest,
# one dated in the year 9999 hid every real one until a restart (review stop 46). The
# contract's clock skew, as the heartbeat gate allows.
AHEAD_AT_MOST = timedelta(seconds=300)


def _utc_now() -> datetime:
    return datetime.now(UTC)


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
            return
        if snapshot.at > self._clock() + AHEAD_AT_MOST:
            log.warning(
                "lag record at %s/%d/%d skipped: dated %s, ahead of this process's clock "
                "by more than %d s",
                record.topic,
                record.partition,
                record.offset,
                snapshot.at.isoformat(),
                AHEAD_AT_MOST.total_seconds(),
            )
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
