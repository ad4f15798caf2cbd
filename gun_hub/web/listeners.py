"""Serving the trader and officer applications beside faust's own web server.

Each is an aiohttp application on its own host and port (the probes stay on faust's
server), over HTTPS when a certificate is configured. They start with the hub's other
services and stop with it; a port that cannot be bound stops the worker, with the port
in the message.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from gun_contract.listening import PortNotBound
from gun_contract.private_files import refuse_if_shared
from gun_hub.security.web_auth import AccessConfigError

log = logging.getLogger(__name__)


@dataclass
class Listener:
    name: str
    app: web.Application
    host: str
    port: int
    tls: ssl.SSLContext | None = None
    setting: str = ""  # the variable that gives ``port``, named when it cannot be bound
    _runner: web.AppRunner | None = field(default=None, init=False)

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port, ssl_context=self.tls).start()
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
