"""The decision publisher: exactly one decision per (reference, version) on the topic.

The hub's agents process at-least-once, so a worker killed at the wrong instant can
announce a decision twice. They therefore write sealed decisions to an internal outbox
topic; this publisher moves them to ``gun.decisions`` in Kafka transactions, each batch
together with its outbox offsets, skipping any (reference, version) already published.

After a crash the new producer (same transactional id) aborts the dead one's open
transaction, the set of published pairs is rebuilt from the committed decisions, and
consumption resumes from the committed outbox offsets: nothing is lost, nothing doubled,
for readers that read committed records only (``isolation_level="read_committed"``).

The agents seal each decision to the hub itself; the publisher opens it and seals it to
the clearance system as it publishes. The envelope's ``iat`` is thus the time the
decision enters ``gun.decisions``, and the clearance system's freshness check (against
the broker's log-append time) holds however long a decision waited in the outbox: a
publisher that was down for an hour publishes an hour of decisions that all open.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from gun_hub.envelope import ContentType, Envelope, EnvelopeRejected, broker_accepted_at
from gun_hub.kafka.admin import topic_partitions
from gun_hub.kafka.client import Connect, consumer_options, producer_options
from gun_hub.outbox import Headers
from gun_hub.security.entitlements import CLEARANCE_PARTY

log = logging.getLogger(__name__)

HEADER_VERSION = "gun.decision.version"


def _version_of(headers: Headers) -> bytes:
    return next((value for key, value in headers if key == HEADER_VERSION), b"")


class DecisionPublisher:
    def __init__(
        self,
        connect: Connect,
        outbox_topic: str,
        decisions_topic: str,
        app_id: str,
        envelope: Envelope,
    ) -> None:
        self._connect = connect
        self._envelope = envelope
        self._outbox = outbox_topic
        self._decisions = decisions_topic
        self._group = f"{app_id}-publisher"
        self._transactional_id = f"{app_id}-publisher"
        self._published: set[tuple[bytes, bytes]] = set()
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()  # its transactional producer is up (readiness)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        producer = AIOKafkaProducer(
            **producer_options(self._connect),
            transactional_id=self._transactional_id,
            enable_idempotence=True,
            acks="all",
        )
        # Starting fences any previous incarnation and aborts its open transaction.
        await producer.start()
        consumer = AIOKafkaConsumer(
            self._outbox,
            **consumer_options(self._connect),
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        try:
            await self._remember_published()
            await consumer.start()
            self.ready.set()
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=100, max_records=500)
                if batches:
                    await self._publish(producer, batches)
        finally:
            self.ready.clear()
            await consumer.stop()
            await producer.stop()

    async def _remember_published(self) -> None:
        """Every (reference, version) already committed on the decisions topic."""
        partitions = [
            TopicPartition(self._decisions, p)
            for p in await topic_partitions(self._connect, self._decisions)
        ]
        reader = AIOKafkaConsumer(
            **consumer_options(self._connect),
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await reader.start()
        try:
            reader.assign(partitions)
            await reader.seek_to_beginning(*partitions)
            ends = await reader.end_offsets(partitions)
            pending = {tp for tp in partitions if ends[tp] > 0}
            while pending:
                for records in (await reader.getmany(timeout_ms=200)).values():
                    for record in records:
                        self._published.add((record.key or b"", _version_of(list(record.headers))))
                for tp in list(pending):
                    if await reader.position(tp) >= ends[tp]:
                        pending.discard(tp)
        finally:
            await reader.stop()
        log.info("publisher: %d decisions already published", len(self._published))

    async def _publish(self, producer: AIOKafkaProducer, batches: dict) -> None:  # type: ignore[type-arg]
        sent: set[tuple[bytes, bytes]] = set()
        async with producer.transaction():
            for records in batches.values():
                for record in records:
                    headers = list(record.headers)
                    identity = (record.key or b"", _version_of(headers))
                    if identity in self._published or identity in sent:
                        continue  # announced again after a crash: published already
                    sealed = self._seal_for_clearance(record)
                    if sealed is None:
                        continue
                    await producer.send(self._decisions, sealed, key=record.key, headers=headers)
                    sent.add(identity)
            await producer.send_offsets_to_transaction(
                {tp: records[-1].offset + 1 for tp, records in batches.items()}, self._group
            )
        self._published |= sent  # only once the transaction is committed

    def _seal_for_clearance(self, record: ConsumerRecord[bytes, bytes]) -> bytes | None:
        """The decision the agents sealed to the hub, sealed now to the clearance system.

        The outbox is written by the hub's agents alone; a record that does not open is
        logged and skipped (nothing else could have written it, so it is a bug, not data).
        """
        try:
            opened = self._envelope.open(
                record.value or b"",
                topic=self._outbox,
                position=f"{record.topic}/{record.partition}/{record.offset}",
                accepted_at=broker_accepted_at(record.timestamp, record.timestamp_type),
            )
        except EnvelopeRejected:
            log.exception(
                "publisher: outbox record %s/%d/%d does not open; skipped",
                record.topic,
                record.partition,
                record.offset,
            )
            return None
        return self._envelope.seal(
            opened.payload,
            recipient=CLEARANCE_PARTY,
            topic=self._decisions,
            content_type=ContentType.XML,
        )
