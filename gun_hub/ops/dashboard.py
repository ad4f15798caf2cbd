"""The live operations dashboard: one page, its script and its styles, read once, and
the figures it polls.

Plain HTML, CSS and JavaScript with no third-party code and no build step: the page polls
``/api/dashboard`` every second and writes figures with ``textContent`` only (nothing the
hub serves is interpreted as markup). It is served on the officer listener, behind
officer credentials (``gun_hub/web/officer.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gun_contract.health import PartnerHealth
from gun_hub.ops.lag_metrics import OpsState, is_stale
from gun_hub.ops.view import ViewQueries

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

_THROUGHPUT_WINDOW_S = 10.0
# Dead-letter kinds listed on the page (any party may write a kind: the rest is summed).
_DEAD_LETTER_KINDS = 20
_RECENT_DEAD_LETTERS = 8


def view_figures(view: ViewQueries, now: float) -> dict[str, Any]:
    """What the dashboard shows from the operations view: small aggregates (the page
    polls every second), asked off the event loop by the web layer."""
    by_outcome = view.outcome_counts()
    return {
        "decisions": by_outcome,
        "decisions_total": sum(by_outcome.values()),
        "throughput_per_s": round(
            view.decisions_since(now - _THROUGHPUT_WINDOW_S) / _THROUGHPUT_WINDOW_S, 1
        ),
        "dead_letters": view.dead_letter_counts(_DEAD_LETTER_KINDS),
        "recent_dead_letters": view.recent_dead_letters(_RECENT_DEAD_LETTERS),
    }


def live_figures(state: OpsState, now: float) -> dict[str, Any]:
    """What the dashboard shows from the lag monitor and the adapters' heartbeats."""
    lag = state.lag
    return {
        "at": datetime.fromtimestamp(now, UTC).isoformat(),
        "lag": (
            {"at": lag.at.isoformat(), "groups": [group.model_dump() for group in lag.groups]}
            if lag is not None
            else None
        ),
        # Per authority: the worst circuit and the pending sum of its replicas with a
        # fresh heartbeat (lag_metrics.AuthorityHealth), then each replica's own.
        "partners": [
            {
                "authority": authority,
                "circuit": health.circuit.value,
                "pending_operations": health.pending_operations,
                "heartbeat_age_s": _age(health.at.timestamp(), now),
                "stale": health.stale,
                "replicas": [_replica(beat, now) for beat in health.replicas],
            }
            for authority, health in sorted(state.routed_partners(now).items())
        ],
    }


def _age(at: float, now: float) -> float:
    return round(max(0.0, now - at), 1)


def _replica(beat: PartnerHealth, now: float) -> dict[str, Any]:
    return {
        "replica": beat.replica,
        "circuit": beat.circuit.value,
        "pending_operations": beat.pending_operations,
        "heartbeat_age_s": _age(beat.fresh_at.timestamp(), now),
        "stale": is_stale(beat, now),
    }
