"""A batch whose requests were all answered and acknowledged while a revocation waited is
named in the hand-over commit, though an earlier batch's partner call outlasts the wait
(adapters/base/batch_pipeline.py, adapters/base/ownership.py; a second review of the
batches under way, its test first).

Batches are marked handled in fetch order (``Turn``): a later batch, done, waits for the
earlier one to be marked before it says anything (``_handle_marked``: ``turn.wait()``
then ``ownership.handled``). Here the first batch holds A's reservation at the partner
past the revocation's wait; the second holds B's reservation, answered UNAVAILABLE (the
partner down for it: not kept), and B's deletion, answered, both sent and acknowledged
well within the wait. The revocation commits at the wait's end: at A's offset, naming
A's call under way, and nothing of B's. The next owner reads B's records again and asks
the reservation again (``answered_before`` is false): applied now, while its deletion
was answered before, and asked again, it meets the partner's remembered answer to its
key: the quantity held for ever (the outcome of review stop 45 and of stop 54, through a
batch that did end within the wait). Before the change those records were not fetched
until A's batch ended, so there was nothing to name.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

from adapters.base.ownership import PartitionOwnership
from adapters.base.pending import PendingOperations
from adapters.base.runner import _Rebalance
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Verdict
from tests.unit.test_a_declaration_read_after_a_slow_one_is_not_held_behind_its_partner_call import (  # noqa: E501
    dga_runner,
    request_record,
)
from tests.unit.test_a_reservation_in_flight_at_a_revocation_is_named_in_the_commit import (
    GroupConsumer,
)
from tests.unit.test_an_answer_leaves_as_soon_as_it_is_sealed import P0
from tests.unit.test_batches_handled_side_by_side_keep_each_declarations_order_and_commit_behind_the_slowest import (  # noqa: E501
    A,
    B,
    HeldForA,
    NotingB,
)

REVOCATION_WAIT_S = 0.3


def b_reservation_unavailable(request: AuthorityRequest) -> Verdict:
    """B's reservation meets the partner down (UNAVAILABLE, not kept); the rest is
    answered."""
    if request.reference == B and request.operation is Operation.RESERVE:
        return Verdict.UNAVAILABLE
    return Verdict.VALID


async def test_a_later_batch_answered_within_the_wait_is_named_though_an_earlier_one_outlasts_it(
    tmp_path: Path,
) -> None:
    partner = HeldForA()
    partner.rule = b_reservation_unavailable
    runner, keys = dga_runner(tmp_path, partner)
    runner.revocation_wait_s = REVOCATION_WAIT_S
    consumer = GroupConsumer({0: (0, "answered:0")})
    producer = NotingB()
    runner._producer = producer
    rebalance = _Rebalance(runner, consumer)
    next_owner: PartitionOwnership | None = None
    try:
        await rebalance.on_partitions_assigned({P0})
        first = {P0: [request_record(0, A, keys)]}
        await runner._admit(first, cast(Any, producer), cast(Any, consumer))
        await asyncio.wait_for(partner.a_reserving.wait(), 10)
        other = "FR-LEMG-2026-B-ONLY"
        second = {
            P0: [
                request_record(1, B, keys, licence=other),
                request_record(2, B, keys, Operation.DELETE, licence=other),
            ]
        }
        await runner._admit(second, cast(Any, producer), cast(Any, consumer))

        await asyncio.wait_for(producer.answered_twice(B), 10)
        await asyncio.sleep(0.05)  # its deliveries acknowledged: it waits for its turn
        assert ("ends", B, 1) in partner.events

        await asyncio.wait_for(rebalance.on_partitions_revoked({P0}), 10)
        offset, metadata = consumer.commits[0]
        next_owner = PartitionOwnership(PendingOperations(tmp_path / "next.sqlite"))
        next_owner.assigned({0}, {0: metadata}, committed={0: offset}, log_starts={0: 0})
        assert next_owner.unsettled_at(0, 0), "A's call under way is named (as before)"
        assert next_owner.answered_before(0, 1), (
            f"hand-over commit {offset} {metadata!r}: B's reservation (offset 1), answered "
            "UNAVAILABLE and acknowledged within the revocation's wait, is neither passed "
            "nor named: its next owner asks it again, applied after its deletion (offset "
            "2) was answered: held for ever"
        )
    finally:
        partner.let_a_go.set()
        await runner._batches.drain_quietly()
        runner.pending.close()
        if next_owner is not None:
            next_owner._pending.close()
