"""HTTP API of a simulated partner system (aiohttp), with run-time fault injection.

Routes (JSON bodies, quantities as decimal strings; the partner API itself, with its
versions and idempotency keys, is :mod:`partner_sim.api`):

* ``POST   /api/v1/documents/{ref}/checks/{declaration}``           check a position
* ``PUT    /api/v1/documents/{ref}/reservations/{declaration}``     reserve (restate)
* ``POST   /api/v1/documents/{ref}/reservations/{declaration}/write-off``
* ``POST   /api/v1/documents/{ref}/reservations/{declaration}/give-back``
* ``DELETE /api/v1/documents/{ref}/reservations/{declaration}``
* ``GET    /api/v1/documents/{ref}``                                 document and balances
* ``PUT    /admin/documents``                                        load or replace documents
* ``GET    /admin/documents/{ref}``                                  the same, never faulted
* ``GET    /admin/ledger``                                           every document's ledger
* ``PATCH  /admin/documents/{ref}``                                  amend status or quantities
* ``PUT    /admin/documents/{ref}/reservations/{declaration}/force`` force a reservation
* ``DELETE /admin/documents/{ref}/write-offs/{declaration}``         cancel a write-off
* ``GET|PUT /admin/faults``                                          latency, errors, timeouts,
                                                                     outage, garbage, lost answers,
                                                                     keys held in progress (409),
                                                                     keys kept per client
* ``GET    /health``
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import Awaitable, Callable
from decimal import Decimal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from partner_sim import api
from partner_sim.api import STORE_KEY
from partner_sim.documents import DocumentsFile, DocumentStatus
from partner_sim.store import LedgerStore, UnknownDocument

log = logging.getLogger(__name__)

# W3C Trace Context: what a caller names its trace with (the hub's adapters do).
TRACEPARENT = "traceparent"
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Faults(BaseModel):
    """What the simulator does wrong on purpose, switchable while it runs."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(0, ge=0, description="Added to every API call.")
    error_rate: float = Field(0, ge=0, le=1, description="Share of calls answered 500.")
    timeout_rate: float = Field(
        0, ge=0, le=1, description="Share of calls that hang for hang_s before answering."
    )
    hang_s: float = Field(30, ge=0, description="How long a timed-out call hangs.")
    outage: bool = Field(False, description="Every API call answered 503.")
    garbage: bool = Field(False, description="Answers carry a result no client knows.")
    fail_next: int = Field(0, ge=0, description="The next N calls are answered 500.")
    lose_next: int = Field(
        0,
        ge=0,
        description="The next N calls are applied, then their answer is held for hang_s "
        "(the caller times out not knowing the call went through).",
    )
    in_progress_next: int = Field(
        0,
        ge=0,
        description="The next N keyed calls are held for hang_s, then applied; meanwhile a "
        "call with the same key is answered 409 (still being processed, as the IETF "
        "idempotency-key draft answers a retry that overtakes the first attempt).",
    )
    keys_per_client: bool = Field(
        False,
        description="Idempotency keys are remembered per client, not per document (the "
        "IETF draft, Stripe-like APIs): a key seen on another document's call is answered "
        "from that call's memory, or 422 for another operation, declaration or body.",
    )


class FaultSwitch:
    """Holds the current faults; swapped while the app runs (app state itself is frozen)."""

    def __init__(self, faults: Faults) -> None:
        self.current = faults
        # (key scope, key) of the calls ``in_progress_next`` holds: a repeat gets 409.
        self.processing: set[tuple[str, str]] = set()


FAULTS_KEY = web.AppKey("faults", FaultSwitch)
RANDOM_KEY = web.AppKey("random", random.Random)


def _not_found(reference: str) -> web.Response:
    return web.json_response({"result": "NOT_FOUND", "document": reference}, status=404)


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[FAULTS_KEY].current.model_dump())


async def put_faults(request: web.Request) -> web.Response:
    try:
        faults = Faults.model_validate_json(await request.read())
    except ValidationError as err:
        return web.json_response({"error": str(err)}, status=400)
    request.app[FAULTS_KEY].current = faults
    return web.json_response(faults.model_dump())


class _ForceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lines: dict[int, Decimal]


class _AmendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: DocumentStatus | None = None
    quantities: dict[int, Decimal] | None = None


async def load_documents_view(request: web.Request) -> web.Response:
    try:
        documents = DocumentsFile.model_validate_json(await request.read()).documents
    except ValidationError as err:
        return web.json_response({"error": str(err)}, status=400)
    request.app[STORE_KEY].load(documents)
    return web.json_response({"loaded": len(documents)})


