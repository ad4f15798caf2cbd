"""An audit lane whose transaction the broker aborted for its age, while no other worker
took the partition, takes its partition again: the worker does not crash, and the chain
stays whole, each link on the topic once (runtime/audit_lanes.py, ADR 0019's addendum
of stop 39), on the real broker.

Found by review (stop 39-Z, Z1): the broker frozen longer than the transaction timeout
(60 s); on waking, its transaction coordinator aborted the lane's open transaction and
bumped its producer's epoch. The lane's commit was refused as fenced, the lane read that
as "fenced by another worker" and, the partition still assigned to it, crashed the
worker, which the supervisor restarted; no other worker had taken the partition.

Here the lane's transactions time out after one second, and one of them is held open
(its batch sent, its commit not yet asked for) until the coordinator has aborted it.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.producer.message_accumulator import BatchBuilder

from gun_contract.effects import OutgoingRecord
from gun_contract.kafka.admin import last_records
from gun_contract.kafka.client import ClientConfig, consumer_options
from gun_contract.security.keystore import PUBLIC_JWKS, AuditSigner, read_public_keys
from gun_hub.cli.audit import read_topic
from gun_hub.runtime.audit_lanes import AuditLanes, AuditLinkProducer
from gun_hub.runtime.audit_resync import TAIL_RECORDS, retaker
from gun_hub.security.audit import AuditTrail, verify_chain
from tests.integration.seeded_topics import fresh_topic

pytestmark = pytest.mark.broker

TIMEOUT_MS = 1_000  # the lane's transactions: aborted by the coordinator past this age


class HeldOpen(AuditLinkProducer):
    """The hub's audit link producer, whose first transaction stays open once its batch
    is sent, until ``let_go`` is set: a worker whose broker froze mid-transaction."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.holding = asyncio.Event()
        self.let_go = asyncio.Event()

    async def _append(
        self, producer: AIOKafkaProducer, batch: BatchBuilder, partition: int
    ) -> None:
        await super()._append(producer, batch, partition)
        if not self.holding.is_set():
            self.holding.set()
            await self.let_go.wait()


async def aborted_by_the_coordinator(connect: ClientConfig, topic: str) -> None:
    """Until the transaction left open on partition 0 is aborted: its marker written, the
    stable end (what a read_committed reader may read up to) reaches the log's end. The
    coordinator looks for transactions past their timeout every 10 s."""
    tp = TopicPartition(topic, 0)
    committed = AIOKafkaConsumer(**consumer_options(connect), isolation_level="read_committed")
    uncommitted = AIOKafkaConsumer(**consumer_options(connect))
    await committed.start()
    await uncommitted.start()
    try:
        async with asyncio.timeout(60):
            while True:
                stable = (await committed.end_offsets([tp]))[tp]
                written = (await uncommitted.end_offsets([tp]))[tp]
                if stable == written:
                    return
                await asyncio.sleep(0.5)  # polling the broker: it announces nothing
    finally:
        await committed.stop()
        await uncommitted.stop()


async def test_a_lane_whose_transaction_the_broker_timed_out_takes_its_partition_again(
    kafka_bootstrap: str, keys_dir: Path
) -> None:
    topic = await fresh_topic(kafka_bootstrap, "audit-timed-out", partitions=1)
    connect = ClientConfig(kafka_bootstrap)
    trail = AuditTrail({}, AuditSigner.load(keys_dir), checkpoint_every=4)
    producer = HeldOpen(
        connect, topic, f"test-audit-{uuid.uuid4().hex[:8]}", transaction_timeout_ms=TIMEOUT_MS
    )
    lost: list[BaseException] = []

    async def on_lost(_partition: int, error: BaseException) -> None:
        lost.append(error)  # the hub crashes the worker here

    lanes = AuditLanes(
        topic,
        producer.send_batch,
        producer.release,
        on_lost=on_lost,
        owns=lambda _partition: True,  # no other worker took it: the group says so
        # As the hub takes it again (app.py), after a second here rather than 30.
        retake=retaker(
            producer.take, lambda wanted: last_records(connect, topic, wanted, TAIL_RECORDS)
        ),
        retake_fenced_after_s=1.0,
    )

    def links(*references: str) -> list[OutgoingRecord]:
        return [
            OutgoingRecord(topic, None, link, [], 0)
            for reference in references
            for link in trail.append(0, {"kind": "DECISION", "reference": reference})
        ]

    built: list[OutgoingRecord] = []
    try:
        await producer.take([0])
        trail.resync(0, (await last_records(connect, topic, [0], TAIL_RECORDS)).get(0, []))
        lanes.open([0])
        built += links("R1", "R2")
        first = lanes.send(built)
        await asyncio.wait_for(producer.holding.wait(), 30)  # in its transaction, sent
        await aborted_by_the_coordinator(connect, topic)
        held = len(built)
        built += links("R3", "R4", "R5")  # built meanwhile, on the head of R1 and R2
        later = lanes.send(built[held:])
        producer.let_go.set()  # its commit is refused: fenced by the coordinator
        async with asyncio.timeout(90):
            done, _ = await asyncio.wait([first, later])
        assert not lost, f"the worker would have crashed: {lost}"
        assert all(not f.cancelled() and f.exception() is None for f in done)
    finally:
        await lanes.stop()
        await producer.stop()
        gc.collect()  # the fenced producer's error, collected now (see the fencing tests)
    on_the_topic = await read_topic(connect, topic)
    assert [record.value for record in on_the_topic] == [link.value for link in built]
    report = verify_chain(on_the_topic, read_public_keys(keys_dir / PUBLIC_JWKS))
    assert report.intact, [b.describe() for b in report.broken]
