"""Found by the review of stop 54:
a write-off the partner answered **202 Accepted** is one it *will* apply,
however long it takes; past ``partner_in_progress_window_s`` its key's 409 "still being
processed" is read as a rejection all the same (``KeysInFlight.still_in_progress``), the
write-off ends MISMATCH ``HTTP409`` (FOLLOW_UP_FAILED), and what waited behind it goes
ahead of it: the invalidation's give-back meets an active reservation (``05``), and the
partner then writes off the goods it had accepted to write off. The goods given back by
the hub stay written off at the partner: the certificate lost the quantity.

The window exists for a partner that remembers a *conflict* under the key (a first
attempt refused 409): a key the partner answered 202 was accepted, never refused.
Driven without Kafka: the adapters' client and replayer, a proxy in front of the
partner simulator that answers 202 and applies later (an asynchronous partner).

The second test is the open item stop 54 left: the "accepted" mark was the process's.
The partition's next owner (a rebalance, a restart) read the write-off again as one its
earlier owner may have sent (``unsettled:`` in the commit's metadata), a repeat, but not
as one the partner accepted: past the window from its own first attempt, the partner's
409 was a rejection again, and the give-back went ahead of the write-off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal
from pathlib import Path

import aiohttp
from aiohttp import web

from adapters.base.certex import CertexHttpPartner
from adapters.base.ownership import PartitionOwnership
from adapters.base.pending import PendingOperations
from adapters.base.replay import Replayer
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Verdict
from tests.adapter_fixtures import Published, partner_request, replayer_publishing_to
from tests.partner_fixtures import forwarder, partner_client, running_partner, serving

DOC = "CHEDP.FR.2026.0001234"
DECL = "26FR000690I0000R11"
WINDOW_S = 0.5


def op(operation: Operation, quantity: str | None = None) -> AuthorityRequest:
    return partner_request(operation, reference=DECL, version=1, document=DOC, quantity=quantity)


async def test_a_write_off_the_partner_accepted_is_not_overtaken_by_its_give_back_past_the_window(
    samples: Path, tmp_path: Path
) -> None:
    partner = AsynchronousPartner()
    async with (
        running_partner(samples / "partners" / "dgal-documents.json", tmp_path / "l.db") as sim,
        partner.in_front_of(sim.url) as url,
    ):
        pending = PendingOperations(tmp_path / "pending.sqlite")
        published: Published = []
        client, replayer, _ = replica(url, pending, published)
        try:
            [reserved] = await client.answer(op(Operation.RESERVE, "10"))
            assert reserved.verdict is Verdict.VALID, reserved.detail
            [write_off] = await replayer.ask(op(Operation.WRITE_OFF, "10"), 0, 10)
            assert write_off.verdict is Verdict.UNAVAILABLE, write_off.detail
            await asyncio.sleep(WINDOW_S + 0.2)  # the partner takes its time
            [give_back] = await replayer.ask(op(Operation.GIVE_BACK), 0, 11)
            await replayer.replay_all()
            await partner.applies_what_it_accepted()
            await replayer.replay_all()
        finally:
            await client.close()
            pending.close()
        [line] = [b for b in sim.store.balances(DOC) if b.line == 1]
    assert (line.written_off, line.given_back) == (Decimal(0), Decimal(10)), (
        f"written off {line.written_off}, given back {line.given_back}: the write-off the "
        f"partner accepted (202) was answered {published} once past the window, its "
        f"give-back went ahead of it ({give_back.verdict.value} {give_back.partner_code}), "
        "and the partner then wrote the goods off for good"
    )


class AsynchronousPartner:
    """The proxy of the first test as a fixture of its own: every write-off is answered
    202 and applied once ``apply_now`` is set; a repeat of a key being processed meets
    409, a repeat of one applied its remembered answer."""

    def __init__(self) -> None:
        self.apply_now = asyncio.Event()
        self.applied_later: list[asyncio.Task[None]] = []
        self.accepted: set[str] = set()
        self.applied: set[str] = set()

    @asynccontextmanager
    async def in_front_of(self, sim_url: str) -> AsyncIterator[str]:
        async with aiohttp.ClientSession() as upstream:
            forward = forwarder(upstream, sim_url)

            async def later(request: web.Request, body: bytes, key: str) -> None:
                await self.apply_now.wait()
                await forward(request, body)
                self.accepted.discard(key)
                self.applied.add(key)

            async def partner(request: web.Request) -> web.Response:
                body = await request.read()
                key = request.headers.get("Idempotency-Key", "")
                if key in self.accepted:
                    return web.json_response(
                        {"error": "a request with this Idempotency-Key is being processed"},
                        status=409,
                    )
                if request.path.endswith("/write-off") and key not in self.applied:
                    self.accepted.add(key)
                    self.applied_later.append(asyncio.create_task(later(request, body, key)))
                    return web.json_response({"result": "PROCESSING"}, status=202)
                return await forward(request, body)

            async with serving(partner) as url:
                yield url

    async def applies_what_it_accepted(self) -> None:
        self.apply_now.set()
        await asyncio.gather(*self.applied_later)


def replica(
    url: str, pending: PendingOperations, published: Published
) -> tuple[CertexHttpPartner, Replayer, PartitionOwnership]:
    """One adapter replica's client, replayer and partition ownership, as the runner
    wires them (the commits name the follow-ups the replayer says are unsettled)."""
    client = partner_client(
        url, retry_attempts=2, retry_backoff_base_s=0.01, partner_in_progress_window_s=WINDOW_S
    )
    replayer = replayer_publishing_to(pending, client, published)
    ownership = PartitionOwnership(
        pending, replayer.follow_ups_unsettled, replayer.follow_ups_accepted
    )
    return client, replayer, ownership


async def test_the_next_owner_of_a_write_off_the_partner_accepted_does_not_take_it_for_refused(
    samples: Path, tmp_path: Path
) -> None:
    partner = AsynchronousPartner()
    async with (
        running_partner(samples / "partners" / "dgal-documents.json", tmp_path / "l.db") as sim,
        partner.in_front_of(sim.url) as url,
    ):
        published: Published = []
        first_pending = PendingOperations(tmp_path / "first.sqlite")
        first_client, first, first_ownership = replica(url, first_pending, published)
        next_pending = PendingOperations(tmp_path / "next.sqlite")
        next_client, next_owner, next_ownership = replica(url, next_pending, published)
        try:
            first_ownership.assigned({0}, {}, committed={0: 10}, group_generation=7)
            [reserved] = await first_client.answer(op(Operation.RESERVE, "10"))
            assert reserved.verdict is Verdict.VALID, reserved.detail
            [write_off] = await first.ask(op(Operation.WRITE_OFF, "10"), 0, 10)
            assert write_off.verdict is Verdict.UNAVAILABLE, write_off.detail
            first_ownership.handled({0: 11}, first_ownership.generation)
            # The partition goes to the next owner: the hand-over commit, then the rows.
            await first_ownership.leaving({0})
            handed_over = first_ownership.commit_metadata(0)
            await first_ownership.revoked({0}, {0: 0})
            next_ownership.assigned(
                {0}, {0: handed_over}, committed={0: 10}, log_starts={0: 0}, group_generation=8
            )
            # The runner's reading of the write-off again (runner._ask), then its give-back.
            assert next_ownership.sent_before(0, 10), handed_over
            [again] = await next_owner.ask(
                op(Operation.WRITE_OFF, "10"),
                0,
                10,
                sent_before=True,
                accepted=next_ownership.accepted_at(0, 10),
            )
            assert again.verdict is Verdict.UNAVAILABLE, again.detail  # 409: processing
            await asyncio.sleep(WINDOW_S + 0.2)  # the partner takes its time
            [give_back] = await next_owner.ask(op(Operation.GIVE_BACK), 0, 11)
            await next_owner.replay_all()
            await partner.applies_what_it_accepted()
            await next_owner.replay_all()
        finally:
            await first_client.close()
            await next_client.close()
            first_pending.close()
            next_pending.close()
        [line] = [b for b in sim.store.balances(DOC) if b.line == 1]
    assert (line.written_off, line.given_back) == (Decimal(0), Decimal(10)), (
        f"written off {line.written_off}, given back {line.given_back}: the write-off the "
        f"partner accepted (202) before the hand-over ({handed_over!r}) was answered "
        f"{published} by the next owner past the window, its give-back went ahead of it "
        f"({give_back.verdict.value} {give_back.partner_code}), and the partner then wrote "
        "the goods off for good"
    )


@contextmanager
def told(tmp_path: Path, metadata: str) -> Iterator[PartitionOwnership]:
    """A replica given partition 0 with a commit at 10 that says ``metadata``."""
    pending = PendingOperations(tmp_path / "p.sqlite")
    try:
        ownership = PartitionOwnership(pending)
        ownership.assigned(
            {0}, {0: metadata}, committed={0: 10}, log_starts={0: 0}, group_generation=8
        )
        yield ownership
    finally:
        pending.close()


def test_an_owner_that_has_not_read_an_accepted_follow_up_again_names_it_in_its_commits(
    tmp_path: Path,
) -> None:
    """A replica that inherits such a commit and is revoked (or dies) before it reads the
    follow-up again says what it was told: the owner after it must know it too."""
    with told(tmp_path, "answered:12;unsettled:0,1;accepted:1=0.2") as ownership:
        assert set(ownership.accepted_at(0, 11)) == frozenset({0, 2})
        assert set(ownership.accepted_at(0, 10)) == frozenset()  # unsettled, never accepted
        assert ownership.commit_metadata(0) == "answered:12;unsettled:0,1;accepted:1=0.2"


def test_an_accepted_part_not_understood_names_nothing_and_the_rest_stands(
    tmp_path: Path,
) -> None:
    with told(tmp_path, "answered:12;unsettled:0;accepted:0=x") as ownership:
        assert set(ownership.accepted_at(0, 10)) == frozenset()
        assert ownership.sent_before(0, 10)  # still asked as a repeat
        assert ownership.unsettled_at(0, 10)


async def test_an_accepted_follow_up_held_back_by_the_next_owner_stays_named(
    tmp_path: Path,
) -> None:
    """Found by the review of this change: the next owner reads the accepted write-off
    again behind its declaration's reservation, which the commit named unsettled too, and
    queues it without a call. Revoked before it replays it, its commit named neither
    the write-off nor its accepted call: the owner after it took the write-off for one
    never sent, and a 409 to it for a refusal."""
    reservation = op(Operation.RESERVE, "10")
    write_off = op(Operation.WRITE_OFF, "10")
    pending = PendingOperations(tmp_path / "p.sqlite")
    published: Published = []
    # A partner nobody reaches: the queued reservation's replay fails to connect.
    client, replayer, ownership = replica("http://127.0.0.1:9", pending, published)
    try:
        ownership.assigned(
            {0},
            {0: "answered:11;unsettled:0,2;accepted:2=0"},
            committed={0: 8},
            log_starts={0: 0},
            group_generation=8,
        )
        await replayer.settle_later(reservation, 0, 8, None)  # runner: unsettled_at(0, 8)
        [held] = await replayer.ask(
            write_off, 0, 10, sent_before=True, accepted=ownership.accepted_at(0, 10)
        )
        assert held.verdict is Verdict.UNAVAILABLE, held.detail
        assert pending.holds(write_off)
        ownership.handled({0: 11}, ownership.generation)
        await ownership.leaving({0})
        handed_over = ownership.commit_metadata(0)
    finally:
        await client.close()
        pending.close()
    assert handed_over == "answered:11;unsettled:0,2;accepted:2=0;handed-over:8", handed_over
