"""What publishes declarations on the declarations topic: the intake gateway's channels,
and the clearance stand-in of the demo and the tests (``gun_tools.clearance_stand_in``)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from gun_contract.envelope import ContentType, Envelope
from gun_contract.kafka.client import Connect, producer_options, start_or_close
from gun_contract.security.entitlements import HUB_PARTY


class DeclarationSender:
    """A producer of the declarations topic, kept open for as many declarations as come.

    Each declaration is keyed by its reference and sealed by ``envelope`` (its party's
    keys: the clearance system's, or the intake gateway's; encrypted to the hub), or sent
    as plain XML when it is None (a hub that accepts plain declarations: local
    development). Every record is on every in-sync replica before it counts as sent
    (acks=all), and a retry inside the producer never writes it twice (idempotence).
    """

    def __init__(self, connect: Connect, topic: str, envelope: Envelope | None = None) -> None:
        self._connect = connect
        self._topic = topic
        self._envelope = envelope
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            **producer_options(self._connect), acks="all", linger_ms=5, enable_idempotence=True
        )
        await start_or_close(producer)
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    def seal(self, data: bytes) -> bytes:
        """The record value of ``data``: sealed to the hub for the declarations topic.

        Pure CPU (about a millisecond per 100 kB): callers with a loop to keep responsive
        may run it in a thread of their own."""
        if self._envelope is None:
            return data
        return self._envelope.seal(
            data, recipient=HUB_PARTY, topic=self._topic, content_type=ContentType.XML
        )

    async def publish(self, value: bytes, reference: str) -> asyncio.Future[RecordMetadata]:
        """Queue a value :meth:`seal` made; the future resolves once the broker has it."""
        if self._producer is None:
            raise RuntimeError("DeclarationSender.start() was not called")
        key = reference.encode() if reference else None
        delivery: asyncio.Future[RecordMetadata] = await self._producer.send(
            self._topic, value, key=key
        )
        return delivery
