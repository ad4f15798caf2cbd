"""Found by the review of stop 54's changes:
since stop 54 a check or reservation answered 400/422 counts against the
circuit, once per document call. One declaration the partner cannot read (its lines fail
the partner's validation: 422 to each of its document calls), quoting as many documents
as the failure threshold, opens the circuit for everybody: the next trader's check, which
the partner would have answered, is not sent (UNAVAILABLE, degraded) and the health
says the partner is failing though it answers every other call."""

from __future__ import annotations

from aiohttp import web

from gun_contract.health import CircuitStatus
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Verdict
from tests.adapter_fixtures import many_documents_request, partner_request
from tests.partner_fixtures import partner_client, serving

ODD = "26FR000690I0000666"


async def test_one_unreadable_declaration_does_not_open_the_circuit_for_all() -> None:
    calls: list[str] = []

    async def partner(request: web.Request) -> web.Response:
        calls.append(request.path)
        if ODD in request.path:
            return web.json_response(
                {"error": "lines[0].commodity_code: not in our nomenclature"}, status=422
            )
        return web.json_response({"result": "ACCEPTED"})

    async with serving(partner) as url:
        client = partner_client(url)  # defaults: threshold 5, 3 attempts
        try:
            odd = await client.answer(many_documents_request(ODD, 5, Operation.CHECK))
            assert {a.verdict for a in odd} == {Verdict.UNAVAILABLE}
            before = len(calls)
            [other] = await client.answer(partner_request(Operation.CHECK))
            assert other.verdict is Verdict.VALID, other.detail
            assert client.circuit_state is CircuitStatus.CLOSED, (
                f"one declaration's 5 documents answered 422 opened the circuit "
                f"({client.circuit_state}); the next declaration's check was answered "
                f"{other.verdict.value} ({other.detail!r}), {len(calls) - before} call(s) sent "
                "for it, though the partner answers it"
            )
        finally:
            await client.close()
