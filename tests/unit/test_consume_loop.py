"""The one consume loop (gun_contract/consume.py), against a consumer and a producer that
only record what they are asked: what is handled, what is dead-lettered, what committed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError

from gun_contract.consume import (
    UNHANDLED_ERROR,
    Batch,
    DeadLetters,
    Record,
    consume,
    each_record,
    next_offsets,
)
from gun_contract.dead_letter import (
    HEADER_COMPONENT,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    HEADER_SOURCE_OFFSET,
    header_value,
)

TP0 = TopicPartition("requests", 0)
TP1 = TopicPartition("requests", 1)


def record(tp: TopicPartition, offset: int, value: bytes = b"good") -> Record:
    return ConsumerRecord(
        tp.topic, tp.partition, offset, 0, 0, b"key", value, None, 3, len(value), []
    )


class Consumer:
    """Hands out the given batches, then nothing; records the commits."""

    def __init__(self, *batches: Batch, refuse_commits: bool = False) -> None:
        self.batches = list(batches)
        self.commits: list[dict[TopicPartition, int]] = []
        self.polls = 0
        self._refuse = refuse_commits
        self.assigned = {TP0, TP1}

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> Batch:
        self.polls += 1
        return self.batches.pop(0) if self.batches else {}

    async def commit(self, offsets: Any = None) -> None:
        if self._refuse:
            raise CommitFailedError("rebalanced")
        self.commits.append(offsets)

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def drained(self) -> bool:
        return not self.batches


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, Any]] = []

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Any = None,
    ) -> None:
        self.sent.append((topic, key, value, headers))


async def test_a_record_whose_handling_raises_is_dead_lettered_and_the_next_ones_handled() -> None:
    handled: list[int] = []

    async def handle(r: Record) -> None:
        if r.value == b"poison":
            raise ValueError("cannot read this")
        handled.append(r.offset)

    batch = {TP0: [record(TP0, 5), record(TP0, 6, b"poison"), record(TP0, 7)]}
    consumer, producer = Consumer(batch), Producer()
    letters = DeadLetters(producer, "gun.dlq", "adapter.test")
    await consume(consumer, each_record(handle, letters), commit=True, until=consumer.drained)

    assert handled == [5, 7]
    [(topic, key, value, headers)] = producer.sent
    assert (topic, key, value) == ("gun.dlq", b"key", b"poison")
    assert header_value(headers, HEADER_ERROR_KIND) == UNHANDLED_ERROR
    reason = str(header_value(headers, HEADER_ERROR_REASON))
    assert reason.startswith("ValueError raised at tests.unit.test_consume_loop:"), reason
    assert "cannot read this" not in reason  # the text, in the log only
    assert header_value(headers, HEADER_SOURCE_OFFSET) == "6"
    assert header_value(headers, HEADER_COMPONENT) == "adapter.test"
    assert consumer.commits == [{TP0: 8}]  # past the dead-lettered record and the last one


async def test_each_partition_is_committed_past_its_last_record_of_the_batch() -> None:
    batch = {TP0: [record(TP0, 1), record(TP0, 2)], TP1: [record(TP1, 40)]}
    assert next_offsets(batch) == {TP0: 3, TP1: 41}
    consumer = Consumer({}, batch, {})

    async def handle(b: Batch) -> None:
        pass

    await consume(consumer, handle, commit=True, until=consumer.drained)
    assert consumer.commits == [{TP0: 3, TP1: 41}]  # empty polls commit nothing


async def test_a_failure_that_is_no_records_fault_ends_the_loop_without_a_commit() -> None:
    async def handle(r: Record) -> None:
        raise ValueError("bad record")

    class BrokerDown(Producer):
        async def send_and_wait(self, *args: Any, **kwargs: Any) -> None:
            raise ConnectionError("broker lost")

    consumer = Consumer({TP0: [record(TP0, 0)]})
    letters = DeadLetters(BrokerDown(), "gun.dlq", "adapter.test")
    with pytest.raises(ConnectionError):
        await consume(consumer, each_record(handle, letters), commit=True, until=consumer.drained)
    assert consumer.commits == []  # read again when the reader starts over


async def test_a_reader_without_a_group_commits_nothing() -> None:
    seen: list[int] = []

    async def handle(b: Batch) -> None:
        seen.extend(r.offset for rs in b.values() for r in rs)

    consumer = Consumer({TP0: [record(TP0, 0)]}, {TP1: [record(TP1, 9)]})
    await consume(consumer, handle, commit=False, until=consumer.drained)
    assert seen == [0, 9]
    assert consumer.commits == []


async def test_a_commit_refused_after_a_rebalance_does_not_stop_the_reader() -> None:
    handled: list[int] = []

    async def handle(r: Record) -> None:
        handled.append(r.offset)

    consumer = Consumer({TP0: [record(TP0, 0)]}, {TP0: [record(TP0, 1)]}, refuse_commits=True)
    letters = DeadLetters(Producer(), "gun.dlq", "c")
    await consume(consumer, each_record(handle, letters), commit=True, until=consumer.drained)
    assert handled == [0, 1]


async def test_only_commits_the_broker_confirmed_are_told() -> None:
    """What a replay memory forgets by (the clearance reader's: review stop 38, L3): a
    commit the group refused is not told, one it took is."""

    async def handle(b: Batch) -> None:
        pass

    told: list[dict[TopicPartition, int]] = []
    refused = Consumer({TP0: [record(TP0, 0)]}, refuse_commits=True)
    await consume(refused, handle, commit=True, until=refused.drained, committed=told.append)
    assert told == []
    taken = Consumer({TP0: [record(TP0, 0)]}, {TP1: [record(TP1, 9)]})
    await consume(taken, handle, commit=True, until=taken.drained, committed=told.append)
    assert told == [{TP0: 1}, {TP1: 10}]


async def test_the_loop_stops_between_two_polls_once_told_and_runs_its_hooks() -> None:
    stopping = asyncio.Event()
    calls: list[str] = []

    async def handle(b: Batch) -> None:
        calls.append("handle")
        stopping.set()

    async def after_poll() -> None:
        calls.append("after")

    consumer = Consumer({TP0: [record(TP0, 0)]}, {TP0: [record(TP0, 1)]})
    await consume(
        consumer,
        handle,
        commit=True,
        stopping=stopping,
        before_poll=lambda: calls.append("before"),
        after_poll=after_poll,
    )
    assert calls == ["before", "handle", "after"]
    assert consumer.polls == 1
    assert consumer.commits == [{TP0: 1}]  # the batch handled before the stop is committed


async def test_a_partition_revoked_while_its_batch_was_handled_is_not_committed() -> None:
    batch = {TP0: [record(TP0, 1)], TP1: [record(TP1, 40)]}
    consumer = Consumer(batch)

    async def handle(b: Batch) -> None:
        consumer.assigned = {TP0}  # the group rebalanced meanwhile

    await consume(consumer, handle, commit=True, until=consumer.drained)
    assert consumer.commits == [{TP0: 2}]  # TP1's new owner reads its record again
