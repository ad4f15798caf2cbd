"""The gateway's probes and metrics, on a listener of their own
(``GUN_HUB_GATEWAY__PROBES_PORT``; 0: none), never on the traders' lodging port.

``/livez``: the process answers; ``/readyz``: its producer is up (it can lodge) and its
channel names nothing in its way (a drop folder refused); ``/metrics``: Prometheus
(``gun_hub_gateway_lodgements_total``, ``gun_hub_gateway_drop_folder_refused`` and the web
refusals).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gun_hub.gateway.lodging import Gateway


def probes_app(
    gateway: Gateway, not_ready: Callable[[], list[str]] | None = None
) -> web.Application:
    """``not_ready``: what else keeps the channel from working, one text each."""

    async def livez(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        waiting = [] if gateway.ready else ["producer not started"]
        if not_ready is not None:
            waiting += not_ready()
        if waiting:
            return web.json_response({"status": "not ready", "waiting": waiting}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=1024)
    app.router.add_get("/livez", livez, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    app.router.add_get("/metrics", metrics, allow_head=False)
    return app
