"""A 504 (or 502) is a gateway saying the partner did not answer it in time, not the
partner turning the call down: the call may have reached the partner, which may apply it
later. A reservation so answered is kept queued like one whose call timed out, and its
declaration's deletion waits behind it. Found by review, stop 39-SF (SF3): behind a
gateway answering 504 while the partner went on, the reservation was forgotten, the
refused declaration's DELETE went first (``02``, no reservation: RESERVATION_DELETED),
then the partner applied the reservation: 10 held for a refused declaration for ever.

A 503, a 429 or a refused connection still says "not received": such a reservation is
not kept (tests/unit/test_a_reservation_the_partner_still_processes_is_not_overtaken_by_
its_follow_up.py::test_a_reservation_the_partner_turned_down_or_never_got_is_not_kept)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from adapters.base.pending import PendingOperations
from adapters.base.replay import Replayer
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from gun_contract.model.verdicts import Verdict
from tests.adapter_fixtures import partner_request
from tests.partner_fixtures import forwarder, partner_client, running_partner, serving

DOC = "CHEDP.FR.2026.0001234"
DECL = "26FR000690I0000701"


def op(operation: Operation, quantity: str | None = None) -> AuthorityRequest:
    return partner_request(operation, reference=DECL, version=1, document=DOC, quantity=quantity)


@pytest.mark.parametrize("gateway_status", [502, 504])
async def test_a_reservation_answered_by_a_gateway_timeout_is_not_overtaken_by_its_deletion(
    samples: Path, tmp_path: Path, gateway_status: int
) -> None:
    forwarded: list[asyncio.Task[None]] = []
    slow = asyncio.Event()  # set: the gateway times out and forwards late
    slow.set()
    async with (
        running_partner(samples / "partners" / "dgal-documents.json", tmp_path / "l.db") as sim,
        aiohttp.ClientSession() as upstream,
    ):
        forward = forwarder(upstream, sim.url)

        async def late(request: web.Request, body: bytes) -> None:
            await asyncio.sleep(0.5)  # the partner is slow: applies it after the gateway gave up
            await forward(request, body)

        async def gateway(request: web.Request) -> web.Response:
            body = await request.read()
            if slow.is_set():
                forwarded.append(asyncio.create_task(late(request, body)))
                return web.Response(status=gateway_status, text="upstream timed out")
            return await forward(request, body)

        async with serving(gateway) as url:
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
                assert reserve.verdict is Verdict.UNAVAILABLE
                [delete] = await replayer.ask(op(Operation.DELETE), 0, 11)
                # Queued behind the reservation the partner may still apply, not sent.
                assert delete.verdict is Verdict.UNAVAILABLE, delete.detail
                assert [r.operation for r in pending.queued(DECL)] == [
                    Operation.RESERVE,
                    Operation.DELETE,
                ]
                await asyncio.gather(*forwarded)  # the partner applied the reservation
                assert sim.store.balances(DOC)[0].reserved == Decimal(10)
                slow.clear()  # the partner is quick again
                await replayer.replay_all()
                left = len(pending)
            finally:
                await client.close()
                pending.close()
        reserved = sim.store.balances(DOC)[0].reserved
    # The reservation settled (its key's remembered answer), then the deletion found it.
    assert published == [(op(Operation.DELETE).request_id, Verdict.VALID, "01")]
    assert left == 0
    assert reserved == Decimal(0)
