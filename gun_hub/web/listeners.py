"""Serving the trader and officer applications beside faust's own web server.

Each is an aiohttp application on its own host and port (the probes stay on faust's
server), over HTTPS when a certificate is configured. They start with the hub's other
services and stop with it; a port that cannot be bound stops the worker, with the port
in the message.

Each bounds what its clients can hold of it (:class:`ConnectionBounds`): the trader and
officer listeners run inside the hub worker, and the intake gateway's is open to every
trader. aiohttp alone kept a connection whose request head never ended for an hour (its
keep-alive limit), and any number of them: a caller without a token held 281 MiB with
150 (review stop 46). Over HTTPS a connection still in its TLS handshake is bounded by
time only (:class:`_BoundedSite`). Fairness between clients (one client's share), and
TLS where callers are many, are the reverse proxy's in front (docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter as Tally
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.web_protocol import RequestHandler
from prometheus_client import Counter

from gun_contract.listening import PortNotBound
from gun_contract.private_files import refuse_if_shared
from gun_contract.settings import WebSettings
from gun_hub.security.client_address import ClientAddresses
from gun_hub.security.web_auth import AccessConfigError
from gun_hub.web.common import OncePerSecond

log = logging.getLogger(__name__)

CONNECTIONS_TURNED_AWAY = Counter(
    "gun_hub_web_connections_turned_away_total",
    "Connections a listener answered 503 and closed at once: it held its limit of "
    "connections (reason full: web.max_connections), or of one client address's "
    "(reason address: web.max_connections_per_address). Clients holding connections "
    "idle, or a load beyond what the listener was sized for.",
    ["listener", "reason"],
)
# What a turned-away connection is told before it is closed.
_FULL = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
    b"Content-Length: 0\r\n\r\n"
)


@dataclass(frozen=True, slots=True)
class ConnectionBounds:
    """What a listener's clients can hold of it at most."""

    # A connection with no request under way (its first request's head not complete, or
    # idle between two requests) is closed after this long.
    idle_s: float = 15.0
    # Connections open at once; past it a new one is answered 503 and closed.
    max_connections: int = 256
    # Headers of a request, and the length of each (aiohttp's 128 and 8,190): with the
    # connections, what a listener holds of request heads at most (128 MiB by default).
    # 64: a browser's twenty behind an ingress's and a service mesh's forwarding headers.
    max_headers: int = 64
    max_field_size: int = 8190
    # Connections one client address holds at once (an IPv6 client by its /64, as
    # client_address.py holds it): past it, its new one is answered 503 and closed, so
    # one client holding connections idle does not turn the others away (stop 54's open
    # item). Not the reverse proxies named here (web.trusted_proxies: every connection
    # behind one is the proxy's; its own bounds are per client).
    max_per_address: int = 32
    unbounded: tuple[str, ...] = ()


