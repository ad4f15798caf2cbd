"""Decision publishers on the real broker, as the tests drive them: decisions announced on
the outbox as the hub's agents write them, publishers run and stopped, and what reached
the decisions topic read back."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import StateCipher
from gun_hub.pipeline.decision_outbox import HEADER_VERSION, OUTBOX_STATE, outbox_record_key
from gun_hub.runtime.publisher import DecisionPublisher, publisher_group
from tests.conftest import PARTITIONS, KafkaEnv
from tests.local_cluster import poll_until


def new_publisher(
    kafka_env: KafkaEnv, kind: type[DecisionPublisher] = DecisionPublisher, **options: Any
) -> Any:
    topics = kafka_env.topics
    return kind(
        kafka_env.bootstrap,
        topics.decision_outbox,
        topics.decisions,
        f"{kafka_env.prefix}-hub",
        kafka_env.envelope(HUB_PARTY),
        StateCipher.load(kafka_env.keys_dir, HUB_PARTY),
        **{"dead_letters": topics.dlq, **options},
    )


async def announce(kafka_env: KafkaEnv, numbers: Iterable[int]) -> None:
    """Decisions as the hub's agents write them: sealed with the hub's state key, on the
    partition their declaration arrived on."""
    cipher = StateCipher.load(kafka_env.keys_dir, HUB_PARTY)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_env.bootstrap, linger_ms=5)
    await producer.start()
    try:
        for n in numbers:
            reference = f"26FRPUB{n:011d}".encode()
            sealed = cipher.seal(
                OUTBOX_STATE, outbox_record_key(reference, b"1"), f"<Decision n='{n}'/>".encode()
            )
            await producer.send(
                kafka_env.topics.decision_outbox,
                sealed,
                key=reference,
                partition=n % PARTITIONS,
                headers=[(HEADER_VERSION, b"1")],
            )
        await producer.flush()
    finally:
        await producer.stop()


async def published(
    kafka_env: KafkaEnv, expected: int, *publishers: DecisionPublisher, within_s: float = 120
) -> Counter[tuple[bytes, int]]:
    """(reference, partition) of every committed decision, once ``expected`` are there
    (at most ``within_s`` seconds)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_env.bootstrap, isolation_level="read_committed"
    )
    await consumer.start()
    seen: Counter[tuple[bytes, int]] = Counter()
    try:
        tps = [TopicPartition(kafka_env.topics.decisions, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        try:
            async with asyncio.timeout(within_s):
                while sum(seen.values()) < expected:
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        for record in records:
                            seen[(record.key or b"", record.partition)] += 1
        except TimeoutError:
            state = [(p.partitions, p.published_count) for p in publishers]
            message = f"{sum(seen.values())} of {expected}; publishers: {state}"
            raise AssertionError(message) from None
        # A duplicate would come with the decisions announced again, all read by now;
        # anything still on its way shows in one more read.
        for records in (await consumer.getmany(timeout_ms=2000)).values():
            for record in records:
                seen[(record.key or b"", record.partition)] += 1
    finally:
        await consumer.stop()
    return seen


async def outbox_read_to_its_end(kafka_env: KafkaEnv) -> None:
    """Once the publishers' group has committed the whole outbox (every record announced
    so far published or skipped, in a committed transaction)."""
    tps = [TopicPartition(kafka_env.topics.decision_outbox, p) for p in range(PARTITIONS)]
    reader = AIOKafkaConsumer(bootstrap_servers=kafka_env.bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_env.bootstrap)
    await reader.start()
    await admin.start()
    try:
        ends = await reader.end_offsets(tps)

        async def committed_to_the_end() -> bool:
            offsets = await admin.list_consumer_group_offsets(
                publisher_group(f"{kafka_env.prefix}-hub"), partitions=tps
            )
            return all(tp in offsets and offsets[tp].offset >= ends[tp] for tp in tps if ends[tp])

        await poll_until("the outbox committed to its end", committed_to_the_end, timeout_s=120)
    finally:
        await admin.close()
        await reader.stop()


async def running(publisher: DecisionPublisher) -> asyncio.Task[None]:
    task = asyncio.create_task(publisher.run())
    async with asyncio.timeout(60):
        await publisher.ready.wait()
    return task


async def stop(publisher: DecisionPublisher, task: asyncio.Task[None]) -> None:
    publisher.stop()
    # Not wait_for: a publisher wedged in a transaction would not even finish cancelling.
    stopped, _ = await asyncio.wait({task}, timeout=60)
    assert stopped, "the publisher did not stop within 60 s"
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def delete_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([name])

        async def gone() -> bool:  # the broker deletes it in the background
            return name not in await admin.list_topics()

        await poll_until(f"topic {name} deleted", gone, timeout_s=30)
    finally:
        await admin.close()
