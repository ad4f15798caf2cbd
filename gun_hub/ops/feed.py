"""Feeds the operations view (view.py) from Kafka.

A consumer without a group: every hub worker reads every partition of the status, facts,
dead-letter and health topics into its own view, from the offsets the view recorded with
its last applied batch (at start, from the beginning when the view is new).

Nothing a party writes stops the feed (issue 10, defect 3): a record the view cannot use
is skipped and counted by the view; a header with no value, or of any size, is read as
what it is. If the view itself fails (its database: a full disk, a lock), the feed logs
it, waits, and reads again from the offsets the view last applied: nothing is lost and
nothing applied twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from gun_hub.kafka.admin import partitions_of
from gun_hub.kafka.client import ClientConfig
from gun_hub.ops.prometheus import OpsState
from gun_hub.ops.view import FeedRecord, OpsView

log = logging.getLogger(__name__)

_BATCH = 2000  # records per SQLite transaction: a few milliseconds of work


class OpsFeed:
    def __init__(
        self, connect: ClientConfig, view: OpsView, state: OpsState, *, retry_s: float = 1.0
    ) -> None:
        self._connect = connect
        self._view = view
        self._state = state
        self._retry_s = retry_s
        self.caught_up = asyncio.Event()  # set once the view reached the end it first saw

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            **self._connect.options(),
            client_id="gun-hub-ops-view",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            partitions = await self._assign(consumer)
            await self.follow(consumer, partitions)
        finally:
            await consumer.stop()

    async def follow(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Apply what ``consumer`` (assigned to ``partitions``) reads, batch by batch."""
        targets = await consumer.end_offsets(partitions)
        self._state.partners = self._view.partners()
        failures = 0
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=_BATCH)
            records = [feed_record(r) for batch in batches.values() for r in batch]
            if records:
                try:
                    self._view.apply(records)
                except Exception:  # the view's database failed (records never raise)
                    failures += 1
                    log.exception(
                        "operations view: a batch of %d records was not applied (failure %d); "
                        "reading again from the last applied offsets",
                        len(records),
                        failures,
                    )
                    await asyncio.sleep(min(self._retry_s * failures, 30.0))
                    await self._rewind(consumer, partitions)
                    continue
                failures = 0
                if any(r.topic == self._view.topics.health for r in records):
                    self._state.partners = self._view.partners()
            if not self.caught_up.is_set() and await _reached(consumer, targets):
                self.caught_up.set()

    async def _rewind(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Back to what the view last applied (the beginning where it applied nothing)."""
        known = self._view.positions()
        for tp in partitions:
            if (tp.topic, tp.partition) in known:
                consumer.seek(tp, known[(tp.topic, tp.partition)])
            else:
                await consumer.seek_to_beginning(tp)

    async def _assign(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        admin = AIOKafkaAdminClient(**self._connect.options(), client_id="gun-hub-ops-view")
        await admin.start()
        try:
            existing = await partitions_of(admin, self._view.topics.all())
        finally:
            await admin.close()
        partitions = [
            TopicPartition(topic, partition)
            for topic, numbers in sorted(existing.items())
            for partition in numbers
        ]
        consumer.assign(partitions)
        await self._rewind(consumer, partitions)
        log.info("operations view reading %d partitions", len(partitions))
        return partitions


def feed_record(record: ConsumerRecord[bytes, bytes]) -> FeedRecord:
    """The view's copy of a Kafka record: a null value reads as empty, a header without a
    value as absent (a foreign producer may write either)."""
    headers = [
        (str(name), bytes(value))
        for name, value in record.headers or ()
        if isinstance(value, bytes | bytearray | memoryview)
    ]
    timestamp = record.timestamp if isinstance(record.timestamp, int) else -1
    return FeedRecord(
        record.topic, record.partition, record.offset, timestamp, record.value or b"", headers
    )


async def _reached(consumer: AIOKafkaConsumer, targets: dict[TopicPartition, int]) -> bool:
    for tp, end in targets.items():
        if await consumer.position(tp) < end:
            return False
    return True
