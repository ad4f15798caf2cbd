"""The customs officers' pages, on a listener of their own (``GUN_HUB_WEB__OFFICER_PORT``).

Every path needs officer credentials (HTTP basic, checked against the officers file by
:class:`~gun_hub.security.web_auth.OfficerGate`); a browser asks for them once.

* ``/declarations/{reference}``: a declaration's state and history as recorded;
* ``/stats[?from=&to=]``: decisions by outcome, day, authority and document code, and
  dead letters, over at most ``stats_max_days`` (default: the last ``stats_default_days``);
* ``/stats/declarants/{eori}/documents[?limit=&offset=|after=]``: a declarant's documents,
  paged by offset or by cursor;
* ``/stats/written-off[?document=&limit=&offset=|after=]``: quantities written off, paged
  by offset or by cursor;
* ``/dashboard`` (and its script, styles and icon) and ``/api/dashboard``;
* ``/dead-letters`` and below: the dead-letter desk (:mod:`gun_hub.web.dead_letters`);
* ``/rollout`` and below: the authorities' rollout modes and the pilot report
  (:mod:`gun_hub.web.rollout`).

Every question to the view runs off the event loop (:mod:`gun_hub.web.queries`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from aiohttp import web

from gun_hub.ops.dashboard import DASHBOARD_ASSETS, live_figures, view_figures
from gun_hub.ops.lag_metrics import OpsState
from gun_hub.ops.view import documents_key, written_off_key
from gun_hub.security.client_address import PEERS_ONLY, ClientAddresses
from gun_hub.security.web_auth import OfficerGate, Unauthenticated
from gun_hub.web.common import (
    DOCUMENT,
    EORI,
    REFERENCE,
    BadRequest,
    Bounds,
    RefusalLog,
    after,
    answer,
    day,
    from_view,
    next_page,
    page,
    paged,
    refuse,
)
from gun_hub.web.dead_letters import OFFICER, DeadLetterDesk, add_dead_letter_routes
from gun_hub.web.queries import ViewReader
from gun_hub.web.rollout import RolloutDesk, add_rollout_routes

log = logging.getLogger(__name__)

_CHALLENGE = 'Basic realm="gun-hub officers", charset="UTF-8"'
# The dashboard's view figures are shared by every open page for this long.
_DASHBOARD_CACHE_S = 1.0
# The same statistics asked again within this long get the same answer, and the same
# question asked while it is being answered waits for that answer (one computation).
_STATS_SHARED_S = 5.0
_STATS_REMEMBERED = 32
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")


class Recent(Generic[T]):
    """Answers shared between identical questions: one computation in flight per key,
    its answer kept ``ttl_s`` (a refusal, 503, is never kept)."""

    def __init__(self, ttl_s: float, most: int = _STATS_REMEMBERED) -> None:
        self._ttl_s = ttl_s
        self._most = most
        self._entries: dict[Hashable, tuple[float, asyncio.Future[T | web.Response]]] = {}

    async def answer(
        self, key: Hashable, compute: Callable[[], Awaitable[T | web.Response]]
    ) -> T | web.Response:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is None or (entry[1].done() and entry[0] <= now):
            for old in [k for k, (until, f) in self._entries.items() if f.done() and until <= now]:
                del self._entries[old]
            if len(self._entries) >= self._most:
                return await compute()  # too many different questions: none shared
            entry = (now + self._ttl_s, asyncio.ensure_future(compute()))
            self._entries[key] = entry
            entry[1].add_done_callback(lambda done: self._forget_refusal(key, done))
        return await asyncio.shield(entry[1])

    def _forget_refusal(self, key: Hashable, done: asyncio.Future[T | web.Response]) -> None:
        if (
            done.cancelled()
            or done.exception() is not None
            or isinstance(done.result(), web.Response)
        ):
            entry = self._entries.get(key)
            if entry is not None and entry[1] is done:
                del self._entries[key]


def officer_app(
    reader: ViewReader | None,
    officers: OfficerGate,
    state: OpsState,
    bounds: Bounds,
    *,
    today: Callable[[], Any] = lambda: datetime.now(UTC).date(),
    desk: DeadLetterDesk | None = None,
    rollout: RolloutDesk | None = None,
    clients: ClientAddresses = PEERS_ONLY,
) -> web.Application:
    """The aiohttp application of the officer listener; ``clients`` says whose request it
    is behind a trusted proxy (a wrong password holds that client's sign-ins)."""
    recent: Recent[dict[str, Any]] = Recent(_STATS_SHARED_S)
    refusals = RefusalLog(log, "officer")

    @web.middleware
    async def officers_only(request: web.Request, handler: Handler) -> web.StreamResponse:
        client = clients.client(request.remote, request.headers.getall("X-Forwarded-For", []))
        try:
            request[OFFICER] = await officers.verify(
                request.headers.get("Authorization"), client=client
            )
        except Unauthenticated as refused:
            refusals.refused(client, refused.reason, str(refused))
            if refused.reason == "busy":
                return refuse(503, "too many sign-ins at once: try again", {"Retry-After": "1"})
            if refused.reason == "throttled":
                wait = max(1, math.ceil(officers.retry_after(client)))
                return refuse(
                    429, "wrong credentials just now: try again later", {"Retry-After": str(wait)}
                )
            return refuse(401, "officer credentials are required", {"WWW-Authenticate": _CHALLENGE})
        try:
            return await handler(request)
        except BadRequest as err:
            return refuse(400, str(err))

    async def declaration(request: web.Request) -> web.StreamResponse:
        reference = request.match_info["reference"]
        if not REFERENCE.fullmatch(reference):
            return refuse(400, "not a declaration reference", reference=reference[:40])
        found = await from_view(reader, lambda q: q.declaration(reference), "declaration")
        if isinstance(found, web.Response):
            return found
        if found is None:
            return refuse(404, "unknown declaration", reference=reference)
        return answer(found)

    async def stats(request: web.Request) -> web.StreamResponse:
        until = day(request.query.get("to"), "to") or today()
        try:
            since = day(request.query.get("from"), "from") or until - timedelta(
                days=bounds.stats_default_days - 1
            )
        except OverflowError:  # a "to" in year 1: the default range begins before it
            raise BadRequest("to: too early for the default range; give from") from None
        if since > until:
            raise BadRequest("from: after to")
        if (until - since).days + 1 > bounds.stats_max_days:
            raise BadRequest(f"from-to: at most {bounds.stats_max_days} days at once")
        found = await recent.answer(
            (since, until),
            lambda: from_view(
                reader,
                lambda q: q.statistics(
                    since,
                    until,
                    max_codes=bounds.page_size_max,
                    max_dead_letter_kinds=bounds.page_size_max,
                ),
                "statistics",
            ),
        )
        return found if isinstance(found, web.Response) else answer(found)

    async def declarant_documents(request: web.Request) -> web.StreamResponse:
        eori = request.match_info["eori"]
        if not EORI.fullmatch(eori):
            return refuse(400, "not an EORI number", eori=eori[:20])
        limit, offset = page(request.query, bounds)
        start = after(request.query, (str, str, str))
        found = await from_view(
            reader,
            lambda q: q.documents_of_declarant(eori, limit=limit + 1, offset=offset, after=start),
            "declarant_documents",
        )
        if isinstance(found, web.Response):
            return found
        rows, following = paged(found, limit, offset)
        return answer(
            {"declarant": eori, "documents": rows}
            | next_page(rows, following, start, documents_key)
        )

    async def written_off(request: web.Request) -> web.StreamResponse:
        document = request.query.get("document")
        if document is not None and not DOCUMENT.fullmatch(document):
            return refuse(400, "not a document reference", document=document[:40])
        limit, offset = page(request.query, bounds)
        start = after(request.query, (str, str, str, int, str))
        found = await from_view(
            reader,
            lambda q: q.written_off(document, limit=limit + 1, offset=offset, after=start),
            "written_off",
        )
        if isinstance(found, web.Response):
            return found
        rows, following = paged(found, limit, offset)
        return answer({"written_off": rows} | next_page(rows, following, start, written_off_key))

    cached: dict[str, Any] = {"at": -_DASHBOARD_CACHE_S, "figures": {}}

    async def dashboard_data(request: web.Request) -> web.StreamResponse:
        now = time.time()
        figures = live_figures(state, now)
        if reader is not None:
            if now - cached["at"] >= _DASHBOARD_CACHE_S:
                found = await from_view(reader, lambda q: view_figures(q, now), "dashboard")
                if isinstance(found, web.Response):
                    return found
                cached.update(at=now, figures=found)
            figures.update(cached["figures"])
        if rollout is not None and rollout.settings_read():
            # Not before the worker read the modes in force: every authority would show
            # enforced (review of stop 47). The page shows none meanwhile.
            figures["rollout"] = rollout.modes()
        return answer(figures)

    app = web.Application(middlewares=[officers_only], client_max_size=8 * 1024)
    add = app.router.add_get
    add("/declarations/{reference:.+}", declaration, allow_head=False)
    add("/stats", stats, allow_head=False)
    add("/stats/declarants/{eori}/documents", declarant_documents, allow_head=False)
    add("/stats/written-off", written_off, allow_head=False)
    add("/api/dashboard", dashboard_data, allow_head=False)
    add_dead_letter_routes(app, reader, desk, bounds)
    add_rollout_routes(app, reader, rollout)
    for path, (content_type, body) in DASHBOARD_ASSETS.items():
        add(path, _asset(content_type, body), allow_head=False)
    return app


def _asset(content_type: str, body: bytes) -> Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=body,
            headers={
                "Content-Type": content_type,
                # The page runs only its own script and styles, and talks only to the hub.
                "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-cache",
            },
        )

    return serve
