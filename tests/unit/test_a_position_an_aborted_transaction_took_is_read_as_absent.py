"""A redrive names its original by position, and the hub reads that position back
(gun_contract/kafka/log_reader.py). A writer of the topic that may use transactions (the
clearance system) can name a position inside gigabytes it wrote and aborted: a
read-committed consumer then fetches nothing while its position moves past them, and the
read went on to the first committed record or the log's end, past its timeout, three
times over; the redrive check raised, the intake agent restarted and read the claim again,
for ever (found by review, stop 46). Once the position is past the one asked, the record
is not in the log: absent, at once."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition

from gun_contract.kafka.log_reader import LogReader

TOPIC = "gun.declarations"
TP = TopicPartition(TOPIC, 0)
ABORTED_RECORDS = 10_000_000  # what a read-committed fetch steps over, 50,000 at a time


class SteppingOverAborted:
    """A read-committed consumer over a partition whose records from offset 10 on were
    written in transactions that aborted: each fetch returns nothing and moves on."""

    def __init__(self) -> None:
        self.at = 0
        self.fetches = 0

    async def beginning_offsets(self, _: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {TP: 0}

    async def end_offsets(self, _: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {TP: ABORTED_RECORDS + 11}

    def assign(self, _: list[TopicPartition]) -> None:
        pass

    def seek(self, _: TopicPartition, offset: int) -> None:
        self.at = offset

    async def getmany(self, *_: Any, **__: Any) -> dict[TopicPartition, list[Any]]:
        self.fetches += 1
        self.at += 50_000
        return {}

    async def position(self, _: TopicPartition) -> int:
        return self.at


class Reader(LogReader):
    def __init__(self, consumer: SteppingOverAborted) -> None:
        super().__init__("127.0.0.1:9", timeout_s=5.0)  # never dialled
        self.consumer = consumer

    async def _partitions(self, topics: Any) -> dict[str, frozenset[int]]:
        return {TOPIC: frozenset({0})}

    async def _started(self) -> Any:
        return self.consumer


async def test_a_position_inside_an_aborted_transaction_is_absent_at_once() -> None:
    consumer = SteppingOverAborted()
    assert await Reader(consumer).read(TOPIC, 0, 10) is None
    assert consumer.fetches == 1  # not every aborted record up to the log's end
