"""Several hub workers publish decisions: one each per (reference, version), none lost.

Each worker runs a decision publisher (gun_hub/runtime/publisher.py); they share the outbox's
partitions as one consumer group, with a transactional producer per partition. Issue 12:
the first version had one transactional id, so a second worker fenced the first and its
publisher crash-looped the worker.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from gun_hub.runtime.publisher import DecisionPublisher
from tests.conftest import PARTITIONS, KafkaEnv
from tests.integration.publisher_fixtures import (
    announce,
    new_publisher,
    published,
    running,
    stop,
)

pytestmark = pytest.mark.broker

DECISIONS = 240
ANNOUNCED_TWICE = 40  # a worker died before the broker confirmed: announced again


async def test_two_publishers_share_the_outbox_and_publish_each_decision_once(
    kafka_env: KafkaEnv,
) -> None:
    first, second = new_publisher(kafka_env), new_publisher(kafka_env)
    first_task = await running(first)
    await announce(kafka_env, range(DECISIONS // 2))
    second_task = await running(second)  # joins under load: the partitions are shared
    await announce(kafka_env, range(DECISIONS // 2, DECISIONS))
    await announce(kafka_env, range(ANNOUNCED_TWICE))  # announced again after a crash
    seen = await published(kafka_env, DECISIONS, first, second)
    try:
        assert len(seen) == DECISIONS, "a decision was not published"
        assert [key for key, times in seen.items() if times > 1] == []
        # Each decision on its declaration's partition.
        assert all(int(key[7:]) % PARTITIONS == part for key, part in seen)
        # Both were members while the second half was published: the partitions split.
        assert first.partitions
        assert second.partitions
        assert first.partitions.isdisjoint(second.partitions)
    finally:
        await stop(second, second_task)
        await stop(first, first_task)


async def test_a_publisher_that_leaves_hands_its_partitions_over(kafka_env: KafkaEnv) -> None:
    first, second = new_publisher(kafka_env), new_publisher(kafka_env)
    first_task = await running(first)
    second_task = await running(second)
    await announce(kafka_env, range(DECISIONS // 2))
    await stop(first, first_task)  # leaves under load
    await announce(kafka_env, range(DECISIONS // 2, DECISIONS))
    # Announced again, their first announcement published by the worker that left.
    await announce(kafka_env, range(ANNOUNCED_TWICE))
    try:
        seen = await published(kafka_env, DECISIONS, second)
        assert len(seen) == DECISIONS
        assert [key for key, times in seen.items() if times > 1] == []
        assert second.partitions == set(range(PARTITIONS))
    finally:
        await stop(second, second_task)


async def test_a_partition_revoked_mid_transaction_is_handed_over_once_its_batch_commits(
    kafka_env: KafkaEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebalance (a broker lost, a worker slow to heartbeat) revokes a partition while
    its batch is in a transaction: the producer is stopped only once the batch commits.
    Stopped mid-transaction, it never resolved the commit (nor the abort: the publisher
    could not even be cancelled), and the publisher hung with every partition (found on
    the three-node cluster, tests/e2e/test_a_broker_dies_under_the_hub.py)."""
    publisher = new_publisher(kafka_env)
    task = await running(publisher)
    try:
        await announce(kafka_env, range(1))  # partition 0 is taken and publishes
        await published(kafka_env, 1, publisher)
        producer = publisher._partitions[0].producer
        in_transaction, go_on = asyncio.Event(), asyncio.Event()
        send_offsets = producer.send_offsets_to_transaction

        async def held(offsets: object, group_id: str) -> None:
            in_transaction.set()
            await go_on.wait()
            await send_offsets(offsets, group_id)

        monkeypatch.setattr(producer, "send_offsets_to_transaction", held)
        await announce(kafka_env, range(PARTITIONS, PARTITIONS + 1))  # partition 0 again
        await asyncio.wait_for(in_transaction.wait(), 60)
        # What the group's rebalance listener does on revocation.
        revoking = asyncio.create_task(publisher._release([0]))
        done, _ = await asyncio.wait({revoking}, timeout=1)
        assert not done, "the producer was stopped with its transaction open"
        go_on.set()
        await asyncio.wait_for(revoking, 30)

        # Still assigned: taken again at its next batch, and every partition goes on.
        await announce(kafka_env, range(PARTITIONS + 1, 3 * PARTITIONS))
        numbers = [0, *range(PARTITIONS, 3 * PARTITIONS)]
        seen = await published(kafka_env, len(numbers), publisher)
        assert sorted(int(key[7:]) for key, _ in seen) == numbers
        assert [key for key, times in seen.items() if times > 1] == []
        assert publisher.partitions == set(range(PARTITIONS))
    finally:
        await stop(publisher, task)


class _SlowPartition(DecisionPublisher):
    """A publisher whose transactions on outbox partition 0 take until let go: a slow
    transaction (five broker round trips on a loaded machine, a retried produce)."""

    def __init__(self, *arguments: Any, **options: Any) -> None:
        super().__init__(*arguments, **options)
        self.slow = 0
        self.in_slow_transaction = asyncio.Event()
        self.let_go = asyncio.Event()

    async def _publish_batch(self, publisher: Any, consumer: Any, tp: Any, records: Any) -> bool:
        if tp.partition == self.slow:
            self.in_slow_transaction.set()
            await self.let_go.wait()
        return await super()._publish_batch(publisher, consumer, tp, records)


