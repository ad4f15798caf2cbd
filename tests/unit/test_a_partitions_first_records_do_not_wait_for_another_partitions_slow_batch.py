"""A partition's first records since its assignment, fetched while a batch of another
partition is under way, are answered without waiting for that batch (adapters/base/
runner.py ``_handle_marked``; docs/adapters.md, "No declaration waits for another's
batch"; a second review of the batches under way, its test first).

A batch that does not follow the batch before on a partition (``BatchPipeline.follows``:
the first after an assignment, or a fetch reset to the log's start) waits, whole, until
every batch before it is marked (``turn.wait()``) before it handles any record: its
check for requests retention deleted unread reads how far the partition was handled.
A partition with no backlog at its assignment gets its first records in some later
batch: that batch does not follow on it, and its requests wait for the slowest
declaration of the batches under way, on another partition, which holds nothing of it:
a partner call with its retries, some 16 s, what the change set out to end (stop 57:
past the hub's 30 s deadline, decided in degraded mode with the partner well).

A's reservation, on partition 0, is held at the partner; C's, the first record of
partition 1, comes in the next batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from adapters.base.runner import _Rebalance
from tests.unit.test_a_declaration_read_after_a_slow_one_is_not_held_behind_its_partner_call import (  # noqa: E501
    dga_runner,
    request_record,
)
from tests.unit.test_adapter_pending_operations_outlive_the_request_log import (
    FakeConsumer,
    FakeProducer,
)
from tests.unit.test_an_answer_leaves_as_soon_as_it_is_sealed import P0, REQUESTS
from tests.unit.test_batches_handled_side_by_side_keep_each_declarations_order_and_commit_behind_the_slowest import (  # noqa: E501
    A,
    HeldForA,
)

P1 = TopicPartition(REQUESTS, 1)
C = "26FRSIDEBY0000003"


class TwoPartitions(FakeConsumer):
    """P0 and P1, both committed at 0."""

    def __init__(self) -> None:
        super().__init__({0: 0, 1: 0}, {0: (0, "answered:0"), 1: (0, "answered:0")})

    def assignment(self) -> set[TopicPartition]:
        return {P0, P1}

    async def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        return None


def on_p1(record: ConsumerRecord[bytes, bytes]) -> ConsumerRecord[bytes, bytes]:
    """``record``, read from partition 1 instead."""
    return ConsumerRecord(
        P1.topic,
        P1.partition,
        record.offset,
        record.timestamp,
        record.timestamp_type,
        record.key,
        record.value,
        record.checksum,
        record.serialized_key_size,
        record.serialized_value_size,
        record.headers,
    )


async def test_a_partitions_first_records_are_answered_while_another_partitions_call_is_held(
    tmp_path: Path,
) -> None:
    partner = HeldForA()
    runner, keys = dga_runner(tmp_path, partner)
    consumer = TwoPartitions()
    producer = FakeProducer()
    runner._producer = producer
    try:
        await _Rebalance(runner, consumer).on_partitions_assigned({P0, P1})
        first = {P0: [request_record(0, A, keys)]}
        await runner._admit(first, cast(Any, producer), cast(Any, consumer))
        await asyncio.wait_for(partner.a_reserving.wait(), 10)
        # Partition 1's first record since the assignment, in the next poll's batch.
        second = {P1: [on_p1(request_record(0, C, keys, licence="FR-LEMG-2026-C-ONLY"))]}
        await runner._admit(second, cast(Any, producer), cast(Any, consumer))
        asked = await partner.asked_within(C, 3)
        assert asked, (
            "C's reservation, partition 1's first record, is not even asked while A's call "
            "on partition 0 is held: its batch does not follow on partition 1 and waits for "
            "every batch before it to be marked before it handles anything"
        )
    finally:
        partner.let_a_go.set()
        await runner._batches.drain_quietly()
        runner.pending.close()
