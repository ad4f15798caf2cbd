"""Feeds the operations view (view.py) from Kafka.

A consumer without a group: every hub worker reads every partition of the status, facts,
dead-letter and health topics into its own view, from the offsets the view recorded with
its last applied batch (at start, from the beginning when the view is new).
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from gun_hub.kafka.admin import partitions_of
from gun_hub.kafka.client import ClientConfig
from gun_hub.ops.prometheus import OpsState
from gun_hub.ops.view import FeedRecord, OpsView

log = logging.getLogger(__name__)

_BATCH = 2000  # records per SQLite transaction: a few milliseconds of work


class OpsFeed:
    def __init__(self, connect: ClientConfig, view: OpsView, state: OpsState) -> None:
        self._connect = connect
        self._view = view
        self._state = state
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
            targets = await consumer.end_offsets(partitions)
            self._state.partners = self._view.partners()
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=_BATCH)
                records = [
                    FeedRecord(
                        r.topic,
                        r.partition,
                        r.offset,
                        r.timestamp,
                        r.value or b"",
                        [(k, bytes(v)) for k, v in r.headers],
                    )
                    for batch in batches.values()
                    for r in batch
                ]
                if records:
                    self._view.apply(records)
                    if any(r.topic == self._view.topics.health for r in records):
                        self._state.partners = self._view.partners()
                if not self.caught_up.is_set() and await _reached(consumer, targets):
                    self.caught_up.set()
        finally:
            await consumer.stop()

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
        known = self._view.positions()
        for tp in partitions:
            if (tp.topic, tp.partition) in known:
                consumer.seek(tp, known[(tp.topic, tp.partition)])
            else:
                await consumer.seek_to_beginning(tp)
        log.info("operations view reading %d partitions", len(partitions))
        return partitions


async def _reached(consumer: AIOKafkaConsumer, targets: dict[TopicPartition, int]) -> bool:
    for tp, end in targets.items():
        if await consumer.position(tp) < end:
            return False
    return True
