"""A fresh one-partition topic holding ``record 0`` .. ``record N-1``, for the tests that
run a worker of the hub's runtime over known offsets."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def fresh_topic(bootstrap: str, prefix: str, partitions: int = 1) -> str:
    """A new empty topic named ``prefix-<random>``."""
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    return topic


async def seeded_topic(bootstrap: str, prefix: str, records: int) -> str:
    topic = await fresh_topic(bootstrap, prefix)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for n in range(records):
            await producer.send(topic, f"record {n}".encode(), partition=0)
        await producer.flush()
    finally:
        await producer.stop()
    return topic
