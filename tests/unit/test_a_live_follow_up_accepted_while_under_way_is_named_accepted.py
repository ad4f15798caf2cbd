"""Found by the review of 7dbb400 (adapters/base/replay.py ``Replayer.ask`` and
``follow_ups_accepted``; ownership.py ``_metadata``):

a write-off, deletion or give-back asked on the live path is named unsettled while its
call runs (``PartitionOwnership.asking``), but its accepted calls are named only from the
replayer's ``_follow_ups_unsettled``, which the live path fills after the call returns.
A write-off of two documents: the partner answers 202 to the first, the second's call
still runs when a revocation stops waiting (``leaving`` timed out) and commits: the commit
names the write-off unsettled but not its accepted call. The next owner takes a 409 to
that call for "still processing" only within the window from its own first attempt, then
for a refusal: FOLLOW_UP_FAILED, the give-back goes ahead, and the partner writes the
goods off later (the defect c2209ef fixed, for a call under way at the hand-over)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from pathlib import Path

from adapters.base.ownership import PartitionOwnership
from adapters.base.pending import PendingOperations
from adapters.base.replay import Replayer
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from tests.adapter_fixtures import partner_request


class _Partner:
    """The first call answered 202 (accepted), the request's answer not back yet."""

    def __init__(self) -> None:
        self.accepted: frozenset[int] = frozenset()
        self.under_way = asyncio.Event()
        self.release = asyncio.Event()

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        self.accepted = frozenset({0})
        self.under_way.set()
        await self.release.wait()
        raise AssertionError("not reached in this test")

    def accepted_calls(self, request: AuthorityRequest) -> frozenset[int]:
        return self.accepted

    def may_still_apply(self, request: AuthorityRequest) -> bool:
        return True

    def sent_before(self, request: AuthorityRequest, accepted: Collection[int] = ()) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_a_call_accepted_while_its_request_is_under_way_is_named(tmp_path: Path) -> None:
    pending = PendingOperations(tmp_path / "pending.sqlite")
    partner = _Partner()

    async def publish(*_: object) -> None:
        pass

    replayer = Replayer(pending, partner, publish)  # type: ignore[arg-type]
    write_off = partner_request(Operation.WRITE_OFF, quantity="10")
    asking = asyncio.create_task(replayer.ask(write_off, 0, 10))
    try:
        await asyncio.wait_for(partner.under_way.wait(), 5)
        named = replayer.follow_ups_accepted()
    finally:
        asking.cancel()
        pending.close()
    assert (write_off, frozenset({0})) in named, (
        f"the write-off under way, its call 0 accepted (202), is not among the follow-ups "
        f"a commit names accepted ({named}): a revocation's commit made now names it "
        "unsettled only, and its next owner takes the partner's 409 for a refusal past "
        "the window"
    )


async def test_a_commit_made_while_it_is_under_way_names_its_accepted_call(
    tmp_path: Path,
) -> None:
    """The same, as the runner wires it (runner._ask): the commit a revocation makes
    while the call is under way names the write-off unsettled and its call accepted."""
    pending = PendingOperations(tmp_path / "pending.sqlite")
    partner = _Partner()

    async def publish(*_: object) -> None:
        pass

    replayer = Replayer(pending, partner, publish)  # type: ignore[arg-type]
    ownership = PartitionOwnership(
        pending, replayer.follow_ups_unsettled, replayer.follow_ups_accepted
    )
    ownership.assigned({0}, {}, committed={0: 10}, log_starts={0: 0}, group_generation=7)
    write_off = partner_request(Operation.WRITE_OFF, quantity="10")

    async def runner_ask() -> None:
        with ownership.asking(0, 10, write_off):
            await replayer.ask(write_off, 0, 10)

    asking = asyncio.create_task(runner_ask())
    try:
        await asyncio.wait_for(partner.under_way.wait(), 5)
        said = ownership.commit_metadata(0)
    finally:
        asking.cancel()
        pending.close()
    assert said == "answered:10;unsettled:0;accepted:0=0", said
