"""Small faust workers on the hub's runtime, run as processes by the integration tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gun_tools.processes import free_port


def worker_app(app_class: Any, group: str, bootstrap: str, out: Path, **settings: Any) -> Any:
    """A faust app of ``app_class`` for one test: in-memory tables, its data beside
    ``out``, earliest offsets, raw topics, logging left to the worker; ``settings`` add
    to or override these."""
    return app_class(
        group,
        **{
            "broker": f"kafka://{bootstrap}",
            "store": "memory://",
            "datadir": str(out.parent / "faust-data"),  # not the working directory
            "web_enabled": False,
            # faust's worker binds its web server all the same: never on the shared
            # default port, where another test's worker may be listening.
            "web_port": free_port(),
            "web_host": "127.0.0.1",
            "web_bind": "127.0.0.1",
            "consumer_auto_offset_reset": "earliest",
            "topic_disable_leader": True,
            "logging_config": None,
            **settings,
        },
    )
