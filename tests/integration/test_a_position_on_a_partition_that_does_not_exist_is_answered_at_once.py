"""A record asked by its position on a partition that does not exist is a prompt, definite
"not there", on the real broker (review stop 37, H2).

The reader asked the partition's beginning and end offsets outside its timeout; for a
partition that does not exist aiokafka asks again until its request timeout (40 s) and then
raises: the dead-letter desk answered 503 "ask again" for a record that will never exist,
the CLI gave up first with "cannot reach the hub", and the reader's lock held the hub
worker's own redrive checks back all that while.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaProducer

from gun_contract.kafka.client import ClientConfig
from gun_contract.kafka.log_reader import LogReader
from tests.integration.seeded_topics import fresh_topic

pytestmark = pytest.mark.broker

PROMPT_S = 5.0  # well under the reader's 10 s timeout, and aiokafka's 40 s


async def test_a_partition_that_does_not_exist_holds_no_record_and_says_so_at_once(
    kafka_bootstrap: str,
) -> None:
    topic = await fresh_topic(kafka_bootstrap, "log-reader", partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"the record", partition=1)
    finally:
        await producer.stop()
    reader = LogReader(ClientConfig(kafka_bootstrap))
    try:
        began = time.monotonic()
        async with asyncio.timeout(PROMPT_S):
            assert await reader.read(topic, 99, 0) is None
            assert await reader.read(f"{topic}-never-created", 0, 0) is None
            assert await reader.partitions(topic, f"{topic}-never-created") == {
                topic: frozenset({0, 1}),
                f"{topic}-never-created": frozenset(),
            }
            # the reader is still of use, at once, for a record that is there
            found = await reader.read(topic, 1, 0)
        assert found is not None
        assert found.value == b"the record"
        assert time.monotonic() - began < PROMPT_S
    finally:
        await reader.close()


async def test_a_read_behind_another_waits_no_longer_than_the_timeout(
    kafka_bootstrap: str,
) -> None:
    """Every call of the reader is bounded by its timeout, the wait for the lock included:
    the hub worker's redrive checks share it with the operators' desk."""
    topic = await fresh_topic(kafka_bootstrap, "log-reader")
    reader = LogReader(ClientConfig(kafka_bootstrap), timeout_s=1.0)
    try:
        await reader.partitions(topic)  # started: what follows measures reads only
        async with reader._lock:  # another read, stuck on the broker
            began = time.monotonic()
            with pytest.raises(TimeoutError):
                await reader.read(topic, 0, 0)
            assert time.monotonic() - began < 3.0
    finally:
        await reader.close()
