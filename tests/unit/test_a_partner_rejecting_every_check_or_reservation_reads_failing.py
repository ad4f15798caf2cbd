"""Found by the review of stop 54:
a partner that rejects every check or reservation (HTTP 400: its API changed
the body it reads, a validation layer in front of it) sends every declaration to degraded
mode (UNAVAILABLE: "never refuse a declaration for a call not read"), yet each rejection is
recorded as a success on the circuit breaker: the circuit and the heartbeat say the partner
is healthy (``closed``) for as long as nothing it is asked is applied, and
``GunHubPartnerCircuitOpen`` never fires. An answer that maps to no verdict for the
operation counts against the circuit when it is a 200 (review of stop 47); a rejection of a
check or reservation maps to no verdict either."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from adapters.base.certex import CertexHttpPartner
from gun_contract.health import CircuitStatus
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Verdict
from tests.adapter_fixtures import partner_request
from tests.partner_fixtures import partner_client, serving


def client(url: str, **settings: Any) -> CertexHttpPartner:
    return partner_client(
        url,
        **{"circuit_failure_threshold": 3, "circuit_reset_s": 30, "retry_attempts": 1, **settings},
    )


@pytest.mark.parametrize("status", [400, 422])
@pytest.mark.parametrize("operation", [Operation.RESERVE, Operation.CHECK])
async def test_a_partner_rejecting_every_reservation_does_not_read_healthy(
    status: int, operation: Operation
) -> None:
    async def rejecting(request: web.Request) -> web.Response:
        return web.json_response({"error": "body does not match schema v2"}, status=status)

    async with serving(rejecting) as url:
        partner = client(url)
        try:
            for n in range(5):
                [answer] = await partner.answer(
                    partner_request(operation, reference=f"26FR000690I000050{n}")
                )
                # Degraded mode for each declaration: nothing was checked or reserved.
                assert answer.verdict is Verdict.UNAVAILABLE
            # Five declarations in a row decided without the partner: it is not healthy.
            assert partner.circuit_state is not CircuitStatus.CLOSED, (
                f"every {operation.value} rejected HTTP {status} (UNAVAILABLE), yet the "
                "circuit (and so the heartbeat) reads closed"
            )
        finally:
            await partner.close()
