"""A real partner simulator (HTTP on loopback, SQLite ledger) inside the test process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from adapters.base.certex import CertexHttpPartner
from gun_contract.settings import AdapterSettings
from gun_tools.processes import free_port
from partner_sim.documents import load_documents
from partner_sim.server import build_app
from partner_sim.store import LedgerStore


@dataclass
class RunningPartner:
    url: str
    store: LedgerStore


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def running_partner(
    documents: Path, db: Path, middlewares: Sequence[Any] = ()
) -> AsyncIterator[RunningPartner]:
    """The simulator; ``middlewares`` first, around everything it does."""
    store = LedgerStore(db)
    store.load(load_documents(documents))
    app = build_app(store)
    for position, middleware in enumerate(middlewares):
        app.middlewares.insert(position, middleware)
    async with _listening(app) as url:
        try:
            yield RunningPartner(url, store)
        finally:
            store.close()


@asynccontextmanager
async def serving(handler: Handler, *, cancelled_with_client: bool = False) -> AsyncIterator[str]:
    """A stand-in partner: ``handler`` answers every method and path; it goes on when its
    client has gone away (a partner applying a call whose answer is lost), unless
    ``cancelled_with_client``."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with _listening(app, handler_cancellation=cancelled_with_client) as url:
        yield url


@asynccontextmanager
async def _listening(
    app: web.Application, *, handler_cancellation: bool = False
) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None, handler_cancellation=handler_cancellation)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def partner_client(url: str, **settings: Any) -> CertexHttpPartner:
    """The adapters' partner client, calling ``url``."""
    return CertexHttpPartner(AdapterSettings(partner_url=url, **settings))


async def set_faults(url: str, **switch: object) -> None:
    """Switch the simulator's faults (``PUT /admin/faults``), checked taken."""
    async with (
        aiohttp.ClientSession() as http,
        http.put(f"{url}/admin/faults", json=switch) as answer,
    ):
        assert answer.status == 200, await answer.text()
