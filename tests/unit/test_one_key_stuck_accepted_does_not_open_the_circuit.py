"""Found by the review of stop 54's changes:
since stop 54 a key the partner still answers 202 past
``partner_in_progress_window_s`` counts against the circuit at every attempt. A partner
that applies every call but one (one declaration's reservation stuck "accepted" at its
end) has its circuit opened by that one declaration's replay: each attempt of its two
documents' keys (3 attempts each) is a failure in a row, and the next trader's check,
which the partner answers at once, is answered UNAVAILABLE without being sent."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gun_contract.health import CircuitStatus
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Verdict
from tests.adapter_fixtures import many_documents_request, partner_request
from tests.partner_fixtures import partner_client, serving

STUCK = "26FR000690I0000777"


async def test_one_declaration_stuck_accepted_does_not_open_the_circuit_for_all() -> None:
    async def partner(request: web.Request) -> web.Response:
        if STUCK in request.path:
            return web.json_response({"result": "PROCESSING"}, status=202)
        return web.json_response({"result": "ACCEPTED"})

    async with serving(partner) as url:
        client = partner_client(
            url,
            partner_in_progress_window_s=0.2,
            retry_backoff_base_s=0.01,
            retry_backoff_cap_s=0.02,
        )  # threshold 5, 3 attempts
        try:
            stuck = many_documents_request(STUCK, 2)
            first = await client.answer(stuck)
            assert {a.verdict for a in first} == {Verdict.UNAVAILABLE}
            assert client.circuit_state is CircuitStatus.CLOSED
            await asyncio.sleep(0.3)  # past the window: the replay round asks it again
            await client.answer(stuck)
            [other] = await client.answer(partner_request(Operation.CHECK))
            assert other.verdict is Verdict.VALID, other.detail
            assert client.circuit_state is CircuitStatus.CLOSED, (
                f"one declaration's reservation stuck at 202 opened the circuit "
                f"({client.circuit_state.value}) of a partner answering everything else; "
                f"the next check: {other.verdict.value} ({other.detail!r})"
            )
        finally:
            await client.close()
