"""The clearance system's side of the contract: submit declarations, read decisions.

Used by ``gun-hub submit``, ``gun-hub decisions``, the demo and the end-to-end tests; it
is a plain Kafka client of the external contract, nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from gun_contract.commit_clock import CommitClock
from gun_contract.consume import Batch, consume
from gun_contract.dead_letter import ErrorClass, SourcePosition, dead_letter_record
from gun_contract.effects import OutgoingRecord
from gun_contract.envelope import (
    Envelope,
    EnvelopeRejected,
    OpenedMessage,
    broker_accepted_at,
)
from gun_contract.kafka.admin import topic_partitions
from gun_contract.kafka.client import (
    Connect,
    client_options,
    consumer_options,
)
from gun_contract.limits import max_sealed_payload_bytes
from gun_contract.model.decision import Decision
from gun_contract.security.replay import FollowsCommits
from gun_hub.gateway.sender import DeclarationSender
from gun_hub.xml.decision_codec import DecisionCodec
from gun_hub.xml.declaration_codec import sniff_identity
from gun_hub.xml.safe_parse import XmlLimits, XmlRejected

log = logging.getLogger(__name__)
_BATCH = 100  # records per poll: a few tens of milliseconds of opening envelopes

COMPONENT = "clearance.reader"


async def submit_declarations(
    connect: Connect,
    topic: str,
    declarations: Iterable[bytes],
    envelope: Envelope | None = None,
) -> list[str]:
    """Publish declarations keyed by reference, sealed by ``envelope`` (the clearance
    system's: signed by it, encrypted to the hub), or as plain XML when it is None (for a
    hub that accepts plain declarations: local development); the references sent."""
    sender = DeclarationSender(connect, topic, envelope)
    await sender.start()
    references = []
    try:
        deliveries = []
        for data in declarations:
            identity = sniff_identity(data)
            reference = identity.reference if identity else ""
            references.append(reference)
            deliveries.append(await sender.publish(sender.seal(data), reference))
        await asyncio.gather(*deliveries)
    finally:
        await sender.stop()
    return references


@dataclass(frozen=True, slots=True)
class ReceivedDecision:
    decision: Decision
    envelope: OpenedMessage
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A record of the decisions topic that is no usable decision, and why."""

    error_class: ErrorClass
    kind: str
    reason: str


# A decision lists every document its declaration quoted: a declaration at the intake
# limit can give a decision larger than the parser's default limits (limits.py).
_DECISION_LIMITS = XmlLimits(max_bytes=max_sealed_payload_bytes(), max_elements=1_000_000)


