"""A write-off, deletion or give-back whose replay is under way at the partner when its
partition is revoked (or the replica stops) is named in the commit like a live call under
way: the next owner asks it as a repeat, so the partner's 409 "being processed" is still
in progress, not a refusal (FOLLOW_UP_FAILED while the partner applies it, as in review
stop 39-SF, SF2). And once a partition is being revoked, a replay round starts no further
call of its queued operations: the revocation's commit says the partition was handed over
with every call it may have left under way named, and a replay begun after that commit
would be one it does not name.

The follow-up first met a partner that was not reached (a failed connection: nothing
left in progress), so only its replay's call can leave it under way. Before, only an
attempt that ended in a timeout or a 409 was named; a call under way was not.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from pathlib import Path

import pytest

from adapters.base.ownership import PartitionOwnership
from adapters.base.pending import PendingOperations
from adapters.base.replay import Replayer
from gun_contract.health import CircuitStatus
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from gun_contract.model.verdicts import Verdict
from tests.adapter_fixtures import partner_request

WRITE_OFF = partner_request(Operation.WRITE_OFF, reference="26FR000690I0000901", quantity=None)


class UnreachableThenHeld:
    """A partner not reached at first (a failed connection: nothing in progress), then
    reached and slow: each call is held until the test releases it."""

    def __init__(self) -> None:
        self.reached = False
        self.called = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        self.calls += 1
        verdict = Verdict.UNAVAILABLE
        if self.reached:
            self.called.set()
            await self.release.wait()
            verdict = Verdict.VALID
        return tuple(
            DocumentAnswer(
                goods_item=item.number,
                code=document.code,
                reference=document.reference,
                verdict=verdict,
                partner_code="01" if verdict is Verdict.VALID else None,
                detail=None if self.reached else "partner unreachable: ClientConnectorError",
            )
            for item in request.items
            for document in item.documents
        )

    def may_still_apply(self, request: AuthorityRequest) -> bool:
        return False  # never reached, then answered

    def sent_before(self, request: AuthorityRequest, accepted: Collection[int] = ()) -> None:
        return None

    def accepted_calls(self, request: AuthorityRequest) -> frozenset[int]:
        return frozenset()

    async def close(self) -> None:
        return None

    @property
    def circuit_state(self) -> CircuitStatus:
        return CircuitStatus.CLOSED


@pytest.fixture
async def queued(
    tmp_path: Path,
) -> AsyncIterator[tuple[UnreachableThenHeld, Replayer, PartitionOwnership]]:
    """The write-off read at offset 5, met the unreachable partner and was queued; the
    partner is reachable now."""
    partner = UnreachableThenHeld()
    pending = PendingOperations(tmp_path / "p.sqlite")
    published: list[str] = []

    async def publish(
        request: AuthorityRequest, answers: tuple[DocumentAnswer, ...], _p: int | None
    ) -> None:
        published.append(request.request_id)

    ownership = PartitionOwnership(pending)
    replayer = Replayer(
        pending, partner, publish, sends_for=lambda p: p is None or not ownership.leaves(p)
    )
    ownership = PartitionOwnership(pending, replayer.follow_ups_unsettled)
    try:
        ownership.assigned(
            {0}, {0: "answered:5"}, committed={0: 5}, log_starts={0: 0}, group_generation=7
        )
        [answer] = await replayer.ask(WRITE_OFF, 0, 5)
        assert answer.verdict is Verdict.UNAVAILABLE
        ownership.handled({0: 6}, ownership.generation)
        assert ownership.commit_metadata(0) == "answered:6"  # nothing may be in progress
        partner.reached = True
        yield partner, replayer, ownership
    finally:
        partner.release.set()
        pending.close()


async def test_a_follow_up_whose_replay_is_under_way_is_named(
    queued: tuple[UnreachableThenHeld, Replayer, PartitionOwnership],
) -> None:
    partner, replayer, ownership = queued
    replaying = asyncio.create_task(replayer.replay_all())
    await asyncio.wait_for(partner.called.wait(), 5)
    assert ownership.commit_metadata(0) == "answered:6;unsettled:0", (
        "the write-off's replay under way at the partner is not named: the next owner asks "
        "it as a first attempt and takes the partner's 409 for a refusal"
    )
    # Cut under way (the replica stops: its replays are cancelled): still named.
    replaying.cancel()
    with pytest.raises(asyncio.CancelledError):
        await replaying
    assert ownership.commit_metadata(0) == "answered:6;unsettled:0"


async def test_a_replay_answered_is_no_longer_named(
    queued: tuple[UnreachableThenHeld, Replayer, PartitionOwnership],
) -> None:
    partner, replayer, ownership = queued
    partner.release.set()
    await replayer.replay_all()
    assert ownership.commit_metadata(0) == "answered:6"


async def test_a_replay_round_starts_no_call_of_a_partition_being_revoked(
    queued: tuple[UnreachableThenHeld, Replayer, PartitionOwnership],
) -> None:
    partner, replayer, ownership = queued
    await ownership.leaving({0})
    committed = ownership.commit_metadata(0)
    assert committed == "answered:6;handed-over:7"
    partner.release.set()  # a call made now would be answered at once
    await replayer.replay_all()
    assert partner.calls == 1  # only the first, unreached attempt
    assert ownership.commit_metadata(0) == committed
