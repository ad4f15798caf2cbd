"""An adapter's own web endpoints: ``/livez``, ``/readyz`` and ``/metrics``.

Served on ``GUN_HUB_ADAPTER__METRICS_PORT`` (0: none) for Kubernetes probes and
Prometheus. Ready means: consuming its request topic with partitions assigned, and its
producer up; a partner that is down does not make the adapter unready (it answers
UNAVAILABLE promptly, which is its job), it shows in the heartbeat and the circuit state.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gun_contract.listening import PortNotBound


async def serve_health(host: str, port: int, waiting: Callable[[], list[str]]) -> web.AppRunner:
    """Start the endpoints; ``waiting`` says what keeps the adapter from being ready."""

    async def livez(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        reasons = waiting()
        if reasons:
            return web.json_response({"status": "not ready", "waiting": reasons}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as err:
        await runner.cleanup()
        raise PortNotBound(
            "adapter's probes", host, port, "GUN_HUB_ADAPTER__METRICS_PORT", err
        ) from None
    return runner
