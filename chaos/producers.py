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
import os
from collections.abc import Callable
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from confluent_kafka import KafkaError, KafkaException, Message
from confluent_kafka import Producer as RdProducer

log = logging.getLogger("chaos.producers")
BIG = 16 * 1024 * 1024
Delivered = Callable[[int | None, int | None, str | None], None]  # partition, offset, error


class ClearanceProducer(Protocol):
    name: str
    replaced: int  # client instances taken out of service after holding records back

    async def start(self) -> None: ...

    async def send(
        self, topic: str, key: bytes, value: bytes, delivered: Delivered, *, compressed: bool
    ) -> None: ...

    async def stop(self) -> None: ...


class AiokafkaProducer:
    name = "aiokafka"
    replaced = 0  # aiokafka reports every record within its request timeout

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
                delivered(None, None, "cancelled")
            elif f.exception() is not None:
                delivered(None, None, repr(f.exception()))
            else:
                metadata = f.result()
                delivered(int(metadata.partition), int(metadata.offset), None)

        self._pending.add(future)
        future.add_done_callback(done)

    async def stop(self) -> None:
        if self._pending:
            await asyncio.wait(self._pending, timeout=180)
        await self._plain.stop()
        await self._gzip.stop()


# The broker restart is part of the schedule: "connection refused" while it is down is not
# news, and would bury what is.
_BROKER_AWAY = ("Connection refused", "brokers are down", "Disconnected")
_rdkafka_log = logging.getLogger("chaos.rdkafka")
_rdkafka_log.addFilter(lambda record: not any(s in record.getMessage() for s in _BROKER_AWAY))


def _report_error(error: KafkaError) -> None:
    if error.code() not in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
        log.warning("confluent-kafka: %s", error)


class ConfluentProducer:
    """librdkafka behind the protocol, as a clearance system would run it.

    A record librdkafka has not delivered within ``delivery_timeout_s`` is reported
    failed, and the run sends it again. The instance that held it back is then retired
    and a fresh one takes the next records: after a broker restart librdkafka has been
    seen (once, in CI) to keep every later record of one instance queued with no report
    at all, while a new instance, with a new producer id, delivers at once. The retired
    instances are still polled, so whatever they deliver late is reported too.
    """

    name = "confluent"

    def __init__(self, bootstrap: str, *, delivery_timeout_s: float = 60.0) -> None:
        self._common: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": int(delivery_timeout_s * 1000),
            "message.max.bytes": 2 * 1024 * 1024,
            # librdkafka's own warnings and errors go to the run's log: when it holds records
            # back, its log is the only witness. CHAOS_RDKAFKA_DEBUG adds debug contexts.
            "logger": _rdkafka_log,
            "log_level": 4,
            "error_cb": _report_error,
        }
        if debug := os.environ.get("CHAOS_RDKAFKA_DEBUG"):
            self._common["debug"] = debug
            self._common["log_level"] = 7
        self._plain = self._new(compressed=False)
        self._gzip = self._new(compressed=True)
        self._retired: list[RdProducer] = []
        self._poller: asyncio.Task[None] | None = None
        self.replaced = 0  # instances retired after holding a record past the timeout

    def _new(self, *, compressed: bool) -> RdProducer:
        if compressed:
            gzip = {"compression.type": "gzip", "message.max.bytes": BIG}
            return RdProducer({**self._common, **gzip})
        return RdProducer(self._common)

    def _live(self) -> list[RdProducer]:
        return [self._plain, self._gzip, *self._retired]

    async def start(self) -> None:
        self._poller = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            for producer in self._live():
                producer.poll(0)
            self._retired = [p for p in self._retired if len(p)]
            await asyncio.sleep(0.02)

    def _retire(self, producer: RdProducer) -> None:
        """Take a stuck instance out of service (it is still polled)."""
        if producer is self._plain:
            self._plain = self._new(compressed=False)
        elif producer is self._gzip:
            self._gzip = self._new(compressed=True)
        else:
            return
        self._retired.append(producer)
        self.replaced += 1
        log.warning("confluent-kafka: a client held a record back; a new client takes the next")

    async def send(
        self, topic: str, key: bytes, value: bytes, delivered: Delivered, *, compressed: bool
    ) -> None:
        producer = self._gzip if compressed else self._plain

        def report(error: KafkaError | None, message: Message) -> None:
            if error is None:
                delivered(message.partition(), message.offset(), None)
                return
            if error.code() == KafkaError._MSG_TIMED_OUT or error.fatal():
                self._retire(producer)
            delivered(None, None, str(error))

        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=report)
            except BufferError:  # local queue full (the broker is away): wait for room
                await asyncio.sleep(0.1)
            except KafkaException as err:  # a fatal error: this instance takes no more
                self._retire(producer)
                delivered(None, None, str(err))
                return
            else:
                break

    async def stop(self) -> None:
        for producer in self._live():
            left = await asyncio.to_thread(producer.flush, 180)
            if left:
                log.warning("%d records never delivered by confluent-kafka", left)
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
