"""Reading one record back by its position: for the few places that must see a record
again, as the broker holds it (a redrive checked against its original, a dead letter
shown to an operator).

One consumer without a group, started on first use and kept: a redrive of many dead
letters reads many records, and a consumer's start costs a metadata round trip or two.
Reads are serialised (a consumer has one assignment at a time); they are rare.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from gun_contract.envelope import broker_accepted_at
from gun_contract.kafka.client import Connect, consumer_options, start_or_close

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoggedRecord:
    """A record as the broker holds it at ``topic/partition/offset``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int
    timestamp_type: int

    @property
    def accepted_at(self) -> float | None:
        """The broker's log-append time, when the topic stamps records with it."""
        return broker_accepted_at(self.timestamp_ms, self.timestamp_type)

    def describe(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


class LogReader:
    """Reads single records by position (see the module docstring)."""

    def __init__(self, connect: Connect, *, timeout_s: float = 10.0) -> None:
        self._connect = connect
        self._timeout_s = timeout_s
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def read(self, topic: str, partition: int, offset: int) -> LoggedRecord | None:
        """The record at ``topic/partition/offset``; None if the log does not hold it (never
        written, removed by retention, or a transaction marker). A broker that does not
        answer within the timeout raises ``TimeoutError``; its errors, ``KafkaError``."""
        async with self._lock:
            consumer = await self._started()
            tp = TopicPartition(topic, partition)
            first = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]
            if not first <= offset < end:
                return None
            consumer.assign([tp])
            consumer.seek(tp, offset)
            async with asyncio.timeout(self._timeout_s):
                while True:
                    fetched = await consumer.getmany(tp, timeout_ms=500, max_records=1)
                    for record in fetched.get(tp, []):
                        if record.offset != offset:
                            return None  # the offset held a control record, skipped
                        return LoggedRecord(
                            topic,
                            partition,
                            offset,
                            record.key,
                            record.value or b"",
                            tuple(
                                (str(name), bytes(value))
                                for name, value in record.headers or ()
                                if isinstance(value, bytes | bytearray | memoryview)
                            ),
                            record.timestamp,
                            record.timestamp_type,
                        )
                    if await consumer.position(tp) >= end:
                        return None

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                **consumer_options(self._connect),
                group_id=None,
                enable_auto_commit=False,
                client_id="gun-hub-log-reader",
                # As the hub reads its inputs: an aborted transaction's record is no
                # original to redrive (gun_hub/runtime/strict_consumer.py).
                isolation_level="read_committed",
            )
            await start_or_close(consumer)
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        async with self._lock:
            if self._consumer is not None:
                await self._consumer.stop()
                self._consumer = None
