"""The trader's lookup, on a listener of its own (``GUN_HUB_WEB__TRADER_PORT``).

``GET /declarations/{reference}`` with ``Authorization: Bearer <token>``, the token the
clearance portal gave the trader (:mod:`gun_hub.security.web_auth`, ADR 0007):

* no token, or one that does not verify: 401, and nothing else is looked at;
* a declaration the token's EORI did not lodge: 404 ``unknown declaration``, the very
  answer an unknown reference gets, so references cannot be probed;
* its own declaration: the state and dated history, with every trace of a confidential
  authority left out (:mod:`gun_hub.web.redaction`);
* more than ``at_once`` of one trader's lookups running or waiting: 429 to that trader
  alone (the listener's reader takes a few questions for everyone: one token keeping
  them all had every other trader answered 503; review stop 46).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from aiohttp import web

from gun_hub.security.client_address import PEERS_ONLY, ClientAddresses
from gun_hub.security.web_auth import TraderTokens, Unauthenticated, bearer_token, token_refusal
from gun_hub.web.common import REFERENCE, RefusalLog, answer, from_view, refuse
from gun_hub.web.queries import ViewReader
from gun_hub.web.redaction import trader_status

log = logging.getLogger(__name__)

_CHALLENGE = 'Bearer realm="gun-hub", error="invalid_token"'
_AGAIN = {"Retry-After": "1"}


def trader_app(
    reader: ViewReader | None,
    tokens: TraderTokens,
    confidential: Collection[str],
    clients: ClientAddresses = PEERS_ONLY,
    *,
    at_once: int = 2,
) -> web.Application:
    """The aiohttp application of the trader listener (``clients``: whose request a
    refusal is logged for, behind a trusted proxy; ``at_once``: one trader's lookups
    running or waiting at most)."""
    refusals = RefusalLog(log, "trader")
    # Per EORI, its lookups running or waiting (forgotten at none: bounded by the callers).
    in_flight: dict[str, int] = {}

    async def declaration(request: web.Request) -> web.StreamResponse:
        try:
            eori = tokens.verify(bearer_token(request.headers.get("Authorization")))
        except Unauthenticated as refused:
            client = clients.client(request.remote, request.headers.getall("X-Forwarded-For", []))
            refusals.refused(client, refused.reason, str(refused))
            return refuse(401, token_refusal(refused), {"WWW-Authenticate": _CHALLENGE})
        reference = request.match_info["reference"]
        if not REFERENCE.fullmatch(reference):
            return refuse(400, "not a declaration reference", reference=reference[:40])
        if in_flight.get(eori, 0) >= at_once:
            return refuse(429, "too many of your lookups at once: ask again", headers=_AGAIN)
        in_flight[eori] = in_flight.get(eori, 0) + 1
        try:
            # Redacted in the question's thread too: a long history is not the loop's work.
            found = await from_view(
                reader,
                lambda q: _status_of(reference, q.history_of_declarant(reference, eori)),
                "trader_declaration",
            )
        finally:
            in_flight[eori] -= 1
            if not in_flight[eori]:
                del in_flight[eori]
        if isinstance(found, web.Response):
            return found
        if found is None:
            return refuse(404, "unknown declaration", reference=reference)
        return answer(found)

    def _status_of(reference: str, history: list[dict[str, Any]] | None) -> dict[str, Any] | None:
        return None if history is None else trader_status(reference, history, confidential)

    app = web.Application(client_max_size=8 * 1024)
    app.router.add_get("/declarations/{reference:.+}", declaration, allow_head=False)
    return app
