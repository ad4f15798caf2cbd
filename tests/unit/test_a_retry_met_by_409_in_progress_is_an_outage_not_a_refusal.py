"""A 409 answered to a repeat of an idempotency key (a retry, or a replay of the queued
operation) while the partner still processes an earlier attempt is an outage, not a
rejection: the follow-up is queued and replayed, and the replay gets the partner's
remembered answer. Found by review, stop 37 (J3): it ended MISMATCH ``HTTP409``
(FOLLOW_UP_FAILED at the hub, for war material a post-release alert, never replayed)
though the partner wrote the goods off. A 409 to a key's first attempt keeps its meaning:
the partner will not apply the call (a conflict with its ledger), a refusal."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from adapters.base.keys_in_flight import KeysInFlight
from adapters.base.pending import PendingOperations
from adapters.base.replay import Replayer
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from gun_contract.model.verdicts import Verdict
from tests.adapter_fixtures import partner_request
from tests.partner_fixtures import (
    Handler,
    RunningPartner,
    partner_client,
    running_partner,
    serving,
    set_faults,
)

DOC = "CHEDP.FR.2026.0001234"
DECL = "26FR000690I0000401"
IN_PROGRESS = {"error": "a request with this Idempotency-Key is being processed"}
# Long past the live call and a replay round (about a second), on a loaded machine too.
HELD_S = 5.0


def write_off() -> AuthorityRequest:
    return partner_request(Operation.WRITE_OFF, reference=DECL, quantity=None)


@dataclass
class SignallingPartner(RunningPartner):
    """The simulator, telling when a write-off went through (its answer may be lost to
    the adapter, which gave up on it: nothing else signals it)."""

    written_off: asyncio.Event


@pytest.fixture
async def partner(samples: Path, tmp_path: Path) -> AsyncIterator[SignallingPartner]:
    written_off = asyncio.Event()

    @web.middleware
    async def signal(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.path.endswith("/write-off") and response.status == 200:
            written_off.set()
        return response

    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "l.db", [signal]
    ) as running:
        yield SignallingPartner(running.url, running.store, written_off)


def line_1(partner: RunningPartner) -> tuple[int, int, int]:
    [line, _] = partner.store.balances(DOC)
    return int(line.reserved), int(line.written_off), int(line.given_back)


async def test_a_retry_met_by_409_in_progress_is_unavailable_then_replayed_and_applied_once(
    partner: SignallingPartner, tmp_path: Path
) -> None:
    adapter = partner_client(partner.url, partner_timeout_s=0.3, retry_attempts=3)
    pending = PendingOperations(tmp_path / "pending.sqlite")
    published: list[DocumentAnswer] = []

    async def publish(
        _request: AuthorityRequest, answers: tuple[DocumentAnswer, ...], _partition: int | None
    ) -> None:
        published.extend(answers)

    replayer = Replayer(pending, adapter, publish)
    try:
        [reserved] = await adapter.answer(partner_request(Operation.RESERVE, reference=DECL))
        assert reserved.verdict is Verdict.VALID
        # The partner holds the write-off HELD_S, past the adapter's 0.3 s deadline: the
        # retry with the same key meets 409 "still being processed".
        await set_faults(partner.url, in_progress_next=1, hang_s=HELD_S)
        [live] = await replayer.ask(write_off(), 0, 41)
        assert (live.verdict, live.partner_code) == (Verdict.UNAVAILABLE, None), live.detail
        assert live.detail is not None
        assert "still processing" in live.detail
        assert pending.holds(write_off())  # queued, to be replayed
        # A replay round while the partner still holds it: 409 again, still queued.
        assert not partner.written_off.is_set()
        await replayer.replay_all()
        assert published == []
        assert pending.holds(write_off())
        await asyncio.wait_for(partner.written_off.wait(), HELD_S + 10)
        await replayer.replay_all()
        left = len(pending)
    finally:
        await adapter.close()
        pending.close()
    # The replay carries the same key: the partner's remembered answer, not a second write-off.
    assert [(a.verdict, a.partner_code) for a in published] == [(Verdict.VALID, "01")]
    assert left == 0
    assert line_1(partner) == (0, 300, 0)


async def test_a_retry_met_by_409_from_a_partner_still_processing_is_not_a_refusal() -> None:
    """The reviewer's partner: it answers 409 to a key in flight, and applies the first."""
    applied: list[str] = []
    in_progress: set[str] = set()
    conflicts: list[str] = []
    released = asyncio.Event()
    done = asyncio.Event()

    async def partner_app(request: web.Request) -> web.Response:
        key = request.headers["Idempotency-Key"] + request.path
        if key in in_progress:
            conflicts.append(key)
            return web.json_response(IN_PROGRESS, status=409)
        in_progress.add(key)
        await released.wait()  # held past the adapter's 0.3 s deadline, until its answer
        applied.append(request.path)  # ... and the write-off is applied all the same
        in_progress.discard(key)
        done.set()
        return web.json_response({"result": "DONE", "code": "01"})

    async with serving(partner_app) as url:
        adapter = partner_client(url, partner_timeout_s=0.3, retry_attempts=3)
        try:
            [answer] = await adapter.answer(write_off())
        finally:
            released.set()
            await adapter.close()
        await asyncio.wait_for(done.wait(), 5)
    assert conflicts, "the retry met the partner's 409"
    assert applied, "the partner applied the write-off"
    assert answer.verdict is Verdict.UNAVAILABLE, (answer.verdict, answer.partner_code)


