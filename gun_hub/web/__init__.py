"""The hub's web endpoints, on three listeners (ADR 0007, docs/operations.md).
May import: gun_contract, gun_hub.domain, .ops, .security, .pipeline, aiohttp.

* faust's web server (``GUN_HUB_HUB__WEB_PORT``): ``/livez``, ``/readyz`` and
  ``/metrics`` only (:mod:`gun_hub.web.probes`), for the cluster and Prometheus;
* the trader listener (``GUN_HUB_WEB__TRADER_PORT``): ``/declarations/{reference}`` for
  a caller with a token from the clearance portal, its own declarations only, with any
  trace of a confidential authority left out (:mod:`gun_hub.web.trader`);
* the officer listener (``GUN_HUB_WEB__OFFICER_PORT``): statistics, the full status,
  the live dashboard and the dead-letter desk behind officer credentials
  (:mod:`gun_hub.web.officer`, :mod:`gun_hub.web.dead_letters`).

The trader and officer listeners are off until their port is set, and a port set without
the credentials it checks (the portal's public keys, the officers file) stops the hub at
start-up. Questions to the view run off the event loop (:mod:`gun_hub.web.queries`).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import faust
from mode import Service

from gun_contract.settings import WebSettings
from gun_hub.domain.routing import RoutingTable
from gun_hub.ops.lag_metrics import OpsState
from gun_hub.ops.view import OpsView
from gun_hub.security.client_address import ClientAddresses
from gun_hub.security.web_auth import OfficerGate, PortalKeys, TokenPolicy, TraderTokens
from gun_hub.web.common import Bounds
from gun_hub.web.dead_letters import DeadLetterDesk
from gun_hub.web.listeners import Listener, connection_bounds, start_all, stop_all, tls_context
from gun_hub.web.officer import officer_app
from gun_hub.web.probes import register_probes
from gun_hub.web.queries import ViewReader
from gun_hub.web.rollout import RolloutDesk
from gun_hub.web.trader import trader_app

__all__ = [
    "HubWeb",
    "WebConfigError",
    "build_web",
    "register_web_views",
    "tls_of",
    "trader_tokens",
]


class WebConfigError(ValueError):
    """The web settings cannot be served as given; the message names the settings."""


@dataclass
class HubWeb:
    """The trader and officer listeners, and the view reader of each (by listener name)."""

    listeners: list[Listener]
    readers: dict[str, ViewReader]

    async def start(self) -> None:
        await start_all(self.listeners)

    async def stop(self) -> None:
        await stop_all(self.listeners)
        for reader in self.readers.values():
            await asyncio.to_thread(reader.close)


def trader_tokens(settings: WebSettings, needed_by: str) -> TraderTokens:
    """What checks trader tokens: the portal's public keys and the token policy of
    ``settings`` (the trader lookup and the intake gateway's HTTP channel share them)."""
    if settings.portal_jwks is None:
        raise WebConfigError(
            f"{needed_by} needs GUN_HUB_WEB__PORTAL_JWKS: the clearance portal's public "
            "keys, which trader tokens are checked with"
        )
    return TraderTokens(
        PortalKeys(settings.portal_jwks),
        TokenPolicy(
            issuer=settings.portal_issuer,
            audience=settings.token_audience,
            max_lifetime_s=settings.token_max_lifetime_s,
            clock_skew_s=settings.token_clock_skew_s,
        ),
    )


def tls_of(settings: WebSettings) -> ssl.SSLContext | None:
    """The listeners' TLS context (None: plain HTTP, for loopback or behind a proxy)."""
    if settings.tls_cert is None and settings.tls_key is None:
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise WebConfigError("GUN_HUB_WEB__TLS_CERT and GUN_HUB_WEB__TLS_KEY go together")
    return tls_context(settings.tls_cert, settings.tls_key)


def build_web(
    settings: WebSettings,
    view_path: Path | None,
    state: OpsState,
    confidential: Collection[str],
    desk: DeadLetterDesk | None = None,
    rollout: RolloutDesk | None = None,
) -> HubWeb | None:
    """The listeners ``settings`` ask for (None: neither port is set)."""
    if not settings.trader_port and not settings.officer_port:
        return None
    if settings.trader_port == settings.officer_port:
        raise WebConfigError("GUN_HUB_WEB__TRADER_PORT and __OFFICER_PORT must differ")
    tls = tls_of(settings)
    try:
        clients = ClientAddresses.parse(settings.trusted_proxies)
    except ValueError as unreadable:
        raise WebConfigError(f"GUN_HUB_WEB__TRUSTED_PROXIES: {unreadable}") from None
    # A reader per listener (threads, questions waiting): a trader keeping lookups in
    # flight fills its own, never the officers' (stop 30, found by review).
    readers: dict[str, ViewReader] = {}

    def reader_for(listener: str) -> ViewReader | None:
        if view_path is None:
            return None
        readers[listener] = ViewReader(
            view_path,
            threads=settings.query_threads,
            max_waiting=settings.query_max_waiting,
            timeout_s=settings.query_timeout_s,
        )
        return readers[listener]

    listeners: list[Listener] = []
    if settings.trader_port:
        tokens = trader_tokens(settings, "GUN_HUB_WEB__TRADER_PORT")
        app = trader_app(
            reader_for("trader"),
            tokens,
            frozenset(confidential),
            clients,
            at_once=settings.trader_lookups_at_once,
        )
        listeners.append(
            Listener(
                "trader",
                app,
                settings.trader_host,
                settings.trader_port,
                tls,
                "GUN_HUB_WEB__TRADER_PORT",
                connection_bounds(settings),
            )
        )
    if settings.officer_port:
        if settings.officers_file is None:
            raise WebConfigError(
                "GUN_HUB_WEB__OFFICER_PORT needs GUN_HUB_WEB__OFFICERS_FILE: the officers' "
                "names and password hashes (gun-hub officers add)"
            )
        bounds = Bounds(
            stats_default_days=settings.stats_default_days,
            stats_max_days=settings.stats_max_days,
            page_size_default=min(settings.page_size_default, settings.page_size_max),
            page_size_max=settings.page_size_max,
        )
        app = officer_app(
            reader_for("officer"),
            OfficerGate(settings.officers_file),
            state,
            bounds,
            desk=desk,
            rollout=rollout,
            clients=clients,
        )
        listeners.append(
            Listener(
                "officer",
                app,
                settings.officer_host,
                settings.officer_port,
                tls,
                "GUN_HUB_WEB__OFFICER_PORT",
                connection_bounds(settings),
            )
        )
    return HubWeb(listeners, readers)


def confidential_authorities(routing: RoutingTable) -> frozenset[str]:
    return frozenset(a for a, entry in routing.authorities.items() if entry.confidential)


def register_web_views(
    app: faust.App,
    view: OpsView | None,
    state: OpsState,
    *,
    ready: Callable[[], list[str]],
    web: WebSettings,
    routing: RoutingTable,
    desk: DeadLetterDesk | None = None,
    rollout: RolloutDesk | None = None,
) -> None:
    """Probes and metrics on faust's server; the trader and officer listeners as a
    service started and stopped with the app."""
    register_probes(app, ready)
    hub_web = build_web(
        web,
        view.path if view is not None else None,
        state,
        confidential_authorities(routing),
        desk,
        rollout,
    )
    if hub_web is None:
        return
    serving: HubWeb = hub_web

    class WebListeners(Service):  # type: ignore[misc] # mode is untyped
        async def on_start(self) -> None:
            await serving.start()

        async def on_stop(self) -> None:
            await serving.stop()

    app.service(WebListeners)