class _ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server log for one listener: what a client did wrong (a request it
    framed badly, answered 400 by aiohttp before any handler sees it; a connection it
    dropped) is said at INFO on one line, at most once a second; anything else as aiohttp
    says it. aiohttp logged each at ERROR with a traceback, so any client with a
    connection filled the log with server errors that were not the server's (review of
    the intake gateway)."""

    def __init__(self, listener: str) -> None:
        super().__init__(logging.getLogger("aiohttp.server"))
        self._listener = listener
        self._client_faults = OncePerSecond(log, "such")

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        fault = kwargs.get("exc_info")
        if isinstance(fault, BadHttpMessage | ConnectionResetError):
            said = fault.message if isinstance(fault, BadHttpMessage) else "connection lost"
            self._client_faults.log(
                logging.INFO,
                "%s listener: a request its client ended badly: %s",
                self._listener,
                " ".join(str(said).split()),
            )
            return
        super().exception(msg, *args, **kwargs)


@dataclass
class Listener:
    name: str
    app: web.Application
    host: str
    port: int
    tls: ssl.SSLContext | None = None
    setting: str = ""  # the variable that gives ``port``, named when it cannot be bound
    bounds: ConnectionBounds = field(default_factory=ConnectionBounds)
    _runner: web.AppRunner | None = field(default=None, init=False)

    async def start(self) -> None:
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            # aiohttp closes a connection whose handler waits for a request's head
            # (none complete yet, or the next one) once this has passed since it opened
            # or since its last answer: a head sent byte by byte does not reset it.
            keepalive_timeout=self.bounds.idle_s,
            max_headers=self.bounds.max_headers,
            max_field_size=self.bounds.max_field_size,
            logger=_ServerLog(self.name),
        )
        await runner.setup()
        if runner.server is not None:  # set up just now
            _turn_away_past(runner.server, self.bounds, self.name)
        try:
            await _BoundedSite(
                runner, self.host, self.port, ssl_context=self.tls, bounds=self.bounds
            ).start()
        except OSError as err:
            await runner.cleanup()
            raise PortNotBound(
                f"{self.name} listener", self.host, self.port, self.setting, err
            ) from None
        self._runner = runner
        log.info(
            "%s listener on %s://%s:%d",
            self.name,
            "https" if self.tls else "http",
            self.host,
            self.port,
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def connection_bounds(settings: WebSettings) -> ConnectionBounds:
    """The bounds the listeners clients reach (trader, officer, lodging) are given."""
    return ConnectionBounds(
        idle_s=settings.connection_idle_s,
        max_connections=settings.max_connections,
        max_per_address=settings.max_connections_per_address,
        unbounded=tuple(p.strip() for p in settings.trusted_proxies.split(",") if p.strip()),
    )


class _BoundedSite(web.TCPSite):
    """aiohttp's TCP site, with the TLS handshake given the idle limit: aiohttp sees a
    connection only once its handshake is done, so one that sends no ClientHello held its
    TLS buffers (256 KiB) for asyncio's 60 s, counted by no bound (review stop 46). Still
    not counted while it shakes hands: terminating TLS at the ingress bounds that too
    (docs/deployment.md)."""

    def __init__(self, *args: Any, bounds: ConnectionBounds, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bounds = bounds

    async def start(self) -> None:
        if self._ssl_context is None:
            await super().start()
            return
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        if server is None:
            raise RuntimeError("the runner is not set up")
        self._server = await asyncio.get_running_loop().create_server(
            server,
            self._host,
            self._port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=self._bounds.idle_s,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        # As aiohttp's own start (its attributes: aiohttp is pinned, requirements.lock).
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


def _turn_away_past(server: web.Server, bounds: ConnectionBounds, name: str) -> None:
    """Make ``server`` answer 503 and close a connection made while it holds
    ``bounds.max_connections``, or while its client address holds its share
    (``bounds.max_per_address``).

    aiohttp offers no such limit: the server's own ``connection_made`` and
    ``connection_lost``, which every connection's handler calls as it opens (a TLS one
    once its handshake is done) and as it ends, are wrapped here (their public API since
    aiohttp 3.0)."""
    registered_made, registered_lost = server.connection_made, server.connection_lost
    shares = AddressShares(
        bounds.max_per_address, ClientAddresses.parse(",".join(bounds.unbounded))
    )

    def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
        registered_made(handler, transport)
        if len(server.connections) > bounds.max_connections:
            reason = "full"
        elif shares.opened(handler, _peer(transport)):
            reason = "address"
        else:
            return
        CONNECTIONS_TURNED_AWAY.labels(name, reason).inc()
        # Its connection lost before aiohttp's handler task begins (created just after
        # this call), the task fails an assertion of aiohttp's, and asyncio logged a
        # traceback at ERROR for every connection turned away: a log flood for anyone
        # hammering the bound (review of stop 55). That failure is expected: taken, by a
        # callback that runs before the connection's loss forgets the task (scheduled
        # by the close below, so after this).
        asyncio.get_running_loop().call_soon(_expect_its_end, handler)
        transport.write(_FULL)
        transport.close()  # after what was written; the handler then ends

    def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
        registered_lost(handler, exc)
        shares.closed(handler)

    server.connection_made = connection_made  # type: ignore[method-assign]
    server.connection_lost = connection_lost  # type: ignore[method-assign]


def _expect_its_end(handler: RequestHandler) -> None:
    """Take the end of the task of ``handler``, a connection turned away (aiohttp's
    ``_task_handler``: aiohttp is pinned, requirements.lock), whatever it is."""
    task = getattr(handler, "_task_handler", None)
    if isinstance(task, asyncio.Task):
        task.add_done_callback(lambda ended: ended.cancelled() or ended.exception())


class AddressShares:
    """Per client address (an IPv6 client by its /64, as client_address.py holds it),
    the connections a listener holds, counted as each opens and ends: the same cost
    whatever the listener holds (review of stop 55's change: counted by reading every
    held connection's peer, each new connection cost 4 ms at 255 held). A trusted
    proxy's connections are nobody's share: neither its own nor its /64 neighbours'."""

    def __init__(self, most: int, proxies: ClientAddresses) -> None:
        self._most = most
        self._proxies = proxies
        self._held: Tally[str] = Tally()
        self._of: dict[object, str] = {}

    def opened(self, connection: object, peer: str | None) -> bool:
        """``connection`` from ``peer`` opened (None: not an IP connection): whether its
        address now holds more than its share."""
        if peer is None or self._proxies.is_trusted(peer):
            return False
        address = ClientAddresses.held_as(peer)
        self._of[connection] = address
        self._held[address] += 1
        return self._held[address] > self._most

    def closed(self, connection: object) -> None:
        """``connection`` ended (one never counted: nothing)."""
        address = self._of.pop(connection, None)
        if address is None:
            return
        self._held[address] -= 1
        if self._held[address] <= 0:
            del self._held[address]

    def __len__(self) -> int:
        """Addresses holding connections now."""
        return len(self._held)


def _peer(transport: asyncio.BaseTransport) -> str | None:
    """The address a connection comes from (None: not an IP connection)."""
    peer = transport.get_extra_info("peername")
    if not isinstance(peer, tuple) or not peer:
        return None
    return str(peer[0])


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context: TLS 1.2 and 1.3 only (as the broker, docs/security.md). The key
    is refused if others may read it, as every private key of the hub is."""
    try:
        refuse_if_shared(key, AccessConfigError)
    except OSError as err:
        raise AccessConfigError(f"cannot read {key}: {err.strerror}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def start_all(listeners: list[Listener]) -> None:
    started: list[Listener] = []
    try:
        for listener in listeners:
            await listener.start()
            started.append(listener)
    except BaseException:
        for listener in started:
            await listener.stop()
        raise


async def stop_all(listeners: list[Listener]) -> None:
    for listener in listeners:
        await listener.stop()
