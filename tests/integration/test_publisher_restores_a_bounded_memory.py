"""A publisher taking an outbox partition over reads back only its last decisions, and
still skips one announced again after a crash (issue 12, bounded state: no re-reading of
a day, let alone 30, at start-up; gun_hub/runtime/publisher.py)."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from tests.conftest import PARTITIONS, KafkaEnv
from tests.integration.publisher_fixtures import (
    announce,
    new_publisher,
    outbox_read_to_its_end,
    published,
    running,
    stop,
)

pytestmark = pytest.mark.broker

DECISIONS = 60  # 15 per partition
MEMORY = 10  # decisions remembered per partition


async def test_a_restarted_publisher_remembers_the_latest_decisions_only_and_skips_a_repeat(
    kafka_env: KafkaEnv,
) -> None:
    first = new_publisher(kafka_env, memory=MEMORY)
    task = await running(first)
    await announce(kafka_env, range(DECISIONS))
    await published(kafka_env, DECISIONS, first)
    await stop(first, task)

    second = new_publisher(kafka_env, memory=MEMORY)
    task = await running(second)
    try:
        # The last five of each partition, announced again after a crash.
        await announce(kafka_env, range(DECISIONS - 5 * PARTITIONS, DECISIONS))
        seen = await published(kafka_env, DECISIONS, second)
        assert len(seen) == DECISIONS
        assert [key for key, times in seen.items() if times > 1] == []
        # 15 were published on each partition; the last 10 are remembered (a partition
        # the group is handing over again at this instant is not counted).
        remembered = second.remembered()
        assert remembered
        assert set(remembered.values()) == {MEMORY}
    finally:
        await stop(second, task)


async def aborted_transactions(kafka_env: KafkaEnv, records_per_partition: int) -> None:
    """Records sent to every decisions partition in transactions that were aborted: what a
    publisher retrying a batch leaves (each attempt's records, then its abort marker),
    skipped by every committed reader, yet taking offsets."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_env.bootstrap,
        transactional_id=f"{kafka_env.prefix}-aborting",
        enable_idempotence=True,
    )
    await producer.start()
    try:
        for attempt in range(records_per_partition // 10):
            await producer.begin_transaction()
            for partition in range(PARTITIONS):
                for n in range(10):
                    await producer.send(
                        kafka_env.topics.decisions,
                        b"<Decision attempt/>",
                        key=f"26FRABORT{attempt:04d}{n:05d}".encode(),
                        partition=partition,
                    )
            await producer.abort_transaction()
    finally:
        await producer.stop()


async def test_a_publisher_remembers_its_decisions_behind_aborted_transactions(
    kafka_env: KafkaEnv,
) -> None:
    """The read-back went back twice the memory in offsets, room for as many decisions at
    one a transaction; aborted transactions take offsets too (a batch retried for 20 s
    while a state key was missing aborts dozens), so the window held none of the
    decisions and a repeat was published twice (review stop 45). It now reads further
    back until the memory is full."""
    first = new_publisher(kafka_env, memory=MEMORY)
    task = await running(first)
    await announce(kafka_env, range(DECISIONS))
    await published(kafka_env, DECISIONS, first)
    await stop(first, task)
    await aborted_transactions(kafka_env, records_per_partition=4 * MEMORY)

    second = new_publisher(kafka_env, memory=MEMORY)
    task = await running(second)
    try:
        await announce(kafka_env, range(DECISIONS - 5 * PARTITIONS, DECISIONS))
        await outbox_read_to_its_end(kafka_env)  # the repeats published or skipped
        seen = await published(kafka_env, DECISIONS, second)
        assert [key for key, times in seen.items() if times > 1] == []
        assert set(second.remembered().values()) == {MEMORY}
    finally:
        await stop(second, task)