async def test_a_409_to_a_keys_first_attempt_is_still_a_refusal() -> None:
    """A conflict with the partner's ledger: sent again it is refused again, so it ends
    as a refusal naming the rejection (stop 30), as before."""
    calls = 0

    async def conflicting(_: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response({"error": "conflicts with the ledger"}, status=409)

    async with serving(conflicting) as url:
        adapter = partner_client(url)
        try:
            [first] = await adapter.answer(write_off())
            # Answered for good: the same key asked again (a redelivery) is a first attempt.
            [again] = await adapter.answer(write_off())
        finally:
            await adapter.close()
    assert (first.verdict, first.partner_code) == (Verdict.MISMATCH, "HTTP409")
    assert (again.verdict, again.partner_code) == (Verdict.MISMATCH, "HTTP409")
    assert calls == 2


async def test_a_409_after_an_attempt_whose_outcome_is_unknown_is_unavailable() -> None:
    """The first attempt got a 5xx (its outcome unknown: it may be running); the retry's
    409 is the partner still at it."""
    statuses = iter([503, 409])

    async def partner_app(_: web.Request) -> web.Response:
        status = next(statuses)
        return web.json_response(IN_PROGRESS if status == 409 else {"error": "busy"}, status=status)

    async with serving(partner_app) as url:
        adapter = partner_client(url, retry_attempts=2, retry_backoff_base_s=0.01)
        try:
            [answer] = await adapter.answer(write_off())
        finally:
            await adapter.close()
    assert (answer.verdict, answer.partner_code) == (Verdict.UNAVAILABLE, None)


async def test_a_409_after_an_attempt_turned_away_429_is_a_refusal() -> None:
    """A 429 says the partner did not take the attempt (a 503 may hide one it did, behind
    a proxy): the retry that meets 409 is the key's first attempt taken, so the conflict
    is the partner's word, not an outage replayed for ten minutes (found by review of
    stop 37's change, G4)."""
    statuses = iter([429, 409])

    async def partner_app(_: web.Request) -> web.Response:
        status = next(statuses)
        body = {"error": "conflicts with the ledger"} if status == 409 else {"error": "slow down"}
        return web.json_response(body, status=status)

    async with serving(partner_app) as url:
        adapter = partner_client(url, retry_attempts=2, retry_backoff_base_s=0.01)
        try:
            [answer] = await adapter.answer(write_off())
        finally:
            await adapter.close()
    assert (answer.verdict, answer.partner_code) == (Verdict.MISMATCH, "HTTP409")


@pytest.mark.parametrize(
    ("operation", "refused_as"),
    [
        # A reservation is never refused for a call not read: unavailable, for the
        # partner's reason, and nothing left to wait for.
        (Operation.RESERVE, (Verdict.UNAVAILABLE, None)),
        (Operation.WRITE_OFF, (Verdict.MISMATCH, "HTTP409")),
    ],
)
async def test_a_409_after_attempts_that_never_connected_is_a_refusal(
    operation: Operation, refused_as: tuple[Verdict, str | None]
) -> None:
    """A refused connection sends nothing: once the partner is back, its 409 to the call
    is its first attempt's answer, a conflict with its ledger, not an earlier attempt still
    being processed. Found by review of the ledger (stop 45, concern b): each attempt
    counted as sent before it connected, so a reservation refused that way after an outage
    was queued and asked again for ever (a write-off, for ten minutes)."""
    request = partner_request(operation, reference=DECL, quantity=None)
    with socket.socket() as listener:
        # Bound, not listening: every connection is refused until it listens.
        listener.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        adapter = partner_client(url, retry_attempts=3, retry_backoff_base_s=0.01)
        try:
            [down] = await adapter.answer(request)
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", _conflicting)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            listener.listen()
            await web.SockSite(runner, listener).start()
            try:
                [back] = await adapter.answer(request)
            finally:
                await runner.cleanup()
            maybe_applying = adapter.may_still_apply(request)
        finally:
            await adapter.close()
    assert (down.verdict, down.partner_code) == (Verdict.UNAVAILABLE, None), down.detail
    assert "unreachable" in str(down.detail)
    assert (back.verdict, back.partner_code) == refused_as, back.detail
    assert "rejected the call (HTTP 409)" in str(back.detail)
    assert not maybe_applying, "nothing of the call is left at the partner to wait for"


async def _conflicting(_: web.Request) -> web.Response:
    return web.json_response({"error": "conflicts with the ledger"}, status=409)


def test_a_409_long_after_a_keys_first_attempt_is_the_partners_word_again() -> None:
    """A partner takes seconds over a call, not minutes: past the window a 409 to a repeat
    is a refusal again (a conflict the partner remembers under the key is not asked every
    replay round for ever)."""
    now = [0.0]
    keys = KeysInFlight(in_progress_at_most_s=600, clock=lambda: now[0])
    keys.sending("k")
    assert not keys.still_in_progress("k")  # the first attempt
    keys.sending("k")
    assert keys.still_in_progress("k")
    now[0] = 601
    keys.sending("k")
    assert not keys.still_in_progress("k")


def test_a_settled_key_starts_again_and_the_memory_is_bounded() -> None:
    keys = KeysInFlight(kept=3)
    for key in ("a", "a", "b", "c"):
        keys.sending(key)
    keys.settled("a")
    keys.sending("a")
    assert not keys.still_in_progress("a")  # the partner answered it: a first attempt
    for key in ("d", "e", "f"):
        keys.sending(key)
    assert len(keys) == 3  # the oldest dropped first
    keys.sending("a")
    assert not keys.still_in_progress("a")  # dropped: counted from its next attempt


def test_a_key_the_partner_may_be_applying_outlives_the_keys_sent_after_it() -> None:
    """The memory counts keys while one request holds up to 5,994 (a key per document):
    a large declaration's calls pushed out the keys of a deletion that had timed out and
    waited queued, and the partner's 409 "still processing" to its replay read as a
    rejection, FOLLOW_UP_FAILED while the partner applied it (review of stop 47). A key
    the partner may be applying is dropped only past a bound ten times larger."""
    keys = KeysInFlight(kept=3)
    keys.sending("timed-out")
    keys.unanswered("timed-out")  # the partner may be applying it
    for key in ("b", "c", "d", "e", "f"):
        keys.sending(key)
    assert len(keys) == 4  # the three latest, and the one the partner may be applying
    keys.sending("timed-out")  # its replay
    assert keys.still_in_progress("timed-out")


def test_keys_the_partner_may_be_applying_stay_bounded_all_the_same() -> None:
    keys = KeysInFlight(kept=3)
    for n in range(100):
        keys.sending(f"k{n}")
        keys.unanswered(f"k{n}")
    assert len(keys) == 30  # ten times the bound, the oldest dropped first
