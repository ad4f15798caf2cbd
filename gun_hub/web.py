"""The hub's web endpoints on faust's server.

* ``/livez``: the process answers; ``/readyz``: it processes (partitions assigned,
  producers up, tables recovered); ``/metrics``: Prometheus.
* ``/declarations/{reference}``: where a declaration stands (the trader's lookup).
* ``/stats``, ``/stats/declarants/{eori}/documents``, ``/stats/written-off``: figures.
* ``/dashboard``: the live operations page, fed by ``/api/dashboard``.

faust's own ``/table`` (it would publish case contents), ``/router`` and ``/performance``
endpoints are switched off in :func:`gun_hub.app.build_hub`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gun_hub.ops.dashboard import DASHBOARD_ASSETS
from gun_hub.ops.prometheus import OpsState
from gun_hub.ops.view import OpsView

# The declaration reference and EORI formats of the contract (schemas/common-types.xsd).
REFERENCE = re.compile(r"[0-9A-Z][0-9A-Z._/\-]{5,34}")
EORI = re.compile(r"[A-Z]{2}[0-9A-Z]{1,15}")
DOCUMENT = re.compile(r"[0-9A-Za-z][0-9A-Za-z._/\-]{0,69}")
_THROUGHPUT_WINDOW_S = 10.0

Handler = Callable[..., Any]


def register_web_views(
    app: faust.App,
    view: OpsView | None,
    state: OpsState,
    *,
    ready: Callable[[], list[str]],
    dashboard: bool = True,
) -> None:
    """Add the hub's pages to its faust app."""

    def page(path: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            app.page(path)(handler)
            return handler

        return register

    @page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type=, so the header is set whole.
        return web.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @page("/livez")
    async def livez(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        try:
            waiting = ready()
        except Exception as err:  # noqa: BLE001 - not started far enough to tell
            waiting = [f"starting ({type(err).__name__})"]
        if waiting:
            return web.json({"status": "not ready", "waiting": waiting}, status=503)
        return web.json({"status": "ready"})

    @page("/declarations/{reference:.+}")
    async def declaration(web: Any, request: Any, reference: str) -> Any:
        if view is None:
            return web.error(503, "the status view is switched off on this worker")
        if not REFERENCE.fullmatch(reference):
            return web.error(400, "not a declaration reference", reference=reference[:40])
        found = view.declaration(reference)
        if found is None:
            return web.error(404, "unknown declaration", reference=reference)
        return web.json(found)

    @page("/stats")
    async def stats(web: Any, request: Any) -> Any:
        if view is None:
            return web.error(503, "the statistics view is switched off on this worker")
        try:
            since = _day(request.query.get("from"))
            until = _day(request.query.get("to"))
        except ValueError as err:
            return web.error(400, str(err))
        return web.json(view.statistics(since, until))

    @page("/stats/declarants/{eori}/documents")
    async def declarant_documents(web: Any, request: Any, eori: str) -> Any:
        if view is None:
            return web.error(503, "the statistics view is switched off on this worker")
        if not EORI.fullmatch(eori):
            return web.error(400, "not an EORI number", eori=eori[:20])
        return web.json({"declarant": eori, "documents": view.documents_of_declarant(eori)})

    @page("/stats/written-off")
    async def written_off(web: Any, request: Any) -> Any:
        if view is None:
            return web.error(503, "the statistics view is switched off on this worker")
        document = request.query.get("document")
        if document is not None and not DOCUMENT.fullmatch(document):
            return web.error(400, "not a document reference", document=document[:40])
        return web.json({"written_off": view.written_off(document)})

    if dashboard:
        for path, (content_type, body) in DASHBOARD_ASSETS.items():
            app.page(path)(_asset(content_type, body))

        @page("/api/dashboard")
        async def dashboard_data(web: Any, request: Any) -> Any:
            return web.json(dashboard_figures(view, state))


def _asset(content_type: str, body: bytes) -> Handler:
    async def serve(web: Any, request: Any) -> Any:
        return web.bytes(
            body,
            headers={
                "Content-Type": content_type,
                # The page runs only its own script and styles, and talks only to the hub.
                "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-cache",
            },
        )

    return serve


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO date (YYYY-MM-DD): {text[:20]!r}") from None


def dashboard_figures(view: OpsView | None, state: OpsState) -> dict[str, Any]:
    """Everything the dashboard shows, in one document."""
    now = time.time()
    figures: dict[str, Any] = {"at": datetime.now(UTC).isoformat()}
    if view is not None:
        # Polled every second by each open page: two small aggregates, not the statistics.
        by_outcome = view.outcome_counts()
        figures["decisions"] = by_outcome
        figures["decisions_total"] = sum(by_outcome.values())
        figures["throughput_per_s"] = round(
            view.decisions_since(now - _THROUGHPUT_WINDOW_S) / _THROUGHPUT_WINDOW_S, 1
        )
        figures["dead_letters"] = view.dead_letter_counts()
        figures["recent_dead_letters"] = view.recent_dead_letters(8)
    lag = state.lag
    figures["lag"] = (
        {
            "at": lag.at.isoformat(),
            "groups": [group.model_dump() for group in lag.groups],
        }
        if lag is not None
        else None
    )
    figures["partners"] = [
        {
            "authority": authority,
            "circuit": health.circuit.value,
            "pending_operations": health.pending_operations,
            "heartbeat_age_s": round(max(0.0, now - health.at.timestamp()), 1),
            "stale": now - health.at.timestamp() > 3 * health.every_s,
        }
        for authority, health in sorted(state.partners.items())
    ]
    return figures
