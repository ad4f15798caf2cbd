"""A reservation the partner is still processing (the adapter gave up on it: its retry
met 409 "being processed", or its attempts timed out) is not overtaken at the partner by
its own version's deletion or write-off: the follow-up is queued behind it (UNAVAILABLE,
FOLLOW_UP_PENDING at the hub), the reservation is asked again with the same key in the
replay rounds until the partner answers it for good (nothing more is published about it:
the hub decided on its UNAVAILABLE), and only then does the follow-up go. A later
version's reservation supersedes it (the partner's version guard stops the late one).
What keeps it unsettled survives a restart or a rebalance in the commit's metadata.

Found by review, stop 39 (P1): the deletion of a refused declaration reached the partner
before the reservation it was sent to delete, was answered ``02`` (no reservation: taken
for a redelivery, VALID, RESERVATION_DELETED), then the partner applied the reservation:
10 units reserved for a refused declaration for ever."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp import web

from adapters.base.ownership import PartitionOwnership
from adapters.base.pending import PendingOperations
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Verdict
from gun_tools.processes import free_port
from tests.adapter_fixtures import Published, partner_request, replayer_publishing_to
from tests.partner_fixtures import (
    RunningPartner,
    WatchedPartner,
    partner_client,
    serving,
    set_faults,
    slow_partner_client,
    watched_partner,
)

DOC = "CHEDP.FR.2026.0001234"
DECL = "26FR000690I0000601"
# Long past the live call (3 attempts of 0.3 s) and a replay round, on a loaded machine too.
HELD_S = 5.0


def op(operation: Operation, version: int = 1, quantity: str | None = None) -> AuthorityRequest:
    return partner_request(
        operation, reference=DECL, version=version, document=DOC, quantity=quantity
    )


@pytest.fixture
async def partner(samples: Path, tmp_path: Path) -> AsyncIterator[WatchedPartner]:
    async with watched_partner(
        samples / "partners" / "dgal-documents.json",
        tmp_path / "ledger.db",
        lambda r: r.method == "PUT" and "/reservations/" in r.path,
    ) as running:
        yield running


def reserved_and_written_off(partner: RunningPartner) -> tuple[Decimal, Decimal]:
    line = partner.store.balances(DOC)[0]
    return line.reserved, line.written_off


@pytest.mark.parametrize(
    ("follow_up", "ledger_after"),
    [
        (Operation.DELETE, (Decimal(0), Decimal(0))),
        (Operation.WRITE_OFF, (Decimal(0), Decimal(10))),
    ],
)
async def test_a_follow_up_waits_behind_its_versions_reservation_the_partner_still_processes(
    partner: WatchedPartner,
    tmp_path: Path,
    follow_up: Operation,
    ledger_after: tuple[Decimal, Decimal],
) -> None:
    """The review's case: the reservation (10) held by the partner; the hub decides (a
    refusal elsewhere: DELETE; a release in degraded mode: WRITE_OFF) and follows up."""
    client = slow_partner_client(partner)
    pending = PendingOperations(tmp_path / "pending.sqlite")
    published: Published = []
    replayer = replayer_publishing_to(pending, client, published)
    try:
        await set_faults(partner.url, in_progress_next=1, hang_s=HELD_S)
        [reserve] = await replayer.ask(op(Operation.RESERVE, quantity="10"), 0, 10)
        assert reserve.verdict is Verdict.UNAVAILABLE
        assert reserve.detail is not None
        assert "still processing" in reserve.detail

        [live] = await replayer.ask(op(follow_up), 0, 11)
        # Not sent ahead of the reservation: queued behind it, the hub told it is pending.
        assert (live.verdict, live.partner_code) == (Verdict.UNAVAILABLE, None), live.detail
        assert [r.operation for r in pending.queued(DECL)] == [Operation.RESERVE, follow_up]
        # A replay round while the partner still holds the reservation: both wait.
        assert not partner.answered.is_set()
        await replayer.replay_all()
        assert published == []
        assert len(pending) == 2

        await asyncio.wait_for(partner.answered.wait(), HELD_S + 10)
        await replayer.replay_all()
        left = len(pending)
    finally:
        await client.close()
        pending.close()
    # The reservation settled (nothing more told to the hub about it), then the follow-up
    # went and found it: 01, not 02 ("no reservation") ahead of it.
    assert published == [(op(follow_up).request_id, Verdict.VALID, "01")]
    assert left == 0
    assert reserved_and_written_off(partner) == ledger_after


async def test_a_later_versions_reservation_supersedes_one_the_partner_still_processes(
    partner: WatchedPartner, tmp_path: Path
) -> None:
    """v1's reservation (10) is held by the partner; v2 (amended to 7) is lodged: sent,
    applied, and v1's reservation leaves the queue. When the partner gets to v1's call,
    its version guard refuses it: the ledger holds v2's 7 only."""
    client = slow_partner_client(partner)
    pending = PendingOperations(tmp_path / "pending.sqlite")
    published: Published = []
    replayer = replayer_publishing_to(pending, client, published)
    try:
        await set_faults(partner.url, in_progress_next=1, hang_s=HELD_S)
        [v1] = await replayer.ask(op(Operation.RESERVE, 1, quantity="10"), 0, 10)
        assert v1.verdict is Verdict.UNAVAILABLE
        [v2] = await replayer.ask(op(Operation.RESERVE, 2, quantity="7"), 0, 11)
        assert (v2.verdict, v2.partner_code) == (Verdict.VALID, None), v2.detail
        assert len(pending) == 0  # superseded: v1's late call cannot change the ledger
        partner.answered.clear()
        await asyncio.wait_for(partner.answered.wait(), HELD_S + 10)
        await replayer.replay_all()
    finally:
        await client.close()
        pending.close()
    assert published == []
    assert reserved_and_written_off(partner) == (Decimal(7), Decimal(0))
    assert [(p.version, p.state) for p in partner.store.positions(DOC)] == [(2, "ACTIVE")]


