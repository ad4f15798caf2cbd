"""A request whose partner call ends once another batch has failed is neither sent nor
committed past: its next owner asks it again and answers it (adapters/base/runner.py).

The batches under way share one ``stopping`` (adapters/base/batch_pipeline.py). A record
whose call was under way when it was set is answered but not sent ("asked again, its
answer kept"), and is noted nowhere: not in ``left``, not among those answered. Within
the batch that failed, its mark comes from what was delivered (``_handled_before_failing``)
and stops there. Any other batch marks its whole end: here A's reservation, asked in a
first batch while B's batch fails (its answer refused by the producer), is said handled,
the final commit passes it, and the hub never has an answer to it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka.errors import KafkaError

from adapters.base.runner import _Rebalance
from tests.unit.test_a_declaration_read_after_a_slow_one_is_not_held_behind_its_partner_call import (  # noqa: E501
    Appending,
    Noting,
    dga_runner,
    request_record,
)
from tests.unit.test_an_answer_leaves_as_soon_as_it_is_sealed import P0, RESPONSES
from tests.unit.test_batches_handled_side_by_side_keep_each_declarations_order_and_commit_behind_the_slowest import (  # noqa: E501
    A,
    B,
    HeldForA,
)


class RefusingB(Noting):
    """The producer refuses B's answer outright (a send refused: the batch fails)."""

    async def send(self, topic: str, value: bytes, **kwargs: Any) -> Any:
        if topic == RESPONSES and kwargs["key"] == B.encode():
            raise KafkaError("B's answer refused")
        return await super().send(topic, value, **kwargs)


async def test_a_reservation_answered_after_another_batch_failed_is_not_committed_past(
    tmp_path: Path,
) -> None:
    partner = HeldForA()
    runner, keys = dga_runner(tmp_path, partner)
    consumer = Appending([], [])
    producer = RefusingB()
    runner._producer = producer

    async def admit(offset: int, reference: str) -> None:
        batch = {P0: [request_record(offset, reference, keys)]}
        await runner._admit(batch, cast(Any, producer), cast(Any, consumer))

    try:
        await _Rebalance(runner, consumer).on_partitions_assigned({P0})
        await admit(0, A)  # A's reservation: held at the partner
        await asyncio.wait_for(partner.a_reserving.wait(), 10)
        await admit(1, B)  # B's answer refused: its batch fails, every batch stops
        await asyncio.wait_for(runner._batches.stopping.wait(), 10)
        partner.let_a_go.set()  # A's call ends: answered, not sent
        with pytest.raises(KafkaError, match="B's answer refused"):
            await asyncio.wait_for(runner._batches.drain(), 10)
    finally:
        partner.let_a_go.set()
        await runner._batches.drain_quietly()
        runner.pending.close()
    a_answers = [s for s in producer.sent if s["topic"] == RESPONSES and s["key"] == A.encode()]
    assert a_answers == [], "A's answer was sent after the failure (not what this is about)"
    assert ("ends", A, 1) in partner.events
    assert runner.ownership.next_offset(0) == 0, (
        f"P0 said handled to {runner.ownership.next_offset(0)}, past A's reservation at 0, "
        "whose answer was never sent: the replica's last commit passes it, its next owner "
        "starts after it, and the hub never has an answer"
    )
