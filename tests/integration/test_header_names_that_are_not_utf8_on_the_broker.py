"""A record whose header name is not UTF-8, as kcat or any client in C may write it, is read
by the hub's consumers (gun_contract/kafka/lenient_headers.py; found by review in stop 34:
aiokafka stopped at it, for ever)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from gun_contract.kafka.client import ClientConfig, consumer_options
from tests.integration.seeded_topics import fresh_topic
from tests.poison_corpus import NAME_AS_READ, send_with_a_header_name_not_utf8

pytestmark = pytest.mark.broker


async def test_a_header_name_that_is_not_utf8_does_not_stop_a_consumer(
    kafka_bootstrap: str,
) -> None:
    topic = await fresh_topic(kafka_bootstrap, "not-utf8-header")
    await send_with_a_header_name_not_utf8(kafka_bootstrap, topic, 0, b"first")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"second", partition=0, headers=[("k", b"t")])
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        **consumer_options(ClientConfig(kafka_bootstrap)), enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.seek_to_beginning()
        read: list[tuple[bytes | None, list[tuple[str, bytes]]]] = []
        async with asyncio.timeout(30):
            while len(read) < 2:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    read += [(r.value, list(r.headers)) for r in records]
    finally:
        await consumer.stop()
    assert read == [
        (b"first", [(NAME_AS_READ, b"x"), ("gun.trace.id", b"0af7651916cd43dd")]),
        (b"second", [("k", b"t")]),
    ]
