"""The clearance system's side of the contract: submit declarations, read decisions.

Used by ``gun-hub submit``, ``gun-hub decisions``, the demo and the end-to-end tests; it
is a plain Kafka client of the external contract, nothing more.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from gun_hub.dead_letter import ErrorClass, SourcePosition, dead_letter_headers
from gun_hub.envelope import Envelope, EnvelopeRejected, OpenedMessage
from gun_hub.kafka.admin import topic_partitions
from gun_hub.kafka.client import Connect, client_options
from gun_hub.model.decision import Decision
from gun_hub.xml.decision_codec import DecisionCodec
from gun_hub.xml.declaration_codec import sniff_identity


async def submit_declarations(
    connect: Connect, topic: str, declarations: Iterable[bytes]
) -> list[str]:
    """Publish declaration XML keyed by reference; return the references sent."""
    producer = AIOKafkaProducer(
        **client_options(connect), acks="all", linger_ms=5, enable_idempotence=True
    )
    await producer.start()
    references = []
    try:
        deliveries = []
        for data in declarations:
            identity = sniff_identity(data)
            reference = identity.reference if identity else ""
            references.append(reference)
            deliveries.append(
                await producer.send(topic, data, key=reference.encode() if reference else None)
            )
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()
    return references


@dataclass(frozen=True, slots=True)
class ReceivedDecision:
    decision: Decision
    envelope: OpenedMessage
    partition: int
    offset: int


class DecisionReader:
    """Reads ``gun.decisions``, verifying and decrypting each decision before use.

    Without ``group_id`` it reads every partition from a position (tests, the demo);
    with one it is a consumer-group member that commits what it has read, as a clearance
    system would (then its replay memory must be durable too).
    """

    def __init__(
        self,
        connect: Connect,
        topic: str,
        envelope: Envelope,
        *,
        group_id: str | None = None,
        dlq_topic: str | None = None,
    ) -> None:
        self._group_id = group_id
        self._dlq_topic = dlq_topic
        self._dead_letters: AIOKafkaProducer | None = None
        self._connect = connect
        self._consumer = AIOKafkaConsumer(
            **client_options(connect),
            enable_auto_commit=False,
            group_id=group_id,
            auto_offset_reset="earliest",
            # Only decisions of committed transactions (the hub may run exactly-once).
            isolation_level="read_committed",
        )
        self.rejected: list[EnvelopeRejected] = []
        self._topic = topic
        self._envelope = envelope
        self._codec = DecisionCodec()

    async def start(self, *, from_beginning: bool = False) -> None:
        """Assign every partition, at the end (only new decisions) or the beginning."""
        if self._group_id is not None:
            self._consumer.subscribe([self._topic])
            await self._consumer.start()
            return
        partitions = await topic_partitions(self._connect, self._topic)
        await self._consumer.start()
        assigned = [TopicPartition(self._topic, p) for p in partitions]
        self._consumer.assign(assigned)
        if from_beginning:
            await self._consumer.seek_to_beginning(*assigned)
        else:
            await self._consumer.seek_to_end(*assigned)
            for tp in assigned:  # resolve the lazy seek now, before anything is submitted
                await self._consumer.position(tp)

    async def stop(self) -> None:
        await self._consumer.stop()
        if self._dead_letters is not None:
            await self._dead_letters.stop()

    async def collect(
        self, *, expected: int, timeout_s: float, references: set[str] | None = None
    ) -> list[ReceivedDecision]:
        """Read until ``expected`` decisions (about ``references`` if given) or timeout."""
        received: list[ReceivedDecision] = []
        deadline = time.monotonic() + timeout_s
        while len(received) < expected and time.monotonic() < deadline:
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    try:
                        decided = self._open(record.value or b"", record.partition, record.offset)
                    except EnvelopeRejected as rejection:
                        self.rejected.append(rejection)  # never acted on
                        await self._dead_letter(record, rejection)
                        continue
                    if references is None or decided.decision.reference in references:
                        received.append(decided)
            if batches and self._group_id is not None:
                await self._consumer.commit()
        return received

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], rejection: EnvelopeRejected
    ) -> None:
        if self._dlq_topic is None:
            return
        if self._dead_letters is None:
            self._dead_letters = AIOKafkaProducer(**client_options(self._connect))
            await self._dead_letters.start()
        await self._dead_letters.send_and_wait(
            self._dlq_topic,
            record.value,
            key=record.key,
            headers=dead_letter_headers(
                error_class=ErrorClass.SECURITY,
                kind=rejection.kind.value,
                reason=str(rejection),
                source=SourcePosition(record.topic, record.partition, record.offset, record.key),
                component="clearance.reader",
            ),
        )

    def _open(self, data: bytes, partition: int, offset: int) -> ReceivedDecision:
        opened = self._envelope.open(
            data, topic=self._topic, position=f"{self._topic}/{partition}/{offset}"
        )
        return ReceivedDecision(self._codec.decode(opened.payload), opened, partition, offset)


__all__ = [
    "DecisionReader",
    "EnvelopeRejected",
    "ReceivedDecision",
    "submit_declarations",
]
