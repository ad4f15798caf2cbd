"""A partner answering **202 Accepted** to a reservation has taken the call and applies
it later (RFC 9110 15.3.3: "accepted for processing, but the processing has not been
completed"): the reservation is kept as one the partner may still apply, and the
refused declaration's DELETE waits behind it.

Found by the review of stop 52 (degraded mode): the adapter answered such a reservation
UNAVAILABLE ("partner answered HTTP 202"), counted it against the circuit, and forgot it
(``CertexHttpPartner.may_still_apply`` false: the key neither ``unanswered`` nor settled),
so the DELETE went to the partner at once, was answered ``02`` (nothing reserved yet:
VALID, RESERVATION_DELETED), and the partner then applied the reservation: held for a
refused declaration for ever. The shape of stop 39-SF's SF3 (a gateway's 502/504)."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from adapters.base.pending import PendingOperations
from adapters.base.replay import Replayer
from adapters.base.resilience import CircuitState
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from gun_contract.model.verdicts import Verdict
from tests.adapter_fixtures import partner_request, replayer_publishing_to
from tests.partner_fixtures import forwarder, partner_client, running_partner, serving

DOC = "CHEDP.FR.2026.0001234"
DECL = "26FR000690I0000702"


def op(operation: Operation, quantity: str | None = None) -> AuthorityRequest:
    return partner_request(operation, reference=DECL, version=1, document=DOC, quantity=quantity)


async def test_a_reservation_answered_202_accepted_is_not_overtaken_by_its_deletion(
    samples: Path, tmp_path: Path
) -> None:
    applied_later: list[asyncio.Task[None]] = []
    apply_now = asyncio.Event()  # set: the partner applies what it accepted
    asynchronous = asyncio.Event()  # set: the partner takes calls and applies them later
    asynchronous.set()
    async with (
        running_partner(samples / "partners" / "dgal-documents.json", tmp_path / "l.db") as sim,
        aiohttp.ClientSession() as upstream,
    ):
        forward = forwarder(upstream, sim.url)

        async def later(request: web.Request, body: bytes) -> None:
            await apply_now.wait()
            await forward(request, body)

        async def partner(request: web.Request) -> web.Response:
            body = await request.read()
            if asynchronous.is_set() and request.method == "PUT":
                applied_later.append(asyncio.create_task(later(request, body)))
                return web.json_response({"result": "PROCESSING"}, status=202)
            return await forward(request, body)

        async with serving(partner) as url:
            client = partner_client(url, retry_attempts=2, retry_backoff_base_s=0.01)
            pending = PendingOperations(tmp_path / "pending.sqlite")
            published: list[tuple[str, Verdict, str | None]] = []

            async def publish(
                request: AuthorityRequest, answers: tuple[DocumentAnswer, ...], _: int | None
            ) -> None:
                published.extend((request.request_id, a.verdict, a.partner_code) for a in answers)

            replayer = Replayer(pending, client, publish)
            try:
                [reserve] = await replayer.ask(op(Operation.RESERVE, "10"), 0, 10)
                assert reserve.verdict is Verdict.UNAVAILABLE, reserve.detail
                [delete] = await replayer.ask(op(Operation.DELETE), 0, 11)
                apply_now.set()  # only now, once the deletion was asked
                await asyncio.gather(*applied_later)  # the partner applied the reservation
                asynchronous.clear()
                await replayer.replay_all()
            finally:
                await client.close()
                pending.close()
        reserved = sim.store.balances(DOC)[0].reserved
    # The deletion must not have overtaken a reservation the partner took for processing:
    # nothing may stay reserved for the refused declaration.
    assert reserved == Decimal(0), (
        f"{reserved} left reserved for a refused declaration: the DELETE was answered "
        f"{delete.verdict.value} {delete.partner_code} before the partner applied the "
        "reservation it had accepted (202)"
    )


async def test_a_partner_answering_202_is_answering_and_its_circuit_stays_closed() -> None:
    """Counted as an unusable answer, a partner that processes every call later opened
    its circuit after a few reservations, and the adapter stopped calling a partner that
    was taking every call."""
    calls = 0

    async def accepting(_request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response({"result": "PROCESSING"}, status=202)

    async with serving(accepting) as url:
        client = partner_client(url, retry_attempts=1, circuit_failure_threshold=2)
        try:
            for n in range(4):
                request = partner_request(
                    Operation.RESERVE, reference=f"{DECL[:-1]}{n}", version=1, document=DOC
                )
                [answer] = await client.answer(request)
                assert answer.verdict is Verdict.UNAVAILABLE
                assert "HTTP 202" in (answer.detail or "")
                assert client.may_still_apply(request)
            assert client.circuit.state is CircuitState.CLOSED
        finally:
            await client.close()
    assert calls == 4


async def test_a_partner_not_applying_what_it_accepted_pages_as_a_stuck_operation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A partner that accepts every call and applies none (a queue behind it stopped) is
    told by what it leaves undone (stop 53's open item): the reservation stays queued and
    asked again, the replayer counts it failing (``gun_adapter_longest_failing_operation_
    seconds``, whence ``GunHubAdapterOperationStuck``), and past the window a warning names
    its key, once. Not by the circuit: one key stuck so opened it for every declaration of
    a partner answering all others (`test_one_key_stuck_accepted_does_not_open_the_circuit`)."""
    caplog.set_level(logging.WARNING, logger="adapters.base.certex")

    async def accepting_for_ever(_request: web.Request) -> web.Response:
        return web.json_response({"result": "PROCESSING"}, status=202)

    async with serving(accepting_for_ever) as url:
        client = partner_client(url, retry_attempts=1, partner_in_progress_window_s=0)
        pending = PendingOperations(tmp_path / "pending.sqlite")
        replayer = replayer_publishing_to(pending, client, [])
        try:
            [answer] = await replayer.ask(op(Operation.RESERVE, "10"), 0, 10)
            assert answer.verdict is Verdict.UNAVAILABLE
            await replayer.replay_all()
            await replayer.replay_all()
            failing_s = replayer.longest_failing_s()
            kept = len(pending)
        finally:
            await client.close()
            pending.close()
    assert kept == 1, "the reservation the partner accepted is kept, asked again"
    assert failing_s > 0, "the stuck-operation gauge says nothing of it"
    warned = [r.getMessage() for r in caplog.records if "has not applied it yet" in r.getMessage()]
    assert len(warned) == 1, warned
