"""Found by the review of stop 54:
after an outage with no answer (the partner unreachable), the adapter's own
trial (GET of a document no declaration can quote) closes the circuit on any 200 whose
body is a JSON object, though the contract's answer to that lookup is NOT_FOUND (or the
document). A partner back behind a maintenance front that answers every path 200
``{"status": "maintenance"}`` (the very answer review of stop 47 made count against the
circuit for a real call) has its circuit closed by the trial within a reset: the
heartbeat says ``closed`` and ``GunHubPartnerCircuitOpen`` clears while every declaration's
call is answered UNAVAILABLE. With no traffic nothing reopens it."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gun_contract.health import CircuitStatus
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Verdict
from tests.adapter_fixtures import partner_request
from tests.partner_fixtures import partner_client, serving
from tests.unit.test_a_circuit_opened_by_an_outage_closes_once_the_partner_is_back import (
    stays_not_closed,
)

RESET_S = 0.3


@dataclass
class Front:
    down: bool = True
    trials: int = 0  # the adapter's own lookups answered by the front

    async def handle(self, request: web.Request) -> web.Response:
        if self.down:
            assert request.transport is not None
            request.transport.close()  # no answer: the partner unreachable
            return web.Response()
        # Back, behind a maintenance front: 200 and a JSON page for every path.
        self.trials += request.method == "GET"
        return web.json_response({"status": "maintenance", "message": "back at 06:00"})


async def test_a_trial_answered_200_off_contract_does_not_close_the_circuit() -> None:
    front = Front()
    async with serving(front.handle) as url:
        partner = partner_client(
            url,
            circuit_failure_threshold=1,
            circuit_reset_s=RESET_S,
            retry_attempts=1,
            partner_timeout_s=1,
        )
        try:
            [answer] = await partner.answer(partner_request(Operation.RESERVE))
            assert answer.verdict is Verdict.UNAVAILABLE
            assert partner.circuit_state is CircuitStatus.OPEN
            front.down = False  # the maintenance front answers; no declaration comes
            await stays_not_closed(partner, 6 * RESET_S)
        finally:
            await partner.close()
    assert front.trials > 0, "no trial was made: the test proved nothing"


async def test_what_a_real_call_gets_from_that_front_is_unavailable() -> None:
    """The same answer to a declaration's reservation is no answer (stop 47): the partner
    is not serving, which is what the circuit should keep saying."""
    front = Front(down=False)
    async with serving(front.handle) as url:
        partner = partner_client(url, circuit_failure_threshold=1, retry_attempts=1)
        try:
            [answer] = await partner.answer(partner_request(Operation.RESERVE))
            assert answer.verdict is Verdict.UNAVAILABLE
            assert partner.circuit_state is not CircuitStatus.CLOSED
        finally:
            await partner.close()
