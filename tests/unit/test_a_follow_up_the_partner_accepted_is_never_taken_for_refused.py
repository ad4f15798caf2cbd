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
partner simulator that answers 202 and applies later (an asynchronous partner)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import aiohttp
from aiohttp import web

from adapters.base.pending import PendingOperations
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
    apply_now = asyncio.Event()
    applied_later: list[asyncio.Task[None]] = []
    accepted: set[str] = set()  # keys the partner took for processing, not applied yet
    applied: set[str] = set()  # keys it applied: a repeat gets their remembered answer
    async with (
        running_partner(samples / "partners" / "dgal-documents.json", tmp_path / "l.db") as sim,
        aiohttp.ClientSession() as upstream,
    ):
        forward = forwarder(upstream, sim.url)

        async def later(request: web.Request, body: bytes, key: str) -> None:
            await apply_now.wait()
            await forward(request, body)
            accepted.discard(key)
            applied.add(key)

        async def partner(request: web.Request) -> web.Response:
            body = await request.read()
            key = request.headers.get("Idempotency-Key", "")
            if key in accepted:
                return web.json_response(
                    {"error": "a request with this Idempotency-Key is being processed"},
                    status=409,
                )
            if request.path.endswith("/write-off") and key not in applied:
                accepted.add(key)
                applied_later.append(asyncio.create_task(later(request, body, key)))
                return web.json_response({"result": "PROCESSING"}, status=202)
            return await forward(request, body)

        async with serving(partner) as url:
            client = partner_client(
                url,
                retry_attempts=2,
                retry_backoff_base_s=0.01,
                partner_in_progress_window_s=WINDOW_S,
            )
            pending = PendingOperations(tmp_path / "pending.sqlite")
            published: Published = []
            replayer = replayer_publishing_to(pending, client, published)
            try:
                [reserved] = await client.answer(op(Operation.RESERVE, "10"))
                assert reserved.verdict is Verdict.VALID, reserved.detail
                [write_off] = await replayer.ask(op(Operation.WRITE_OFF, "10"), 0, 10)
                assert write_off.verdict is Verdict.UNAVAILABLE, write_off.detail
                await asyncio.sleep(WINDOW_S + 0.2)  # the partner takes its time
                [give_back] = await replayer.ask(op(Operation.GIVE_BACK), 0, 11)
                await replayer.replay_all()
                apply_now.set()  # the partner applies the write-off it accepted
                await asyncio.gather(*applied_later)
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
