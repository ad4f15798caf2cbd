"""The probes and the metrics, on faust's own web server (``GUN_HUB_HUB__WEB_PORT``).

Nothing on this port names a declaration, a trader or a document: ``/livez`` (the process
answers), ``/readyz`` (it processes: partitions assigned, producers up, tables recovered, no
decision held unpublished past ``hub.publisher_stall_s``)
and ``/metrics`` (Prometheus; labels from small closed sets), beside faust's own ``/``
(``{"status": "OK"}``). Everything else, faust's ``/table``, ``/router``, ``/stats`` and
``/performance`` included, is absent (:func:`gun_hub.runtime.app.build_hub` switches those off;
``/stats`` and ``/graph`` follow faust's debug setting, off).

``gun-hub view`` (no faust) serves the same three paths on an aiohttp listener of its own
(:func:`probes_app`, ``GUN_HUB_OPS__VIEW_WEB_PORT``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
from aiohttp import web as aiohttp_web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

Handler = Callable[..., Any]


def register_probes(app: faust.App, ready: Callable[[], list[str]]) -> None:
    """Add ``/livez``, ``/readyz`` and ``/metrics`` to the hub's faust app."""

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


def probes_app(ready: Callable[[], list[str]]) -> aiohttp_web.Application:
    """``/livez``, ``/readyz`` (``ready()`` names what is awaited; empty: ready) and
    ``/metrics`` for a process without faust's web server."""

    async def livez(request: aiohttp_web.Request) -> aiohttp_web.Response:
        return aiohttp_web.json_response({"status": "ok"})

    async def readyz(request: aiohttp_web.Request) -> aiohttp_web.Response:
        waiting = ready()
        if waiting:
            return aiohttp_web.json_response(
                {"status": "not ready", "waiting": waiting}, status=503
            )
        return aiohttp_web.json_response({"status": "ready"})

    async def metrics(request: aiohttp_web.Request) -> aiohttp_web.Response:
        return aiohttp_web.Response(
            body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = aiohttp_web.Application(client_max_size=1024)
    app.router.add_get("/livez", livez, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    app.router.add_get("/metrics", metrics, allow_head=False)
    return app