class DecisionReader:
    """Reads ``gun.decisions``, verifying and decrypting each decision before use.

    Without ``group_id`` it reads every partition from a position (tests, the demo);
    with one it is a consumer-group member that commits what it has read, as a clearance
    system would (then its replay memory must be durable too).

    Freshness is judged at the time the broker accepted each decision (its log-append
    time), so a reader that comes back after hours acts on every waiting decision. Any
    record it cannot open or decode (a rejected envelope, XML that is not a decision,
    whatever the libraries raise) is dead-lettered with its reason and skipped: nothing a
    party writes on the topic stops the reader.
    """

    def __init__(
        self,
        connect: Connect,
        topic: str,
        envelope: Envelope,
        *,
        group_id: str | None = None,
        dlq_topic: str | None = None,
        replay_memory: FollowsCommits | None = None,
    ) -> None:
        self._group_id = group_id
        # The envelope's replay memory, told how far back each partition can be read
        # again after each confirmed commit (a batch handled, then a crash before its
        # commit, is read again: review stop 38, L3).
        self._replay_memory = replay_memory
        self._read_times = CommitClock()
        self._dlq_topic = dlq_topic
        self._dead_letters: AIOKafkaProducer | None = None
        self._connect = connect
        self._consumer: AIOKafkaConsumer | None = None  # made by start(), in its event loop
        self.rejected: list[EnvelopeRejected] = []  # envelopes refused (security)
        self.unreadable: list[Unreadable] = []  # every record skipped, rejections included
        # Next offset to handle per partition: a rebalance may serve records again from
        # the last commit (one number per partition, however long the reader runs).
        self._next: dict[int, int] = {}
        self._topic = topic
        self._envelope = envelope
        self._codec = DecisionCodec(_DECISION_LIMITS)

    async def start(self, *, from_beginning: bool = False) -> None:
        """Assign every partition, at the end (only new decisions) or the beginning."""
        consumer = self._consumer = AIOKafkaConsumer(
            **consumer_options(self._connect),
            enable_auto_commit=False,
            group_id=self._group_id,
            auto_offset_reset="earliest",
            # Only decisions of committed transactions (the publisher's, publisher.py).
            isolation_level="read_committed",
        )
        if self._group_id is not None:
            consumer.subscribe([self._topic])
            await consumer.start()
            return
        partitions = await topic_partitions(self._connect, self._topic)
        await consumer.start()
        assigned = [TopicPartition(self._topic, p) for p in partitions]
        consumer.assign(assigned)
        if from_beginning:
            await consumer.seek_to_beginning(*assigned)
        else:
            await consumer.seek_to_end(*assigned)
            for tp in assigned:  # resolve the lazy seek now, before anything is submitted
                await consumer.position(tp)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._dead_letters is not None:
            await self._dead_letters.stop()

    async def collect(
        self, *, expected: int, timeout_s: float, references: set[str] | None = None
    ) -> list[ReceivedDecision]:
        """Read until ``expected`` decisions (about ``references`` if given) or timeout."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("DecisionReader.start() was not called")
        received: list[ReceivedDecision] = []
        deadline = time.monotonic() + timeout_s

        async def handle(batch: Batch) -> None:
            for records in batch.values():
                for record in records:
                    if record.offset < self._next.get(record.partition, 0):
                        continue  # read again after a rebalance: already handled
                    self._next[record.partition] = record.offset + 1
                    self._read_times.saw(
                        record.partition,
                        record.offset,
                        broker_accepted_at(record.timestamp, record.timestamp_type),
                    )
                    examined = self.examine(record)  # never raises
                    if isinstance(examined, Unreadable):
                        await self._send_dead_letter(record, examined)  # never acted on
                    elif references is None or examined.decision.reference in references:
                        received.append(examined)
                    await asyncio.sleep(0)

        # Small batches, and the loop yielded between records: opening an envelope takes
        # CPU, and a reader that starves its own heartbeats is thrown out of its group. A
        # commit refused after a rebalance: the partitions are read again from the last
        # commit, and what was already handled is skipped above.
        await consume(
            consumer,
            handle,
            commit=self._group_id is not None,
            until=lambda: len(received) >= expected or time.monotonic() >= deadline,
            timeout_ms=200,
            max_records=_BATCH,
            committed=self._committed,
        )
        return received

    def _committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            readable_from = self._read_times.readable_from(tp.partition, offset)
            if readable_from is not None and self._replay_memory is not None:
                self._replay_memory.committed(tp.topic, tp.partition, readable_from)

    async def end_offsets(self) -> dict[int, int]:
        """Where each partition read ends now; read_committed, so at its last stable
        offset (a transaction still open holds it back)."""
        consumer = self._started()
        ends = await consumer.end_offsets(list(consumer.assignment()))
        return {tp.partition: offset for tp, offset in ends.items()}

    async def reached(self, ends: Mapping[int, int]) -> bool:
        """Whether every partition of ``ends`` is read up to its offset there (its
        transaction markers included: they move the position without a record)."""
        consumer = self._started()
        for partition, end in ends.items():
            if await consumer.position(TopicPartition(self._topic, partition)) < end:
                return False
        return True

    def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("DecisionReader.start() was not called")
        return self._consumer

    def examine(self, record: ConsumerRecord[bytes, bytes]) -> ReceivedDecision | Unreadable:
        """Open and decode one record; never raises for anything the record holds."""
        try:
            return self._open(record)
        except EnvelopeRejected as rejection:
            self.rejected.append(rejection)
            unreadable = Unreadable(ErrorClass.SECURITY, rejection.kind.value, str(rejection))
        except XmlRejected as refusal:
            unreadable = Unreadable(ErrorClass.PERMANENT, f"XML_{refusal.kind.value}", str(refusal))
        except Exception as error:  # noqa: BLE001 - whatever a record makes a library raise
            unreadable = Unreadable(
                ErrorClass.PERMANENT,
                "DECISION_UNREADABLE",
                f"{type(error).__name__}: {str(error)[:500]}",
            )
        self.unreadable.append(unreadable)
        return unreadable

    def dead_letter(
        self, record: ConsumerRecord[bytes, bytes], unreadable: Unreadable
    ) -> OutgoingRecord:
        """The dead letter of a record that is no usable decision (always fits)."""
        return dead_letter_record(
            self._dlq_topic or "",
            record.value or b"",
            error_class=unreadable.error_class,
            kind=unreadable.kind,
            reason=unreadable.reason,
            source=SourcePosition(record.topic, record.partition, record.offset, record.key),
            component=COMPONENT,
        )

    async def _send_dead_letter(
        self, record: ConsumerRecord[bytes, bytes], unreadable: Unreadable
    ) -> None:
        log.warning(
            "decision at %s/%d/%d not used: %s",
            record.topic,
            record.partition,
            record.offset,
            unreadable.kind,
        )
        if self._dlq_topic is None:
            return
        if self._dead_letters is None:
            # Like every record that must not be lost: on every in-sync replica, once.
            self._dead_letters = AIOKafkaProducer(
                **client_options(self._connect), acks="all", enable_idempotence=True
            )
            await self._dead_letters.start()
        letter = self.dead_letter(record, unreadable)
        # A failure to send is the broker's, not the record's: it raises before the
        # commit, so the record is read again.
        await self._dead_letters.send_and_wait(
            letter.topic, letter.value, key=letter.key, headers=letter.headers
        )

    def _open(self, record: ConsumerRecord[bytes, bytes]) -> ReceivedDecision:
        where = f"{record.topic}/{record.partition}/{record.offset}"
        opened = self._envelope.open(
            record.value or b"",
            topic=self._topic,
            position=where,
            accepted_at=broker_accepted_at(record.timestamp, record.timestamp_type),
        )
        decision = self._codec.decode(opened.payload)
        return ReceivedDecision(decision, opened, record.partition, record.offset)


__all__ = [
    "DecisionReader",
    "DeclarationSender",
    "EnvelopeRejected",
    "ReceivedDecision",
    "Unreadable",
    "submit_declarations",
]
