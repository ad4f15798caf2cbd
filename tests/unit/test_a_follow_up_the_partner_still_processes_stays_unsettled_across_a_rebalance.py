"""A write-off or give-back the partner is still processing when its replica loses the
partition (killed, or a rebalance) is named in the commit's metadata like a reservation in
that state: the partition's next owner, reading it again below the ``answered:`` mark,
asks it again as a repeat of the earlier attempt, so the partner's 409 "being processed"
is "still in progress" (UNAVAILABLE, queued, replayed until the partner answers it), as
one replica alone would have taken it. A follow-up never sent (queued behind another) is
not named.

Found by review, stop 39-SF (SF2): the next owner's first attempt met 409 and took it for
a rejection (MISMATCH ``HTTP409``, FOLLOW_UP_FAILED at the hub) while the partner wrote
the goods off, or gave them back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.base.ownership import PartitionOwnership
from adapters.base.pending import PendingOperations
from adapters.base.replay import Replayer
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Verdict
from tests.adapter_fixtures import Published, partner_request, replayer_publishing_to
from tests.partner_fixtures import (
    RunningPartner,
    WatchedPartner,
    set_faults,
    slow_partner_client,
    watched_partner,
)

DOC = "CHEDP.FR.2026.0001234"
DECL = "26FR000690I0000701"
# Long past the live calls (3 attempts of 0.3 s each, twice), on a loaded machine too.
HELD_S = 5.0
FOLLOW_UP_PATHS = ("/write-off", "/give-back")


def op(operation: Operation, version: int, quantity: str | None = None) -> AuthorityRequest:
    return partner_request(
        operation, reference=DECL, version=version, document=DOC, quantity=quantity
    )


@pytest.fixture
async def partner(samples: Path, tmp_path: Path) -> AsyncIterator[WatchedPartner]:
    async with watched_partner(
        samples / "partners" / "dgal-documents.json",
        tmp_path / "ledger.db",
        lambda r: r.path.endswith(FOLLOW_UP_PATHS),
    ) as running:
        yield running


def owner_of(pending: PendingOperations, replayer: Replayer) -> PartitionOwnership:
    return PartitionOwnership(pending, replayer.follow_ups_unsettled)


@asynccontextmanager
async def an_owner(
    partner: RunningPartner, pending_file: Path
) -> AsyncIterator[tuple[Replayer, PartitionOwnership]]:
    """One replica's replayer and its ownership of partition 0, asking ``partner`` with a
    client that gives a held call up quickly."""
    client = slow_partner_client(partner)
    pending = PendingOperations(pending_file)
    replayer = replayer_publishing_to(pending, client, [])
    owner = owner_of(pending, replayer)
    owner.assigned({0})
    try:
        yield replayer, owner
    finally:
        await client.close()
        pending.close()


def balances(partner: RunningPartner) -> tuple[Decimal, Decimal, Decimal]:
    line = partner.store.balances(DOC)[0]
    return line.reserved, line.written_off, line.given_back


@pytest.mark.parametrize(
    ("follow_up", "before", "ledger_after"),
    [
        # A release after control: v1's reservation written off by v2.
        (Operation.WRITE_OFF, [], (Decimal(0), Decimal(10), Decimal(0))),
        # An invalidation after release: v2's write-off given back by v3.
        (Operation.GIVE_BACK, [Operation.WRITE_OFF], (Decimal(0), Decimal(0), Decimal(10))),
    ],
)
async def test_a_follow_up_the_partner_still_processes_is_not_a_rejection_for_the_next_owner(
    partner: WatchedPartner,
    tmp_path: Path,
    follow_up: Operation,
    before: list[Operation],
    ledger_after: tuple[Decimal, Decimal, Decimal],
) -> None:
    """The review's case: the follow-up held by the partner, answered UNAVAILABLE and
    queued by the first owner, which dies; the next owner reads it again from the
    commit."""
    version = 2 + len(before)
    first = slow_partner_client(partner)
    first_pending = PendingOperations(tmp_path / "first.sqlite")
    first_replayer = replayer_publishing_to(first_pending, first, [])
    first_owner = owner_of(first_pending, first_replayer)
    first_owner.assigned({0})
    try:
        [reserved] = await first_replayer.ask(op(Operation.RESERVE, 1, quantity="10"), 0, 10)
        assert reserved.verdict is Verdict.VALID, reserved.detail
        for offset, earlier in enumerate(before, start=11):
            [done] = await first_replayer.ask(op(earlier, offset - 9), 0, offset)
            assert done.verdict is Verdict.VALID, done.detail
        at = 10 + version - 1
        partner.answered.clear()  # the earlier write-off's answer
        await set_faults(partner.url, in_progress_next=1, hang_s=HELD_S)
        [first_answer] = await first_replayer.ask(op(follow_up, version), 0, at)
        assert first_answer.verdict is Verdict.UNAVAILABLE, first_answer.detail
        first_owner.handled({0: at + 1}, first_owner.generation)
        assert first_owner.to_commit() == {0: at}  # held back by the queued follow-up
        metadata = first_owner.commit_metadata(0)
    finally:
        await first.close()
        first_pending.close()

    second = slow_partner_client(partner)
    second_pending = PendingOperations(tmp_path / "second.sqlite")
    published: Published = []
    second_replayer = replayer_publishing_to(second_pending, second, published)
    second_owner = owner_of(second_pending, second_replayer)
    second_owner.assigned({0}, {0: metadata}, committed={0: at})
    try:
        assert second_owner.answered_before(0, at)
        # As the runner asks it (runner.py): a repeat if the commit names it.
        [again] = await second_replayer.ask(
            op(follow_up, version), 0, at, sent_before=second_owner.unsettled_at(0, at)
        )
        # Still in progress at the partner: pending, not rejected (MISMATCH HTTP409).
        assert (again.verdict, again.partner_code) == (Verdict.UNAVAILABLE, None), again.detail
        assert not partner.answered.is_set()
        second_owner.handled({0: at + 1}, second_owner.generation)
        # Named again: a third owner would take it as this one did.
        assert second_owner.commit_metadata(0) == metadata == f"answered:{at + 1};unsettled:0"

        await asyncio.wait_for(partner.answered.wait(), HELD_S + 10)
        await second_replayer.replay_all()
        left = len(second_pending)
        after = second_owner.commit_metadata(0)
    finally:
        await second.close()
        second_pending.close()
    assert published == [(op(follow_up, version).request_id, Verdict.VALID, "01")]
    assert left == 0
    assert after == f"answered:{at + 1}"  # settled: no longer named
    assert balances(partner) == ledger_after


async def test_a_follow_up_queued_behind_another_and_never_sent_is_not_named(
    partner: WatchedPartner, tmp_path: Path
) -> None:
    """Only a follow-up whose call the partner may still be applying is named: one held
    back behind a reservation still in progress was never sent (its 409 could only be a
    conflict the partner remembers), and the reservation names the partition already."""
    async with an_owner(partner, tmp_path / "pending.sqlite") as (replayer, owner):
        await set_faults(partner.url, in_progress_next=1, hang_s=HELD_S)
        [reserve] = await replayer.ask(op(Operation.RESERVE, 1, quantity="10"), 0, 10)
        assert reserve.verdict is Verdict.UNAVAILABLE
        [write_off] = await replayer.ask(op(Operation.WRITE_OFF, 2), 0, 11)
        assert write_off.verdict is Verdict.UNAVAILABLE
        owner.handled({0: 12}, owner.generation)
        metadata = owner.commit_metadata(0)
    assert metadata == "answered:12;unsettled:0"  # the reservation only


async def test_a_commit_naming_such_a_follow_up_is_not_made_again_while_nothing_changes(
    partner: WatchedPartner, tmp_path: Path
) -> None:
    """What is to commit is judged on what the commit says, follow-ups included: judged
    on the reservations alone, a partition idle with such a follow-up queued was
    committed again at every interval (ledger review, stop 45, concern c)."""
    async with an_owner(partner, tmp_path / "pending.sqlite") as (replayer, owner):
        [reserved] = await replayer.ask(op(Operation.RESERVE, 1, quantity="10"), 0, 10)
        assert reserved.verdict is Verdict.VALID, reserved.detail
        await set_faults(partner.url, in_progress_next=1, hang_s=HELD_S)
        [write_off] = await replayer.ask(op(Operation.WRITE_OFF, 2), 0, 11)
        assert write_off.verdict is Verdict.UNAVAILABLE, write_off.detail
        owner.handled({0: 12}, owner.generation)
        first = owner.to_commit()
        owner.committed(first)
        said = owner.commit_metadata(0)
        again = owner.to_commit()
    assert first == {0: 11}
    assert said == "answered:12;unsettled:0"
    assert again == {}, "nothing changed since the last commit"
