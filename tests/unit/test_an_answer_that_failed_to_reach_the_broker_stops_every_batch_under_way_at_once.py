"""An answer the broker never took stops every batch under way at once, however long an
earlier batch is still handled (adapters/base/batch_pipeline.py: "a failure of any batch
sets ``stopping``: every batch handles no further record").

A's reservation is held at the partner in a first batch. B's answer, in a second batch,
fails on its way to the broker (the producer gave up on it). From then on the replica is
failing: before batches were handled side by side, the poll loop ended there and no
further request was asked. With them (a review of stop 57's change), the failed batch
raised only once its turn came (after A's batch), and only then was ``stopping`` set:
until then the batches under way, and those the loop went on admitting, asked the
partner and sent their answers past a failure that stops the replica (a third
declaration, C, was asked and answered).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka.errors import KafkaTimeoutError

from adapters.base.runner import _Rebalance
from tests.unit.test_a_declaration_read_after_a_slow_one_is_not_held_behind_its_partner_call import (  # noqa: E501
    Appending,
    Noting,
    dga_runner,
    request_record,
)
from tests.unit.test_an_answer_leaves_as_soon_as_it_is_sealed import P0, RESPONSES
from tests.unit.test_batches_handled_side_by_side_keep_each_declarations_order_and_commit_behind_the_slowest import (  # noqa: E501
    HeldForA,
)

B = "26FRSIDEBY0000002"
C = "26FRSIDEBY0000003"


class BsAnswerLost(Noting):
    """B's answer is never acknowledged: its delivery fails (the producer gave up)."""

    def __init__(self) -> None:
        super().__init__()
        self.b_lost = asyncio.Event()

    async def send(self, topic: str, value: bytes, **kwargs: Any) -> Awaitable[None]:
        delivery: Awaitable[None] = await super().send(topic, value, **kwargs)
        if topic != RESPONSES or kwargs["key"] != B.encode():
            return delivery
        close = getattr(delivery, "close", None)
        if close is not None:
            close()  # the stamping producer's own delivery, never awaited

        async def lost() -> None:
            self.b_lost.set()
            raise KafkaTimeoutError("B's answer: no acknowledgement within delivery.timeout.ms")

        return lost()


async def test_a_lost_answer_stops_the_batches_under_way_while_an_earlier_one_is_handled(
    tmp_path: Path,
) -> None:
    partner = HeldForA()
    runner, keys = dga_runner(tmp_path, partner)
    consumer = Appending([], [])
    producer = BsAnswerLost()
    runner._producer = producer
    a_reference = "26FRSIDEBY0000001"  # HeldForA holds this one's version 1

    async def admit(offset: int, reference: str) -> asyncio.Future[None] | None:
        batch = {P0: [request_record(offset, reference, keys)]}
        return await runner._admit(batch, cast(Any, producer), cast(Any, consumer))

    try:
        await _Rebalance(runner, consumer).on_partitions_assigned({P0})
        await admit(0, a_reference)
        await asyncio.wait_for(partner.a_reserving.wait(), 10)
        await admit(1, B)
        await asyncio.wait_for(producer.b_lost.wait(), 10)
        # B's batch raises what its delivery raised: within a second, not once A's
        # batch ends (A stays held until the end of the test).
        try:
            await asyncio.wait_for(runner._batches.stopping.wait(), 1)
            stopped_at_once = True
        except TimeoutError:
            stopped_at_once = False
        # The poll loop's next batch is refused: the replica stops (before, it was
        # admitted, and C asked, while the failed batch waited for its turn).
        try:
            c_batch = await admit(2, C)
        except KafkaTimeoutError:
            c_batch = None
        if c_batch is not None:  # admitted: given the time to ask the partner
            await asyncio.wait_for(partner.until_asked(C), 2)
        c_asked = ("begins", C, 1) in partner.events
        partner.let_a_go.set()
        with pytest.raises(KafkaTimeoutError):
            await asyncio.wait_for(runner._batches.drain(), 10)
    finally:
        partner.let_a_go.set()
        await runner._batches.drain_quietly()
        runner.pending.close()
    assert stopped_at_once, (
        "B's answer never reached the broker, yet the batches under way were not stopped: "
        "the failed batch sets stopping only once A's batch, fetched before it, has ended"
    )
    assert not c_asked, (
        "C, read after B's answer was lost, was asked at the partner and answered: the "
        "replica goes on handling requests past a failure that stops it"
    )
