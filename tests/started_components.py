"""What each process exposes on ``/metrics`` just after it started, before any event.

``python -m tests.started_components COMPONENT FOLDER`` builds one component (or
``adapter-AUTHORITY``: one adapter alone, as its replica runs; ``hub-without-view``: a
worker of the split deployment, GUN_HUB_OPS__VIEW_ENABLED=false) as its
``gun-hub`` command does at start-up (keys made in FOLDER at run time; nothing connects
to a broker) and prints its registry in the Prometheus text format. A process of its
own per component: the default registry is process-wide, and a test process has
counted events in it long before (tests/unit/test_alert_counters_exist_before_their_first_event.py).
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest

from gun_contract.security.entitlements import GATEWAY_PARTY
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import (
    GatewaySettings,
    HubSettings,
    OpsSettings,
    SecuritySettings,
    Settings,
    WebSettings,
)
from gun_contract.topics import topic_registry
from gun_hub.domain.routing import load_routing_table
from gun_hub.security.web_auth import add_officer, generate_portal_key
from gun_tools.processes import free_port

COMPONENTS = ("hub", "view", "gateway", "adapters")


def _settings(folder: Path, *, view_enabled: bool = True) -> Settings:
    keys = folder / "keys"
    public = generate_portal_key(folder / "portal")[1]
    officers = folder / "officers"
    add_officer(officers, "alice", secrets.token_urlsafe(16))
    settings = Settings(
        security=SecuritySettings(keys_dir=keys, state_dir=folder / "state"),
        hub=HubSettings(data_dir=folder / "data"),
        ops=OpsSettings(view_data_dir=folder / "view", view_enabled=view_enabled),
        web=WebSettings(
            trader_port=free_port(),
            officer_port=free_port(),
            portal_jwks=public,
            officers_file=officers,
        ),
        gateway=GatewaySettings(port=free_port()),
    )
    routing = load_routing_table(settings.hub.routing_table, settings.hub.extra_routes)
    KeystoreFolder(keys).init(["hub", "clearance", GATEWAY_PARTY, *routing.authorities])
    return settings


def _hub(settings: Settings) -> None:
    from gun_hub.runtime.app import build_hub

    asyncio.set_event_loop(asyncio.new_event_loop())
    build_hub(settings)


def _view(settings: Settings) -> None:
    from gun_hub.runtime.view_process import build_view_process

    async def build() -> None:
        build_view_process(settings)

    asyncio.run(build())


def _gateway(settings: Settings, folder: Path) -> None:
    from gun_hub.gateway.file_drop import DropFolder, DropWatcher
    from gun_hub.gateway.http_channel import lodging_app
    from gun_hub.gateway.lodging import lodger_for
    from gun_hub.gateway.service import build_gateway, required_lodging_scope
    from gun_hub.web import trader_tokens

    async def build() -> None:
        topics = topic_registry(settings.kafka.topic_prefix, ["dgal", "cites", "dga"])
        gateway = build_gateway(settings, topics)
        # `intake serve`'s listener (gateway/service.py serve_http) ...
        lodging_app(
            gateway,
            trader_tokens(settings.web, "GUN_HUB_GATEWAY__PORT"),
            scope=required_lodging_scope(settings.gateway),
        )
        # ... and `intake watch DIR`'s watcher (watch_folder).
        DropWatcher(
            DropFolder(folder / "drop"),
            gateway,
            lodger_for(["FR12345678901234"], "a test lodger"),
            topic=topics.declarations,
        )

    asyncio.run(build())


def _adapters(settings: Settings, authorities: tuple[str, ...] = ("dgal", "cites", "dga")) -> None:
    from adapters.base import load_adapter
    from adapters.base.runner import AdapterRunner
    from gun_hub.cli.kafka import registry_for
    from gun_hub.security.factory import build_envelope

    topics = registry_for(settings)

    async def build() -> None:
        for authority in authorities:
            spec = load_adapter(authority)
            envelope = build_envelope(
                settings.security, authority, topics, partitions=settings.kafka.partitions
            )
            AdapterRunner(spec, settings, topics, envelope, spec.partner(settings.adapter))

    asyncio.run(build())


def main(component: str, folder: Path) -> None:
    settings = _settings(folder, view_enabled=component != "hub-without-view")
    if component in ("hub", "hub-without-view"):
        _hub(settings)
    elif component == "view":
        _view(settings)
    elif component == "gateway":
        _gateway(settings, folder)
    elif component == "adapters":
        _adapters(settings)
    elif component.startswith("adapter-"):  # one replica, as `gun-hub adapter dgal` runs
        _adapters(settings, (component.removeprefix("adapter-"),))
    else:
        raise SystemExit(f"unknown component {component!r}: one of {', '.join(COMPONENTS)}")
    sys.stdout.write(generate_latest(REGISTRY).decode())


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
