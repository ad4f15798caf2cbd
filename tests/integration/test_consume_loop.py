"""The one consume loop on the real broker (gun_contract/consume.py): a record whose
handling raises, among good ones, is dead-lettered with its reason, the records after it
are handled, and the group's committed offset is past all of them."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from gun_contract.consume import UNHANDLED_ERROR, DeadLetters, Record, consume, each_record
from gun_contract.dead_letter import (
    HEADER_COMPONENT,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_TOPIC,
    header_value,
)
from gun_contract.kafka.admin import topic_partitions
from gun_contract.kafka.client import consumer_options, producer_options
from tests.conftest import KafkaEnv

pytestmark = pytest.mark.broker

VALUES = [b"good 0", b"good 1", b"poison", b"good 3", b"good 4"]


async def test_a_poisoned_record_is_dead_lettered_and_the_loop_goes_on_past_it(
    kafka_env: KafkaEnv,
) -> None:
    source = kafka_env.topics.requests("dgal")
    tp = TopicPartition(source, 0)
    producer = AIOKafkaProducer(**producer_options(kafka_env.bootstrap), acks="all")
    await producer.start()
    consumer = AIOKafkaConsumer(
        source,
        **consumer_options(kafka_env.bootstrap),
        group_id=f"{kafka_env.prefix}-loop",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        for value in VALUES:
            await producer.send_and_wait(source, value, key=b"declaration-1", partition=0)
        handled: list[bytes] = []

        async def handle(record: Record) -> None:
            if record.value == b"poison":
                raise ValueError("this record cannot be handled")
            handled.append(record.value or b"")

        letters = DeadLetters(producer, kafka_env.topics.dlq, "test.loop")
        async with asyncio.timeout(60):
            await consume(
                consumer,
                each_record(handle, letters),
                commit=True,
                until=lambda: len(handled) + letters.sent == len(VALUES),
            )

        assert handled == [v for v in VALUES if v != b"poison"]
        assert await consumer.committed(tp) == len(VALUES)  # past the dead letter too
        letter = await _the_only_record(kafka_env, kafka_env.topics.dlq)
        assert letter.value == b"poison"
        assert letter.key == b"declaration-1"
        assert header_value(letter.headers, HEADER_ERROR_KIND) == UNHANDLED_ERROR
        reason = str(header_value(letter.headers, HEADER_ERROR_REASON))
        assert reason.startswith("ValueError raised at tests.integration.test_consume_loop:")
        assert header_value(letter.headers, HEADER_SOURCE_TOPIC) == source
        assert header_value(letter.headers, HEADER_SOURCE_OFFSET) == "2"
        assert header_value(letter.headers, HEADER_COMPONENT) == "test.loop"
    finally:
        await consumer.stop()
        await producer.stop()


async def _the_only_record(kafka_env: KafkaEnv, topic: str) -> Record:
    """The one record on ``topic``, read from the beginning of every partition."""
    reader = AIOKafkaConsumer(
        **consumer_options(kafka_env.bootstrap), group_id=None, enable_auto_commit=False
    )
    await reader.start()
    try:
        partitions = [
            TopicPartition(topic, p) for p in await topic_partitions(kafka_env.bootstrap, topic)
        ]
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        end = await reader.end_offsets(partitions)
        assert sum(end.values()) == 1, f"one dead letter expected, the log holds {end}"
        async with asyncio.timeout(30):
            while True:
                batch = await reader.getmany(timeout_ms=500)
                for records in batch.values():
                    return records[0]
    finally:
        await reader.stop()
