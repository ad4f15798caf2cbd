"""Lodging over HTTP: ``POST /declarations`` (``gun-hub intake serve``).

The caller is a trader (or its declarant system) with a token from the clearance portal,
checked as the status lookup checks it (ADR 0007), and the body is the declaration XML
(``Content-Type: application/xml``). In order, nothing else looked at once one fails:

* no token, or one that does not verify: 401;
* a token that does not grant the lodging scope (``GUN_HUB_GATEWAY__LODGING_SCOPE``,
  ``gun:lodge``; a lookup token, such as one given to a read-only integration): 403
  ``INSUFFICIENT_SCOPE`` (RFC 6750 section 3.1);
* the token's trader has its share of the lodgements in flight under way
  (``GUN_HUB_GATEWAY__MAX_IN_FLIGHT_PER_TRADER``, by default a quarter of them): 429,
  ``Retry-After``;
* busy (``GUN_HUB_GATEWAY__MAX_IN_FLIGHT`` lodgements under way): 503, ``Retry-After``;
* not XML, or a charset other than UTF-8: 415;
* a body over the hub's size limit: 413, before it is read (``Content-Length``) or as
  soon as it passes the limit (chunked);
* a body not received whole within 30 s, or of which nothing arrives for 10 s: 408;
* a body badly framed (chunked): 400; one whose client went away: no answer;
* a declaration the hub would refuse: 400 with the hub's kind and precise reason
  (413 for ``DECLARATION_TOO_LARGE_TO_DECIDE``);
* a declarant other than the token's EORI: 403 ``DECLARANT_MISMATCH``;
* sealed, more than one record carries: 413 ``DECLARATION_TOO_LARGE_TO_TRAVEL``;
* the broker does not confirm in time: 503 (lodging the same version again is safe);
* lodged: 202 with the reference, version and where to follow it: the trader lookup's
  ``/declarations/{reference}`` (``Location`` when ``GUN_HUB_GATEWAY__STATUS_URL`` is set).
  The decision follows on ``gun.decisions`` to the clearance system, like any other.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from gun_contract.counters import export_at_zero
from gun_hub.gateway.lodging import (
    DECLARANT_MISMATCH,
    LODGEMENTS,
    Gateway,
    LodgementRefused,
    Lodger,
    PublishFailed,
)
from gun_hub.pipeline.intake import REFERENCE_NOT_THE_DECLARANTS, STAGE_NOT_THE_DECLARANTS
from gun_hub.security.web_auth import TraderTokens, Unauthenticated, bearer_token, token_refusal
from gun_hub.web.common import OncePerSecond, RefusalLog, answer, refuse

log = logging.getLogger(__name__)

CHANNEL = "http"
_REALM = 'Bearer realm="gun-hub"'
_CHALLENGE = f'{_REALM}, error="invalid_token"'
_XML_TYPES = frozenset({"application/xml", "text/xml"})
_CHUNK = 64 * 1024
# A body not received whole within this long is answered 408: its place among the
# lodgements in flight goes to another (a trader's stalled uploads cannot hold them all).
BODY_TIMEOUT_S = 30.0
# Nor one of which nothing arrives for this long: a client that stopped sending (or one
# holding its places with stalled uploads) gives them back sooner than BODY_TIMEOUT_S.
BODY_IDLE_TIMEOUT_S = 10.0
TOO_MANY_IN_FLIGHT = "TOO_MANY_IN_FLIGHT"
INSUFFICIENT_SCOPE = "INSUFFICIENT_SCOPE"
# What a 403 of the check says of the trader, for the log (the answer has the reason).
_FORBIDDEN = {
    DECLARANT_MISMATCH: "it tried to lodge a declaration for another declarant",
    REFERENCE_NOT_THE_DECLARANTS: "its declaration's reference is outside its namespace",
    STAGE_NOT_THE_DECLARANTS: "it tried to lodge a stage only the customs office sets",
}


class _BodyIdle(Exception):
    """Nothing of the body arrived for the idle time."""


async def _body_within(request: web.Request, limit: int, idle_s: float) -> bytes | None:
    """The request body, or None as soon as it passes ``limit`` bytes; :class:`_BodyIdle`
    when nothing arrives for ``idle_s``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            async with asyncio.timeout(idle_s):
                chunk = await request.content.read(_CHUNK)
        except TimeoutError:
            raise _BodyIdle from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


def _refused(refusal: LodgementRefused) -> web.Response:
    return refuse(refusal.status, refusal.reason, kind=refusal.kind)


