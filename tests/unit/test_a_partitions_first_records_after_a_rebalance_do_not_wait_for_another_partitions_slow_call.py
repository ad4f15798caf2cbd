"""A partition's first records after a rebalance are answered without waiting for a
partner call of another partition that outlasted the revocation's wait (adapters/base/
batch_pipeline.py ``Turn.wait_on``; docs/adapters.md, "No declaration waits for another's
batch"; a third review of the batches under way, its test first).

e29f912 made a batch that does not follow the one before on a partition wait only for
the earlier batches of that partition (``wait_on``), not for every batch before it. But
what it waits for is each such batch's ``marked`` future, and a turn is marked only once
the batch before it in fetch order is (``Turn.done``): an earlier batch of the same
partition, ended long ago, is not marked while a slow batch of another partition, fetched
before it, is still under way. After a rebalance every partition's first batch is
unfollowed (a new generation), and the batches of the previous one may still run: the
revocation waits for them at most a partner call's deadline and a second, while a
declaration's call with its retries takes some 16 s. Here A's reservation (partition 0)
is held past the revocation's wait; B's (partition 1, fetched after it) was answered and
acknowledged, and waits for its turn (the hand-over names it answered). Both partitions
come back; partition 1 is read again from B's record, and C, the record after it, is not
even asked until A's call ends: the wait the change set out to end (stop
57: past the hub's 30 s deadline, decided in degraded mode with the partner well). What
B's turn would say is of a generation gone (``handled`` ignores it): nothing of partition
1 is waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from adapters.base.runner import _Rebalance
from tests.unit.test_a_declaration_read_after_a_slow_one_is_not_held_behind_its_partner_call import (  # noqa: E501
    dga_runner,
    request_record,
)
from tests.unit.test_a_partitions_first_records_do_not_wait_for_another_partitions_slow_batch import (  # noqa: E501
    P1,
    on_p1,
)
from tests.unit.test_adapter_pending_operations_outlive_the_request_log import (
    FakeConsumer,
    FakeProducer,
)
from tests.unit.test_an_answer_leaves_as_soon_as_it_is_sealed import P0
from tests.unit.test_batches_handled_side_by_side_keep_each_declarations_order_and_commit_behind_the_slowest import (  # noqa: E501
    A,
    B,
    HeldForA,
)

C = "26FRSIDEBY0000003"
REVOCATION_WAIT_S = 0.3


class TwoPartitionsCommitted(FakeConsumer):
    """P0 and P1, both committed at 0 at first; what a commit writes is what the next
    assignment reads."""

    def __init__(self) -> None:
        self.commits: dict[int, tuple[int, str]] = {0: (0, "answered:0"), 1: (0, "answered:0")}
        super().__init__({0: 0, 1: 0}, self.commits)

    def assignment(self) -> set[TopicPartition]:
        return {P0, P1}

    async def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        for tp, (offset, metadata) in offsets.items():
            self.commits[tp.partition] = (offset, metadata)


async def test_a_partitions_first_records_after_a_rebalance_are_answered_while_an_old_call_runs(
    tmp_path: Path,
) -> None:
    partner = HeldForA()
    runner, keys = dga_runner(tmp_path, partner)
    runner.revocation_wait_s = REVOCATION_WAIT_S
    consumer = TwoPartitionsCommitted()
    producer = FakeProducer()
    runner._producer = producer
    rebalance = _Rebalance(runner, consumer)
    try:
        await rebalance.on_partitions_assigned({P0, P1})
        first = {P0: [request_record(0, A, keys)]}
        await runner._admit(first, cast(Any, producer), cast(Any, consumer))
        await asyncio.wait_for(partner.a_reserving.wait(), 10)
        second = {P1: [on_p1(request_record(0, B, keys, licence="FR-LEMG-2026-B-ONLY"))]}
        await runner._admit(second, cast(Any, producer), cast(Any, consumer))
        await asyncio.wait_for(partner.until_asked(B), 10)
        await asyncio.sleep(0.05)  # B answered and acknowledged: it waits for its turn

        # The group rebalances: A's call outlasts the wait; both partitions come back.
        await asyncio.wait_for(rebalance.on_partitions_revoked({P0, P1}), 10)
        await rebalance.on_partitions_assigned({P0, P1})
        assert consumer.commits[1][0] == 0, "partition 1 read again from B's record"
        third = {
            P1: [
                on_p1(request_record(0, B, keys, licence="FR-LEMG-2026-B-ONLY")),
                on_p1(request_record(1, C, keys, licence="FR-LEMG-2026-C-ONLY")),
            ],
        }
        await runner._admit(third, cast(Any, producer), cast(Any, consumer))
        asked = await partner.asked_within(C, 3)
        assert asked, (
            "C's reservation, partition 1's first record after the rebalance, is not even "
            "asked while A's call of the previous generation, on partition 0, is held: "
            "its batch waits for B's turn on partition 1, which is marked only after A's"
        )
    finally:
        partner.let_a_go.set()
        await runner._batches.drain_quietly()
        runner.pending.close()
