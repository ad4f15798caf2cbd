"""A partner down longer than the request topic's retention loses no write-off in silence.

The real DGAL adapter on the real broker, a real partner simulator over HTTP; the
conformance harness plays the hub. ``delete_records`` moves a request partition's log
start as retention would after 7 days.

Found by review (these tests first): a write-off queued on a down partner held its
partition's commit, retention deleted its request, and the replica restarted: it forgot
the row (the log was to give it back), its fetch from the commit was out of range and
reset to the log start, past the write-off. It never reached the partner, and nothing
said so; nor did anything say so of requests deleted before they were ever read.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.records_to_delete import RecordsToDelete
from aiokafka.partitioner import DefaultPartitioner

from adapters.conformance.harness import Harness, Quote
from gun_contract.dead_letter import (
    HEADER_ERROR_KIND,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    header_value,
)
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Verdict
from tests.conftest import PARTITIONS, KafkaEnv
from tests.integration.test_adapter_replicas_keep_the_ledger_exact import (
    on_the_same_partition,
    replica,
    until,
    until_answered,
    until_owned,
)
from tests.partner_fixtures import RunningPartner

pytestmark = pytest.mark.broker


def partition_of(reference: str) -> int:
    """Where the harness publishes ``reference``'s requests (the Java client's
    partitioner, by key)."""
    partitions = list(range(PARTITIONS))
    return int(DefaultPartitioner()(reference.encode(), partitions, partitions))


async def retention_deletes_before(kafka_env: KafkaEnv, partition: int, offset: int) -> None:
    """What retention does once the records before ``offset`` are older than it keeps."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_env.bootstrap)
    await admin.start()
    try:
        tp = TopicPartition(kafka_env.topics.requests("dgal"), partition)
        await admin.delete_records({tp: RecordsToDelete(offset)})
    finally:
        await admin.close()


async def end_of(kafka_env: KafkaEnv, partition: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_env.bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(kafka_env.topics.requests("dgal"), partition)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def dead_letters(kafka_env: KafkaEnv, kind: str) -> list[ConsumerRecord[bytes, bytes]]:
    """The dead letters of ``kind`` on ``gun.dlq`` (read until one is there)."""
    consumer = AIOKafkaConsumer(
        kafka_env.topics.dlq, bootstrap_servers=kafka_env.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(30):
            while not found:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    found += [
                        r for r in batch if header_value(r.headers, HEADER_ERROR_KIND) == kind
                    ]
    finally:
        await consumer.stop()
    return found


async def test_a_write_off_whose_request_retention_deleted_reaches_the_partner(
    kafka_env: KafkaEnv, partner: RunningPartner, hub: Harness
) -> None:
    blocked: set[str] = set()
    doc, doc_y = await hub.seed("aged-out"), await hub.seed("after-it")
    async with replica(kafka_env, partner, "a", blocked) as first:
        await until_owned([first])
        reservation = hub.request(Operation.RESERVE, [Quote(doc, "60")])
        assert (await hub.ask(reservation)).answers[0].verdict is Verdict.VALID
        # The partner goes down for this declaration: its write-off is queued.
        blocked.add(reservation.reference)
        write_off = hub.request(
            Operation.WRITE_OFF,
            [Quote(doc, None, line=None, unit=None)],
            reference=reservation.reference,
        )
        assert (await hub.ask(write_off)).answers[0].verdict is Verdict.UNAVAILABLE
        # Another declaration of the partition is answered after it.
        reference_y = on_the_same_partition(hub, reservation.reference)
        later = hub.request(Operation.RESERVE, [Quote(doc_y, "5")], reference=reference_y)
        assert (await hub.ask(later)).answers[0].verdict is Verdict.VALID
        partition = partition_of(reservation.reference)
        [(held, queued_at)] = first.pending.oldest_offsets().items()
        assert held == partition

    # Days pass: retention deletes the write-off's request (and what came before it).
    await retention_deletes_before(kafka_env, partition, queued_at + 1)
    blocked.clear()  # the partner is back

    # The replica starts again (any rebalance would do as well).
    async with replica(kafka_env, partner, "a", blocked) as again:
        await until_owned([again])
        applied = await until_answered(hub, write_off.request_id, Verdict.VALID, timeout_s=30)
        assert applied.answers[0].partner_code == "01"
        # Answer first, then forget (adapters/base/replay.py).
        await until(lambda: len(again.pending) == 0, timeout_s=10)

    assert await hub.ledger(doc) == (Decimal(0), Decimal(60))
    assert await hub.ledger(doc_y) == (Decimal(5), Decimal(0))


async def test_requests_deleted_before_the_adapter_read_them_are_dead_lettered(
    kafka_env: KafkaEnv, partner: RunningPartner, hub: Harness
) -> None:
    doc = await hub.seed("never-read")
    async with replica(kafka_env, partner, "a") as first:
        await until_owned([first])
        reservation = hub.request(Operation.RESERVE, [Quote(doc, "60")])
        assert (await hub.ask(reservation)).answers[0].verdict is Verdict.VALID

    # The adapter is down for longer than the retention: the write-off sent meanwhile is
    # deleted before it is read.
    partition = partition_of(reservation.reference)
    sent_at = await end_of(kafka_env, partition)
    write_off = hub.request(
        Operation.WRITE_OFF,
        [Quote(doc, None, line=None, unit=None)],
        reference=reservation.reference,
    )
    await hub.publish(write_off.reference, hub.seal(write_off))
    await retention_deletes_before(kafka_env, partition, sent_at + 1)

    async with replica(kafka_env, partner, "a") as again:
        await until_owned([again])
        [letter] = await dead_letters(kafka_env, "REQUEST_AGED_OUT_OF_THE_LOG")
    assert header_value(letter.headers, HEADER_SOURCE_PARTITION) == str(partition)
    assert header_value(letter.headers, HEADER_SOURCE_OFFSET) == str(sent_at)
    await hub.no_answer(write_off.request_id, 0.5)
    assert await hub.ledger(doc) == (Decimal(60), Decimal(0))  # for operations to act on
