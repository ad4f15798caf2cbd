"""Found by the review of stop 54:
a check answered **202 Accepted** is remembered as a call the partner may
still apply (``_attempt_once`` marks every keyed call ``unanswered`` on a 202), though a
check changes nothing at the partner and nothing ever settles its key: each one takes a
place among the keys the partner may be applying (``KeysInFlight``, 100,000 at most, the
oldest dropped first), and an asynchronous partner answering 202 to its checks pushes out
the key of a deletion that timed out and waits queued. The deletion is then no longer a
call the partner may still apply: not named in the commits (SF2), and the partner's 409
"still processing" to its replay reads as a rejection (FOLLOW_UP_FAILED while the partner
deletes), the stop-47 defect back through 202s. The bound is shrunk here to 10 keys (the
ratio kept), as the stop-47 tests do."""

from __future__ import annotations

import asyncio

from aiohttp import web

from adapters.base.keys_in_flight import KeysInFlight
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Verdict
from tests.adapter_fixtures import partner_request
from tests.partner_fixtures import partner_client, serving

DOC = "CHEDP.FR.2026.0001234"
DECL = "26FR000690I0000R12"


async def test_checks_answered_202_do_not_push_out_a_deletion_the_partner_may_still_apply() -> None:
    async def partner(request: web.Request) -> web.Response:
        await request.read()
        if request.method == "DELETE":
            await asyncio.sleep(2)  # processed, its answer too late for the client
            return web.json_response({"result": "DONE", "code": "01"})
        return web.json_response({"result": "PROCESSING"}, status=202)

    async with serving(partner) as url:
        client = partner_client(
            url, partner_timeout_s=0.3, retry_attempts=1, circuit_failure_threshold=100
        )
        client._keys_in_flight = KeysInFlight(kept=1)  # 10 keys the partner may be applying
        try:
            deletion = partner_request(
                Operation.DELETE, reference=DECL, document=DOC, quantity=None
            )
            [deleted] = await client.answer(deletion)
            assert deleted.verdict is Verdict.UNAVAILABLE, deleted.detail
            assert client.may_still_apply(deletion)
            checks = [
                partner_request(Operation.CHECK, reference=f"{DECL[:-2]}{n:02d}", document=DOC)
                for n in range(10)
            ]
            for check in checks:
                [checked] = await client.answer(check)
                assert checked.verdict is Verdict.UNAVAILABLE
            check_kept = client.may_still_apply(checks[-1])
            deletion_kept = client.may_still_apply(deletion)
        finally:
            await client.close()
    assert deletion_kept, (
        "ten checks answered 202 pushed the deletion that timed out out of the keys the "
        f"partner may be applying (a check answered 202 is kept as one too: {check_kept}): "
        "its replay's 409 'still processing' now reads as a rejection"
    )