async def test_a_reservation_the_partner_still_processes_stays_unsettled_across_a_restart(
    partner: WatchedPartner, tmp_path: Path
) -> None:
    """The replica that asked the reservation stops (or loses the partition) before the
    partner answers it; the next owner reads the requests again from the commit. The
    commit's metadata says the reservation at offset 10 is unsettled: the next owner asks
    it again with the same key (409: still in progress, though its own first attempt) and
    holds the deletion behind it. Without it, the reservation was taken for answered (not
    asked again) and the deletion went first."""
    first = slow_partner_client(partner)
    first_pending = PendingOperations(tmp_path / "first.sqlite")
    first_owner = PartitionOwnership(first_pending)
    first_owner.assigned({0})
    try:
        await set_faults(partner.url, in_progress_next=1, hang_s=HELD_S)
        [reserve] = await replayer_publishing_to(first_pending, first, []).ask(
            op(Operation.RESERVE, quantity="10"), 0, 10
        )
        assert reserve.verdict is Verdict.UNAVAILABLE
        first_owner.handled({0: 11}, first_owner.generation)
        assert first_owner.to_commit() == {0: 10}  # held back by the unsettled reservation
        metadata = first_owner.commit_metadata(0)
        assert metadata == "answered:11;unsettled:0"  # the reservation at the commit
    finally:
        await first.close()
        first_pending.close()

    second = slow_partner_client(partner)
    second_pending = PendingOperations(tmp_path / "second.sqlite")
    second_owner = PartitionOwnership(second_pending)
    second_owner.assigned({0}, {0: metadata}, committed={0: 10})
    published: Published = []
    replayer = replayer_publishing_to(second_pending, second, published)
    try:
        # Read again from the commit: the reservation was answered, but is not settled.
        assert second_owner.answered_before(0, 10)
        assert second_owner.unsettled_at(0, 10)
        assert not second_owner.unsettled_at(0, 11)
        await replayer.settle_later(op(Operation.RESERVE, quantity="10"), 0, 10, None)
        [live] = await replayer.ask(op(Operation.DELETE), 0, 11)
        assert (live.verdict, live.partner_code) == (Verdict.UNAVAILABLE, None), live.detail
        second_owner.handled({0: 12}, second_owner.generation)
        assert second_owner.to_commit() == {0: 10}
        assert second_owner.unsettled_at(0, 10)
        assert second_owner.commit_metadata(0) == "answered:12;unsettled:0"

        await asyncio.wait_for(partner.answered.wait(), HELD_S + 10)
        await replayer.replay_all()
        left = len(second_pending)
    finally:
        await second.close()
        second_pending.close()
    assert published == [(op(Operation.DELETE).request_id, Verdict.VALID, "01")]
    assert left == 0
    assert reserved_and_written_off(partner) == (Decimal(0), Decimal(0))


