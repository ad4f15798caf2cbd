"""The live operations dashboard: one page, its script and its styles, read once.

Plain HTML, CSS and JavaScript with no third-party code and no build step: the page polls
``/api/dashboard`` every second and writes figures with ``textContent`` only (nothing the
hub serves is interpreted as markup).
"""

from __future__ import annotations

from pathlib import Path

_ASSETS = Path(__file__).resolve().parent / "dashboard_assets"

# URL path -> (content type, body)
DASHBOARD_ASSETS: dict[str, tuple[str, bytes]] = {
    "/dashboard": ("text/html; charset=utf-8", (_ASSETS / "dashboard.html").read_bytes()),
    "/dashboard.js": (
        "text/javascript; charset=utf-8",
        (_ASSETS / "dashboard.js").read_bytes(),
    ),
    "/dashboard.css": ("text/css; charset=utf-8", (_ASSETS / "dashboard.css").read_bytes()),
    "/dashboard-icon.svg": ("image/svg+xml", (_ASSETS / "icon.svg").read_bytes()),
}
