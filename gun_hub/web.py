"""The hub's web endpoints on faust's server: metrics and liveness.

faust's own ``/table`` (it would publish case contents), ``/router`` and ``/performance``
endpoints are switched off in :func:`gun_hub.app.build_hub`.
"""

from __future__ import annotations

from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def register_web_views(app: faust.App) -> None:
    """Add the hub's pages to its faust app."""

    async def metrics(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type=, so the header is set whole.
        return web.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def livez(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    app.page("/metrics")(metrics)
    app.page("/livez")(livez)