def test_the_commit_metadata_names_the_unsettled_reservations_relative_to_the_commit(
    tmp_path: Path,
) -> None:
    """Offsets of a long-lived topic are long; the commit metadata is bounded (4 KiB by
    default): the unsettled reservations are named by their distance from the commit,
    which no queued operation precedes. A commit without them reads as before."""
    pending = PendingOperations(tmp_path / "pending.sqlite")
    try:
        owner = PartitionOwnership(pending)
        owner.assigned(
            {3},
            {3: "answered:1000000120;unsettled:0,7"},
            committed={3: 1_000_000_100},
        )
        assert owner.unsettled_at(3, 1_000_000_100)
        assert owner.unsettled_at(3, 1_000_000_107)
        assert not owner.unsettled_at(3, 1_000_000_101)
        assert owner.answered_before(3, 1_000_000_119)
        # Inherited and not read again yet: a commit of the partition still names them.
        owner.handled({3: 1_000_000_105}, owner.generation)
        assert owner.commit_metadata(3) == "answered:1000000120;unsettled:2"
        old = PartitionOwnership(pending)
        old.assigned({3}, {3: "answered:1000000120"}, committed={3: 1_000_000_100})
        assert old.answered_before(3, 1_000_000_119)
        assert not old.unsettled_at(3, 1_000_000_100)
    finally:
        pending.close()


async def test_a_reservation_the_partner_turned_down_or_never_got_is_not_kept(
    tmp_path: Path,
) -> None:
    """Only a call the partner may be applying keeps a reservation queued: one answered
    503 at every attempt (the partner turned it down) or never connected is answered
    UNAVAILABLE and forgotten, as before (reservations met by an outage are not applied
    late)."""

    async def busy(_: web.Request) -> web.Response:
        return web.json_response({"error": "busy"}, status=503)

    pending = PendingOperations(tmp_path / "pending.sqlite")
    try:
        async with serving(busy) as url:
            client = partner_client(url, retry_attempts=2, retry_backoff_base_s=0.01)
            try:
                [turned_down] = await replayer_publishing_to(pending, client, []).ask(
                    op(Operation.RESERVE, quantity="10"), 0, 10
                )
            finally:
                await client.close()
        client = partner_client(f"http://127.0.0.1:{free_port()}", retry_attempts=2)
        try:
            [unreachable] = await replayer_publishing_to(pending, client, []).ask(
                op(Operation.RESERVE, 2, quantity="10"), 0, 11
            )
        finally:
            await client.close()
        left = len(pending)
    finally:
        pending.close()
    assert turned_down.verdict is Verdict.UNAVAILABLE
    assert unreachable.verdict is Verdict.UNAVAILABLE
    assert left == 0


@pytest.mark.parametrize(
    ("follow_up", "ledger_after"),
    [
        (Operation.DELETE, (Decimal(0), Decimal(0))),
        (Operation.WRITE_OFF, (Decimal(0), Decimal(10))),
    ],
)
async def test_a_reservation_still_processed_past_the_window_keeps_its_follow_up_behind_it(
    partner: WatchedPartner,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    follow_up: Operation,
    ledger_after: tuple[Decimal, Decimal],
) -> None:
    """Review stop 39-SF, SF1: ten minutes after the reservation's first attempt (here a
    window of 0: every repeat is past it) the partner's 409 "being processed" was taken
    for a rejection, the reservation for settled (logged at INFO), and its follow-up went
    first: the DELETE answered ``02`` (RESERVATION_DELETED) then the reservation applied,
    held for ever; the WRITE_OFF ``02``, a post-release alert (SF1b). A partner still
    processing a reservation turns nothing down: it stays queued, its follow-up behind it,
    and the window only makes a warning name it."""
    client = partner_client(
        partner.url, partner_timeout_s=0.3, retry_attempts=3, partner_in_progress_window_s=0
    )
    pending = PendingOperations(tmp_path / "pending.sqlite")
    published: Published = []
    replayer = replayer_publishing_to(pending, client, published)
    try:
        await set_faults(partner.url, in_progress_next=1, hang_s=HELD_S)
        [reserve] = await replayer.ask(op(Operation.RESERVE, quantity="10"), 0, 10)
        assert reserve.verdict is Verdict.UNAVAILABLE
        [live] = await replayer.ask(op(follow_up), 0, 11)
        assert (live.verdict, live.partner_code) == (Verdict.UNAVAILABLE, None), live.detail
        # Replay rounds while the partner still holds it: 409, past the window, both wait.
        await replayer.replay_all()
        await replayer.replay_all()
        assert not partner.answered.is_set()
        assert published == []
        assert [r.operation for r in pending.queued(DECL)] == [Operation.RESERVE, follow_up]

        await asyncio.wait_for(partner.answered.wait(), HELD_S + 10)
        await replayer.replay_all()
        left = len(pending)
    finally:
        await client.close()
        pending.close()
    assert published == [(op(follow_up).request_id, Verdict.VALID, "01")]
    assert left == 0
    assert reserved_and_written_off(partner) == ledger_after
    warned = [r for r in caplog.records if r.levelname == "WARNING" and DECL in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in caplog.records]
    assert "still processing" in warned[0].getMessage()