async def force(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    reference = request.match_info["reference"]
    try:
        body = _ForceBody.model_validate_json(await request.read())
        store.force(reference, request.match_info["declaration"], body.lines)
    except UnknownDocument:
        return _not_found(reference)
    except ValueError as err:
        return web.json_response({"error": str(err)}, status=400)
    return web.json_response({"result": "DONE", "code": "01"})


async def amend(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    reference = request.match_info["reference"]
    try:
        body = _AmendBody.model_validate_json(await request.read())
        amended = store.amend(reference, status=body.status, quantities=body.quantities)
    except UnknownDocument:
        return _not_found(reference)
    except ValueError as err:
        return web.json_response({"error": str(err)}, status=400)
    return web.json_response({"document": amended.model_dump(mode="json")})


async def delete_write_off(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    reference = request.match_info["reference"]
    try:
        code = store.delete_write_off(reference, request.match_info["declaration"])
    except UnknownDocument:
        return _not_found(reference)
    return web.json_response({"result": "DONE", "code": code.value})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@web.middleware
async def fault_injection(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Latency, errors and outage apply to the partner API, never to admin routes."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    switch = request.app[FAULTS_KEY]
    faults = switch.current
    request[api.KEYS_PER_CLIENT] = faults.keys_per_client
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    if faults.outage:
        return web.json_response({"error": "service unavailable (simulated outage)"}, status=503)
    if faults.fail_next:
        faults.fail_next -= 1
        return web.json_response({"error": "internal error (simulated)"}, status=500)
    dice = request.app[RANDOM_KEY]
    if faults.error_rate and dice.random() < faults.error_rate:
        return web.json_response({"error": "internal error (simulated)"}, status=500)
    if faults.timeout_rate and dice.random() < faults.timeout_rate:
        await asyncio.sleep(faults.hang_s)
    if faults.garbage:
        return web.json_response({"result": "MAYBE", "code": "99"})
    key = request.headers.get(api.IDEMPOTENCY_HEADER)
    if key is not None and "reference" in request.match_info:
        return await _held_in_progress(request, handler, switch, key)
    return await _lost_or_answered(request, handler, faults)


async def _held_in_progress(
    request: web.Request, handler: Handler, switch: FaultSwitch, key: str
) -> web.StreamResponse:
    """A keyed call: 409 while a call with its key is held (``in_progress_next``), held
    itself if ``in_progress_next`` asks, else on to the other faults and the API."""
    faults = switch.current
    held = (api.key_scope(request), key)
    if held in switch.processing:
        return web.json_response(
            {"error": "a request with this Idempotency-Key is being processed"}, status=409
        )
    if not faults.in_progress_next:
        return await _lost_or_answered(request, handler, faults)
    faults.in_progress_next -= 1
    switch.processing.add(held)
    try:
        await request.read()  # received whole (kept by aiohttp), then processed slowly
        await asyncio.sleep(faults.hang_s)
        return await handler(request)
    finally:
        switch.processing.discard(held)


async def _lost_or_answered(
    request: web.Request, handler: Handler, faults: Faults
) -> web.StreamResponse:
    if faults.lose_next:
        faults.lose_next -= 1
        answer = await handler(request)
        await asyncio.sleep(faults.hang_s)
        return answer
    return await handler(request)


def _answered(response: web.StreamResponse) -> str:
    """``result code`` of a JSON answer of the partner API, for its log line."""
    body = response.text if isinstance(response, web.Response) else None
    try:
        answer = json.loads(body) if body else {}
    except ValueError:
        return "?"
    if not isinstance(answer, dict):
        return "?"
    return " ".join(str(answer[k]) for k in ("result", "code") if answer.get(k) is not None)


@web.middleware
async def call_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One line per partner API call, naming the caller's trace (``traceparent``), so a
    declaration is followed into the partner's own log (gun_contract/trace.py). Names the
    declaration and the operation, not the document (a licence number stays out)."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    traced = _TRACEPARENT.fullmatch(request.headers.get(TRACEPARENT, "").strip().lower())
    try:
        response = await handler(request)
    except web.HTTPException as refused:
        response = refused
    log.info(
        "%s %s of declaration %s: HTTP %d%s",
        request.method,
        _operation(request),
        request.match_info.get("declaration", "-"),
        response.status,
        f" {answer}" if (answer := _answered(response)) else "",
        extra={"trace_id": traced.group(1) if traced else None},
    )
    if isinstance(response, web.HTTPException):
        raise response
    return response


def _operation(request: web.Request) -> str:
    """The API operation a path names (its last fixed segment)."""
    if "declaration" not in request.match_info:
        return "document"
    tail = request.path.rstrip("/").rsplit("/", 1)[-1]
    if tail in ("write-off", "give-back"):
        return tail
    return "check" if "/checks/" in request.path else "reservation"


def build_app(store: LedgerStore, faults: Faults | None = None, seed: int = 0) -> web.Application:
    # The call log outside the faults: a simulated outage is logged like a real answer.
    app = web.Application(middlewares=[call_log, fault_injection], client_max_size=1024 * 1024)
    # The app's state is mutable on purpose: faults are switched while it runs.
    app[STORE_KEY] = store
    app[FAULTS_KEY] = FaultSwitch(faults or Faults())
    app[RANDOM_KEY] = random.Random(seed)
    base = "/api/v1/documents/{reference}"
    app.router.add_post(base + "/checks/{declaration}", api.check)
    app.router.add_put(base + "/reservations/{declaration}", api.reserve)
    app.router.add_post(base + "/reservations/{declaration}/write-off", api.write_off)
    app.router.add_post(base + "/reservations/{declaration}/give-back", api.give_back)
    app.router.add_delete(base + "/reservations/{declaration}", api.delete)
    app.router.add_get(base, api.document)
    admin = "/admin/documents/{reference}"
    app.router.add_put("/admin/documents", load_documents_view)
    app.router.add_patch(admin, amend)
    # The same view outside the fault injection: tests read the ledger during an outage.
    app.router.add_get(admin, api.document)
    app.router.add_get("/admin/ledger", api.ledger)
    app.router.add_put(admin + "/reservations/{declaration}/force", force)
    app.router.add_delete(admin + "/write-offs/{declaration}", delete_write_off)
    app.router.add_get("/admin/faults", get_faults)
    app.router.add_put("/admin/faults", put_faults)
    app.router.add_get("/health", health)
    return app
