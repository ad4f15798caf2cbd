"""A real partner simulator (HTTP on loopback, SQLite ledger) inside the test process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gun_tools.processes import free_port
from partner_sim.documents import load_documents
from partner_sim.server import build_app
from partner_sim.store import LedgerStore


@dataclass
class RunningPartner:
    url: str
    store: LedgerStore


@asynccontextmanager
async def running_partner(documents: Path, db: Path) -> AsyncIterator[RunningPartner]:
    store = LedgerStore(db)
    store.load(load_documents(documents))
    runner = web.AppRunner(build_app(store), access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield RunningPartner(f"http://127.0.0.1:{port}", store)
    finally:
        await runner.cleanup()
        store.close()