async def test_a_slow_transaction_on_one_partition_does_not_hold_the_others_back(
    kafka_env: KafkaEnv,
) -> None:
    """Each outbox partition has a transactional producer of its own: its transactions
    run beside the other partitions', not after them. Stop 28: the publisher ran one
    partition's transaction after another, under one lock; at 37.7 declarations/s the
    outbox-to-decision hop was 44 % of the end-to-end time (p50 148 ms)."""
    publisher: _SlowPartition = new_publisher(kafka_env, _SlowPartition)
    task = await running(publisher)
    try:
        await announce(kafka_env, range(0, PARTITIONS * 10, PARTITIONS))  # partition 0 only
        async with asyncio.timeout(60):
            await publisher.in_slow_transaction.wait()
        others = [n for n in range(PARTITIONS * 10) if n % PARTITIONS != 0]
        await announce(kafka_env, others)
        # Published while partition 0's transaction is still open.
        seen = await published(kafka_env, len(others), publisher, within_s=30)
        assert sorted(int(key[7:]) for key, _ in seen) == others
        publisher.let_go.set()
        seen = await published(kafka_env, PARTITIONS * 10, publisher)
        assert len(seen) == PARTITIONS * 10
        assert [key for key, times in seen.items() if times > 1] == []
    finally:
        publisher.let_go.set()
        await stop(publisher, task)


class _AbortsOnce(_SlowPartition):
    """Its first transaction on the slow partition is aborted (returns unpublished, as
    after a broker error) once a later batch of that partition waits behind it."""

    def __init__(self, *arguments: Any, **options: Any) -> None:
        super().__init__(*arguments, **options)
        self.later_batch_waiting = asyncio.Event()
        self.aborted = 0

    def _queue(self, consumer: Any, tp: Any, records: Any) -> None:
        super()._queue(consumer, tp, records)
        if tp.partition == self.slow and self.in_slow_transaction.is_set():
            self.later_batch_waiting.set()

    async def _publish_batch(self, publisher: Any, consumer: Any, tp: Any, records: Any) -> bool:
        if tp.partition == self.slow and not self.aborted:
            self.aborted += 1
            self.in_slow_transaction.set()
            await self.later_batch_waiting.wait()
            return False
        return await super()._publish_batch(publisher, consumer, tp, records)


async def test_a_batch_not_published_is_published_before_the_batches_fetched_after_it(
    kafka_env: KafkaEnv,
) -> None:
    """A partition's decisions reach the topic in the order they were announced (a
    declaration's versions share its partition): when a transaction is aborted, the
    batches its lane fetched after it are read again after it, not published first."""
    publisher: _AbortsOnce = new_publisher(kafka_env, _AbortsOnce)
    publisher.let_go.set()  # slow only in the transaction it aborts
    task = await running(publisher)
    first, then = range(0, 40, PARTITIONS), range(40, 80, PARTITIONS)  # partition 0
    try:
        await announce(kafka_env, first)
        async with asyncio.timeout(60):
            await publisher.in_slow_transaction.wait()
        await announce(kafka_env, then)
        await published(kafka_env, len(first) + len(then), publisher)
        order = await _in_partition_order(kafka_env, partition=0)
        assert order == [*first, *then]
        assert publisher.aborted == 1
    finally:
        publisher.later_batch_waiting.set()
        await stop(publisher, task)


async def _in_partition_order(kafka_env: KafkaEnv, partition: int) -> list[int]:
    """The numbers of the committed decisions on one partition, in offset order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_env.bootstrap, isolation_level="read_committed"
    )
    await consumer.start()
    numbers: list[int] = []
    try:
        tp = TopicPartition(kafka_env.topics.decisions, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        async with asyncio.timeout(30):
            while await consumer.position(tp) < end:
                for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                    numbers.extend(int((record.key or b"")[7:]) for record in records)
    finally:
        await consumer.stop()
    return numbers


class _CountsTransactions(DecisionPublisher):
    def __init__(self, *arguments: Any, **options: Any) -> None:
        super().__init__(*arguments, **options)
        self.transactions: list[tuple[int, int]] = []  # (partition, decisions fetched)

    async def _publish_batch(self, publisher: Any, consumer: Any, tp: Any, records: Any) -> bool:
        self.transactions.append((tp.partition, len(records)))
        return await super()._publish_batch(publisher, consumer, tp, records)


async def test_a_busy_partition_publishes_what_arrives_within_its_interval_in_one_transaction(
    kafka_env: KafkaEnv,
) -> None:
    """A transaction costs the broker some five requests and a marker per partition: at
    saturation the partitions' lanes committed one for almost every decision (0.7 per
    declaration, stop 33's census). A lane idle for an interval publishes at once; a busy
    one begins its next transaction an interval after its last began, with all that was
    fetched meanwhile."""
    publisher: _CountsTransactions = new_publisher(
        kafka_env, _CountsTransactions, transaction_interval_s=5.0
    )
    task = await running(publisher)
    try:
        await announce(kafka_env, [0])
        await published(kafka_env, 1, publisher)
        assert publisher.transactions == [(0, 1)]  # idle: at once
        for n in range(1, 5):  # partition 0 again, one at a time, within the interval
            await announce(kafka_env, [n * PARTITIONS])
        seen = await published(kafka_env, 5, publisher)
        assert publisher.transactions == [(0, 1), (0, 4)]
        assert sorted(seen.values()) == [1] * 5
    finally:
        await stop(publisher, task)
