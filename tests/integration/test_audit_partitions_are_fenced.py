"""A worker that lost an audit partition can no longer add to its chain, and nothing it
left half-sent is ever read after the next owner's resync (runtime/audit_lanes.py,
ADR 0019), on the real broker.

Left open by stop 32, by design: the audit links went out on a plain producer, so a
worker expelled from its group (a long pause, a network cut) but still able to reach the
partition's leader went on appending from its old head after the next owner had read the
tail and built on it, and a batch its producer reported as timed out could still be
appended after that resync: two links naming the same one, a fork ``audit verify``
reports. Now each audit partition has a transactional producer of its own, taken (which
fences any former one and ends its open transaction) before the chain is resynced, and
every reader of the audit topic reads committed records only.
"""

from __future__ import annotations

import gc
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from gun_contract.effects import OutgoingRecord
from gun_contract.kafka.admin import last_records
from gun_contract.kafka.client import ClientConfig
from gun_hub.cli.audit import read_topic
from gun_hub.runtime.audit_lanes import AuditLaneLost, AuditLinkProducer
from tests.integration.seeded_topics import fresh_topic

pytestmark = pytest.mark.broker


def link(topic: str, partition: int, seq: int, branch: str = "") -> OutgoingRecord:
    return OutgoingRecord(topic, None, f'{{"seq": {seq}{branch}}}'.encode(), [], partition)


async def test_a_former_owner_cannot_add_to_a_chain_once_the_next_owner_took_it(
    kafka_bootstrap: str,
) -> None:
    topic = await fresh_topic(kafka_bootstrap, "audit-fence", partitions=2)
    connect = ClientConfig(kafka_bootstrap)
    ids = f"test-audit-{uuid.uuid4().hex[:8]}"
    former = AuditLinkProducer(connect, topic, ids)
    later = AuditLinkProducer(connect, topic, ids)
    try:
        await former.take([1])
        await former.send_batch(1, [link(topic, 1, 1)])
        await later.take([1])  # the group gave partition 1 to another worker
        with pytest.raises(AuditLaneLost):  # the former owner has not heard of it yet
            await former.send_batch(1, [link(topic, 1, 2, ', "by": "former"')])
        await later.send_batch(1, [link(topic, 1, 2)])
    finally:
        await former.stop()
        await later.stop()
        # aiokafka leaves the fenced producer's error in a future of its own nobody awaits
        # (asyncio logs it when collected): collected here rather than at any later
        # moment, such as inside pytest's end, where CPython 3.11's parser fails on a
        # finalizer run mid-parse ("AST constructor recursion depth mismatch").
        gc.collect()
    tail = await last_records(connect, topic, [1], 10)
    assert tail == {1: [b'{"seq": 1}', b'{"seq": 2}']}


async def test_links_left_in_an_open_transaction_are_never_read_once_the_next_owner_took_them(
    kafka_bootstrap: str,
) -> None:
    """A batch handed to the broker whose commit never came (the worker cut off, or its
    producer giving up on it): the next owner's taking ends that transaction, aborted,
    before its resync reads the tail, and no reader of the trail sees it."""
    topic = await fresh_topic(kafka_bootstrap, "audit-open", partitions=1)
    connect = ClientConfig(kafka_bootstrap)
    ids = f"test-audit-{uuid.uuid4().hex[:8]}"
    former = AuditLinkProducer(connect, topic, ids)
    await former.take([0])
    await former.send_batch(0, [link(topic, 0, 1)])
    await former.stop()
    cut_off = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=former.transactional_id(0)
    )
    await cut_off.start()  # the former owner, its next transaction begun
    await cut_off.begin_transaction()
    await cut_off.send_and_wait(topic, b'{"seq": 2, "by": "former"}', partition=0)
    later = AuditLinkProducer(connect, topic, ids)
    try:
        await later.take([0])
        assert await last_records(connect, topic, [0], 10) == {0: [b'{"seq": 1}']}
        await later.send_batch(0, [link(topic, 0, 2)])
    finally:
        await later.stop()
        await cut_off.stop()
    trail = await read_topic(connect, topic)  # what `gun-hub audit verify` reads
    assert [record.value for record in trail] == [b'{"seq": 1}', b'{"seq": 2}']


async def test_the_tail_is_found_behind_any_number_of_aborted_transactions(
    kafka_bootstrap: str,
) -> None:
    """A resync reads the last records by offset; aborted batches and their markers take
    offsets too, and a tail made of them alone would restart the chain from nothing."""
    topic = await fresh_topic(kafka_bootstrap, "audit-aborted", partitions=1)
    connect = ClientConfig(kafka_bootstrap)
    ids = f"test-audit-{uuid.uuid4().hex[:8]}"
    owner = AuditLinkProducer(connect, topic, ids)
    try:
        await owner.take([0])
        await owner.send_batch(0, [link(topic, 0, 1)])
    finally:
        await owner.stop()
    failing = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=owner.transactional_id(0)
    )
    await failing.start()
    try:
        for _ in range(12):  # twelve batches of five, each aborted: 72 offsets
            await failing.begin_transaction()
            for n in range(5):
                await failing.send(topic, f'{{"seq": {n}, "aborted": 1}}'.encode(), partition=0)
            await failing.abort_transaction()
    finally:
        await failing.stop()
    assert await last_records(connect, topic, [0], 10) == {0: [b'{"seq": 1}']}


async def test_a_lane_batch_is_one_record_batch_on_the_broker(kafka_bootstrap: str) -> None:
    """Appended whole or not at all, in order, with the links' headers."""
    topic = await fresh_topic(kafka_bootstrap, "audit-batch", partitions=2)
    connect = ClientConfig(kafka_bootstrap)
    producer = AuditLinkProducer(connect, topic, f"test-audit-{uuid.uuid4().hex[:8]}")
    links = [
        OutgoingRecord(topic, None, f'{{"seq": {n}}}'.encode(), [("gun.trace.id", b"t")], 1)
        for n in range(1, 4)
    ]
    try:
        await producer.take([1])
        await producer.send_batch(1, links)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 1)
        consumer.assign([tp])
        read: list[ConsumerRecord[bytes, bytes]] = []
        while len(read) < 3:
            for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                read += records
    finally:
        await consumer.stop()
    assert [r.value for r in read] == [link.value for link in links]
    assert [r.offset for r in read] == [0, 1, 2]  # one batch: no marker between them
    assert all(r.headers == (("gun.trace.id", b"t"),) for r in read)
