"""Found by the review of stop 54's changes:
docs/adapters.md ("The partner's NOT_FOUND, the document, or a rejection of
the call close the circuit") and certex.TRIAL_REFERENCE's own comment ("the partner answers
NOT_FOUND (or, checking its format, 400), either an answer") say a partner that checks
reference formats closes the circuit with its 400 to the adapter's trial. Since stop 54
the trial is judged by ``_answers_the_lookup`` (404 NOT_FOUND or a document only): the 400
decides nothing, so after an outage with no traffic the circuit of such a partner, back
and answering, stays not closed (heartbeat, GunHubPartnerCircuitOpen): stop 41's defect."""

from __future__ import annotations

from aiohttp import web

from adapters.base.certex import TRIAL_REFERENCE
from gun_contract.health import CircuitStatus
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Verdict
from tests.adapter_fixtures import partner_request
from tests.partner_fixtures import serving
from tests.unit.test_a_circuit_opened_by_an_outage_closes_once_the_partner_is_back import (
    RESET_S,
    SLACK_S,
    client,
    closed_within,
    hung_up,
)


async def test_a_trial_rejected_400_for_its_format_closes_the_circuit() -> None:
    down = True

    async def partner(request: web.Request) -> web.Response:
        if down:
            return await hung_up(request)
        if request.method == "GET" and "~" in request.path:
            # Back, validating references: "~" is no reference of ours.
            return web.json_response(
                {"error": f"invalid document reference {TRIAL_REFERENCE!r}"}, status=400
            )
        return web.json_response({"result": "ACCEPTED"})

    async with serving(partner) as url:
        adapter = client(url)
        try:
            [answer] = await adapter.answer(partner_request(Operation.RESERVE))
            assert answer.verdict is Verdict.UNAVAILABLE
            assert adapter.circuit_state is CircuitStatus.OPEN
            down = False  # back; no declaration comes
            await closed_within(adapter, RESET_S + 3 * SLACK_S)
        finally:
            await adapter.close()