def lodging_app(
    gateway: Gateway,
    tokens: TraderTokens,
    *,
    scope: str | None,
    status_url: str | None = None,
    body_timeout_s: float = BODY_TIMEOUT_S,
    body_idle_timeout_s: float = BODY_IDLE_TIMEOUT_S,
) -> web.Application:
    """The aiohttp application of the lodging listener; a token lodges only if it grants
    ``scope`` (None: any token does, the operator's opt-out, warned at start)."""
    refusals = RefusalLog(log, "lodging")
    # ``gun_hub_gateway_lodgements_total`` counts every refusal; the log, one a second.
    over_share = OncePerSecond(log, "such")
    # A body its client cut short or framed badly is the client's doing, not a server
    # error: said at INFO, at most once a second, and counted.
    ended_badly = OncePerSecond(log, "such")
    # A 403 after the check, one log line a second for each kind of them: a trader with a
    # valid token posts small declarations faster than anyone reads a log.
    forbidden_lines: dict[str, OncePerSecond] = {}

    def forbidden(kind: str) -> OncePerSecond:
        return forbidden_lines.setdefault(kind, OncePerSecond(log, "such"))

    export_at_zero(
        LODGEMENTS,
        channel=[CHANNEL],
        result=[
            "lodged",
            "unpublished",
            "busy",
            "trader_busy",
            "body_timeout",
            "body_cut_short",
            "body_malformed",
        ],
    )

    def turned_away(result: str) -> None:
        LODGEMENTS.labels(channel=CHANNEL, result=result).inc()

    async def lodge(request: web.Request) -> web.StreamResponse:
        try:
            eori = tokens.verify(bearer_token(request.headers.get("Authorization")), scope=scope)
        except Unauthenticated as refused:
            refusals.refused(request.remote, refused.reason, str(refused))
            if refused.reason == "scope":  # a genuine token, that does not allow this
                return refuse(
                    403,
                    f"this token does not allow lodging: the clearance portal grants it with "
                    f"the scope {scope}",
                    {"WWW-Authenticate": f'{_REALM}, error="insufficient_scope", scope="{scope}"'},
                    kind=INSUFFICIENT_SCOPE,
                )
            return refuse(401, token_refusal(refused), {"WWW-Authenticate": _CHALLENGE})
        # The trader's share before the global bound: a trader holding its share hears
        # that it is the one to wait, whether or not the others fill the rest.
        if gateway.holds_its_share(eori):
            turned_away("trader_busy")
            over_share.log(
                logging.WARNING, "trader %s holds its share of the lodgements in flight", eori
            )
            share = gateway.trader_share
            return refuse(
                429,
                f"{eori} has {share} declaration{'s' if share > 1 else ''} being lodged "
                "already, the most one trader may have at once: send again once one is "
                "answered",
                {"Retry-After": "1"},
                kind=TOO_MANY_IN_FLIGHT,
            )
        if gateway.busy:
            turned_away("busy")
            return refuse(503, "too many declarations at once: send again", {"Retry-After": "1"})
        if request.content_type not in _XML_TYPES:
            return refuse(415, "the body must be declaration XML (Content-Type: application/xml)")
        charset = request.charset or "utf-8"
        if charset.lower() != "utf-8":
            return refuse(415, f"charset {charset[:20]!r}: the contract is UTF-8")
        declared = request.content_length
        if declared is not None and declared > gateway.max_bytes:
            return _refused(gateway.too_large(CHANNEL, declared))
        # Counted from the body's first byte: a body being received holds memory (stop
        # 30, found by review: counted once read, slow uploads were unbounded), and
        # toward the trader's share (stop 37, found by review: one trader's slow uploads
        # held every place).
        with gateway.in_flight(eori):
            try:
                async with asyncio.timeout(body_timeout_s):
                    body = await _body_within(request, gateway.max_bytes, body_idle_timeout_s)
            except TimeoutError:
                turned_away("body_timeout")
                return refuse(408, f"the body did not arrive within {body_timeout_s:g} s")
            except _BodyIdle:
                turned_away("body_timeout")
                return refuse(408, f"no part of the body arrived for {body_idle_timeout_s:g} s")
            # Before the review of the intake gateway both escaped the handler: aiohttp
            # logged each at ERROR with a traceback, and the lodgement was counted nowhere.
            except BadHttpMessage as bad:  # its chunked framing, say
                turned_away("body_malformed")
                why = " ".join(bad.message.split())  # aiohttp's spans lines
                ended_badly.log(logging.INFO, "trader %s sent a badly framed body: %s", eori, why)
                return refuse(400, f"the body is not framed as HTTP/1.1 says: {why}")
            except ConnectionResetError:  # the client went away mid-body: nobody to answer
                turned_away("body_cut_short")
                ended_badly.log(
                    logging.INFO, "trader %s went away before its body arrived whole", eori
                )
                return web.Response(status=400)
            if body is None:
                return _refused(gateway.too_large(CHANNEL))
            return await lodged_answer(body, eori)

    async def lodged_answer(body: bytes, eori: str) -> web.StreamResponse:
        try:
            lodged = await gateway.lodge(
                body,
                Lodger("the portal token's trader", frozenset({eori})),
                channel=CHANNEL,
                counted=True,
            )
        except LodgementRefused as refusal:
            if refusal.status == 403:
                forbidden(refusal.kind).log(
                    logging.WARNING,
                    "trader %s answered 403 %s: %s (at most one such line a second)",
                    eori,
                    refusal.kind,
                    _FORBIDDEN.get(refusal.kind, "not the trader's to lodge"),
                )
            return _refused(refusal)
        except PublishFailed as failure:
            log.warning("lodgement not confirmed: %s", failure)
            return refuse(
                503,
                "the declaration was not confirmed by the broker in time: send it again "
                "(a version already lodged is decided once)",
                {"Retry-After": "2"},
            )
        status = f"/declarations/{lodged.reference}"
        headers = {"Location": status_url.rstrip("/") + status} if status_url else None
        return answer(
            {
                "reference": lodged.reference,
                "version": lodged.version,
                "declarant": lodged.declarant,
                "status": status,
            },
            202,
            headers,
        )

    # Bodies are read by _body_within, which stops at the limit; aiohttp's own limit
    # applies only to request.read(), never called here.
    app = web.Application()
    app.router.add_post("/declarations", lodge)
    return app
