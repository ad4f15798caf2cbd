"""The gateway's two processes, ``gun-hub intake serve`` and ``gun-hub intake watch``,
built from the settings and run until asked to stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from gun_contract.kafka.client import from_settings
from gun_contract.security.entitlements import GATEWAY_PARTY
from gun_contract.security.replay import MemoryReplayGuard
from gun_contract.settings import GatewaySettings, Settings
from gun_contract.topics import TopicRegistry
from gun_hub.gateway.file_drop import DropFolder, DropWatcher
from gun_hub.gateway.http_channel import lodging_app
from gun_hub.gateway.lodging import DeclarationCheck, Gateway, Lodger
from gun_hub.gateway.probes import probes_app
from gun_hub.gateway.sender import DeclarationSender
from gun_hub.security.factory import build_envelope
from gun_hub.security.web_auth import TraderTokens
from gun_hub.web import tls_of
from gun_hub.web.listeners import Listener, connection_bounds, start_all, stop_all

log = logging.getLogger(__name__)


def build_gateway(settings: Settings, topics: TopicRegistry) -> Gateway:
    """The gateway party's sender and the hub's checks, from ``settings``."""
    # The gateway only seals; it never opens a message, so its replay memory is never asked.
    envelope = build_envelope(settings.security, GATEWAY_PARTY, topics, MemoryReplayGuard())
    return Gateway(
        DeclarationSender(from_settings(settings.kafka), topics.declarations, envelope),
        DeclarationCheck(settings.hub.max_declaration_bytes),
        max_in_flight=settings.gateway.max_in_flight,
        max_in_flight_per_trader=settings.gateway.max_in_flight_per_trader,
        publish_timeout_s=settings.gateway.publish_timeout_s,
    )


def _probes(
    settings: Settings, gateway: Gateway, not_ready: Callable[[], list[str]] | None = None
) -> list[Listener]:
    port = settings.gateway.probes_port
    if not port:
        return []
    return [
        Listener(
            "probes",
            probes_app(gateway, not_ready),
            settings.gateway.probes_host,
            port,
            setting="GUN_HUB_GATEWAY__PROBES_PORT",
        )
    ]


async def _running(gateway: Gateway, probes: list[Listener]) -> None:
    """Probes first (not ready until the producer is up), then the producer."""
    await start_all(probes)
    try:
        await gateway.start()
    except BaseException:
        await stop_all(probes)
        raise


def required_lodging_scope(settings: GatewaySettings) -> str | None:
    """The scope a portal token must grant to lodge. Empty is the operator's opt-out (a
    portal that does not grant it yet), never silent: any token of a trader then lodges,
    a read-only integration's included (review stop 37-i, 4)."""
    if settings.lodging_scope:
        return settings.lodging_scope
    log.warning(
        "GUN_HUB_GATEWAY__LODGING_SCOPE is empty: any valid portal token lodges, "
        "including one the portal gave a read-only integration; set it (gun:lodge) once "
        "the portal grants that scope in lodging tokens"
    )
    return None


async def serve_http(
    settings: Settings,
    gateway: Gateway,
    tokens: TraderTokens,
    stop: asyncio.Event,
    ending: Callable[[], None] = lambda: None,
) -> None:
    """The HTTP channel until ``stop`` is set; ``ending`` is called as it ends, before
    what waits on the broker (the process's stop deadline: stop_deadline.py)."""
    probes = _probes(settings, gateway)
    lodging = Listener(
        "lodging",
        lodging_app(
            gateway,
            tokens,
            scope=required_lodging_scope(settings.gateway),
            status_url=settings.gateway.status_url,
        ),
        settings.gateway.host,
        settings.gateway.port,
        tls_of(settings.web),
        "GUN_HUB_GATEWAY__PORT",
        connection_bounds(settings.web),
    )
    await _running(gateway, probes)
    try:
        await lodging.start()
        try:
            await stop.wait()
        finally:
            await lodging.stop()
    finally:
        ending()
        await gateway.stop()
        await stop_all(probes)


async def watch_folder(
    settings: Settings,
    gateway: Gateway,
    root: Path,
    lodger: Lodger,
    topic: str,
    stop: asyncio.Event,
    ending: Callable[[], None] = lambda: None,
) -> None:
    """The file-drop channel on ``root`` until ``stop`` is set; ``ending`` as in
    :func:`serve_http`."""
    folder = DropFolder(root)
    folder.prepare()
    watcher = DropWatcher(
        folder,
        gateway,
        lodger,
        topic=topic,
        poll_s=settings.gateway.drop_poll_s,
        settle_s=settings.gateway.drop_settle_s,
        batch=settings.gateway.drop_batch,
    )
    with folder.locked():
        probes = _probes(settings, gateway, watcher.not_ready)
        await _running(gateway, probes)
        try:
            await watcher.run(stop)
        finally:
            ending()
            await gateway.stop()
            await stop_all(probes)
