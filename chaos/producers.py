"""The clearance system's two producers: aiokafka and confluent-kafka (librdkafka).

Each keeps its library's **default partitioner**: aiokafka hashes keys with murmur2 (as
the Java client does); librdkafka's default is ``consistent_random`` (CRC32 of the key).
So the same reference can land on different partitions depending on the client, which
is what the contract allows (architecture.md section 2). A reference always goes through
the same client, so its versions stay in order on one partition. Oversized declarations
go through a gzip-compressing producer of the same library (same partitioner).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from confluent_kafka import KafkaError, Message
from confluent_kafka import Producer as RdProducer

log = logging.getLogger("chaos.producers")
BIG = 16 * 1024 * 1024
Delivered = Callable[[int | None, str | None], None]  # partition, error


class ClearanceProducer(Protocol):
    name: str

    async def start(self) -> None: ...

    async def send(
        self, topic: str, key: bytes, value: bytes, delivered: Delivered, *, compressed: bool
    ) -> None: ...

    async def stop(self) -> None: ...


class AiokafkaProducer:
    name = "aiokafka"

    def __init__(self, bootstrap: str) -> None:
        common: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 5,
            "request_timeout_ms": 120_000,
            "retry_backoff_ms": 500,
        }
        self._plain = AIOKafkaProducer(**common, max_request_size=2 * 1024 * 1024)
        self._gzip = AIOKafkaProducer(**common, compression_type="gzip", max_request_size=BIG)
        self._pending: set[asyncio.Future[Any]] = set()

    async def start(self) -> None:
        await self._plain.start()
        await self._gzip.start()

    async def send(
        self, topic: str, key: bytes, value: bytes, delivered: Delivered, *, compressed: bool
    ) -> None:
        producer = self._gzip if compressed else self._plain
        future = await producer.send(topic, value, key=key)

        def done(f: asyncio.Future[Any]) -> None:
            self._pending.discard(f)
            if f.cancelled():
                delivered(None, "cancelled")
            elif f.exception() is not None:
                delivered(None, repr(f.exception()))
            else:
                delivered(int(f.result().partition), None)

        self._pending.add(future)
        future.add_done_callback(done)

    async def stop(self) -> None:
        if self._pending:
            await asyncio.wait(self._pending, timeout=180)
        await self._plain.stop()
        await self._gzip.stop()


class ConfluentProducer:
    name = "confluent"

    def __init__(self, bootstrap: str) -> None:
        common: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 300_000,
            "message.max.bytes": 2 * 1024 * 1024,
            "log_level": 2,  # reconnection chatter during the broker restart: not news
        }
        self._plain = RdProducer(common)
        self._gzip = RdProducer({**common, "compression.type": "gzip", "message.max.bytes": BIG})
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._poller = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            self._plain.poll(0)
            self._gzip.poll(0)
            await asyncio.sleep(0.02)

    async def send(
        self, topic: str, key: bytes, value: bytes, delivered: Delivered, *, compressed: bool
    ) -> None:
        producer = self._gzip if compressed else self._plain

        def report(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                delivered(None, str(error))
            else:
                delivered(message.partition(), None)

        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=report)
            except BufferError:  # local queue full (the broker is away): wait for room
                await asyncio.sleep(0.1)
            else:
                break

    async def stop(self) -> None:
        for producer in (self._plain, self._gzip):
            left = await asyncio.to_thread(producer.flush, 180)
            if left:
                log.warning("%d records never delivered by confluent-kafka", left)
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
