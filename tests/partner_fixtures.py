"""A real partner simulator (HTTP on loopback, SQLite ledger) inside the test process."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
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


@dataclass
class WatchedPartner(RunningPartner):
    """The simulator, telling when a call it watches was answered 200 (a held one
    included, though its caller gave up on it: nothing else signals it)."""

    answered: asyncio.Event = field(default_factory=asyncio.Event)


@asynccontextmanager
async def watched_partner(
    documents: Path, db: Path, watched: Callable[[web.Request], bool]
) -> AsyncIterator[WatchedPartner]:
    """:func:`running_partner`, its ``answered`` set once a ``watched`` call is answered 200."""
    answered = asyncio.Event()

    @web.middleware
    async def signal(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if watched(request) and response.status == 200:
            answered.set()
        return response

    async with running_partner(documents, db, [signal]) as running:
        yield WatchedPartner(running.url, running.store, answered)


class CallsCounted:
    """A middleware counting the partner's calls per idempotency key; ``under_way`` is set
    once ``after`` calls of request ``request_id`` arrived."""

    def __init__(self, request_id: str, after: int) -> None:
        self.per_key: Counter[str] = Counter()
        self._request_id = request_id
        self._after = after
        self.under_way = asyncio.Event()

    def of(self, request_id: str) -> dict[str, int]:
        """The calls of ``request_id``, per key (its keys begin with it)."""
        return {k: n for k, n in self.per_key.items() if k.startswith(f"{request_id}/")}

    @web.middleware
    async def count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            self.per_key[key] += 1
            if sum(self.of(self._request_id).values()) >= self._after:
                self.under_way.set()
        return await handler(request)


@asynccontextmanager
async def counted_dgal_partner(
    samples: Path, work: Path, calls: CallsCounted, latency_ms: int
) -> AsyncIterator[RunningPartner]:
    """The DGAL simulator over its sample documents, answering after ``latency_ms`` and
    counting its calls in ``calls``."""
    async with running_partner(
        samples / "partners" / "dgal-documents.json", work / "ledger.db", [calls.count]
    ) as running:
        await set_faults(running.url, latency_ms=latency_ms)
        yield running


def slow_partner_client(partner: RunningPartner, **settings: Any) -> CertexHttpPartner:
    """A client that gives a held call up quickly: 3 attempts of 0.3 s (``settings``: the
    others)."""
    return partner_client(partner.url, partner_timeout_s=0.3, retry_attempts=3, **settings)


def forwarder(
    upstream: aiohttp.ClientSession, url: str
) -> Callable[[web.Request, bytes], Awaitable[web.Response]]:
    """What a proxy in front of the partner at ``url`` does with a call read as ``body``:
    sends it on as it came, and answers with the partner's answer."""

    async def forward(request: web.Request, body: bytes) -> web.Response:
        async with upstream.request(
            request.method,
            f"{url}{request.path_qs}",
            data=body,
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
        ) as answer:
            return web.Response(
                status=answer.status, body=await answer.read(), content_type="application/json"
            )

    return forward


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
    """The adapters' partner client, calling ``url`` (DGAL's, for its metrics)."""
    return CertexHttpPartner(AdapterSettings(partner_url=url, **settings), "dgal")


async def set_faults(url: str, **switch: object) -> None:
    """Switch the simulator's faults (``PUT /admin/faults``), checked taken."""
    async with (
        aiohttp.ClientSession() as http,
        http.put(f"{url}/admin/faults", json=switch) as answer,
    ):
        assert answer.status == 200, await answer.text()
