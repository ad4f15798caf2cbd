"""The audit links of a lane's batch reach the broker as one record batch, in order, with
their headers (runtime/audit_lanes.py ``AuditLinkProducer``): what makes a batch appended
whole or not at all, never a link missing behind the ones that follow it."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from gun_contract.effects import OutgoingRecord
from gun_contract.kafka.client import ClientConfig
from gun_hub.runtime.audit_lanes import AuditLinkProducer
from tests.integration.seeded_topics import fresh_topic

pytestmark = pytest.mark.broker


async def test_a_lane_batch_is_one_record_batch_on_the_broker(kafka_bootstrap: str) -> None:
    topic = await fresh_topic(kafka_bootstrap, "audit-batch", partitions=2)
    producer = AuditLinkProducer(ClientConfig(kafka_bootstrap), topic)
    links = [
        OutgoingRecord(topic, None, f'{{"seq": {n}}}'.encode(), [("gun.trace.id", b"t")], 1)
        for n in range(1, 4)
    ]
    try:
        await (await producer.send_batch(1, links))
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
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
    assert [r.offset for r in read] == [0, 1, 2]
    assert all(r.headers == (("gun.trace.id", b"t"),) for r in read)
