"""The partner API proper (``/api/v1``): check, reserve, write off, delete, give back.

Every mutating call may carry the declaration version (``declaration_version`` in its JSON
body) and an ``Idempotency-Key`` header, as the hub's contract asks of partner systems:

* a call whose version is older than the newest one seen on the declaration's position on
  the document is refused, ``{"result": "REFUSED", "code": "STALE_VERSION"}``, and changes
  nothing;
* a call repeated with the same key (on the same document) is applied once and answered
  as the first time; the same key for a different call is refused with HTTP 422. A
  simulator keeping keys per client (the ``keys_per_client`` fault, :mod:`partner_sim.server`)
  remembers a key across documents, as the IETF idempotency-key draft and Stripe-like APIs
  do: a caller sending one key on several documents' calls is answered from the first.

A check never mutates: it neither judges nor records versions and keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from partner_sim.ledger import STALE_VERSION, ClearanceCode, PositionRequest, RequestedLine
from partner_sim.store import (
    Answer,
    IdempotencyKeyReused,
    LedgerStore,
    StaleVersion,
    UnknownDocument,
)

STORE_KEY = web.AppKey("store", LedgerStore)
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# Set on a request (by the fault switch, server.py) when keys are remembered per client.
KEYS_PER_CLIENT = web.RequestKey("keys_per_client", bool)
# The scope of a key remembered per client (no document reference is empty).
CLIENT_SCOPE = ""


class _LineBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    goods_item: int
    line: int | None = None
    # A quantity a ledger can sum: "1e999999999" passed as a Decimal and overflowed the
    # ledger's sum (a 500; review of stop 55). No goods line holds more than 30 digits.
    quantity: Decimal | None = Field(None, max_digits=30, decimal_places=12)
    unit: str | None = None
    commodity_code: str


class _PositionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_type: str
    declarant_eori: str
    country_of_destination: str | None = None
    lines: list[_LineBody]
    declaration_version: int | None = Field(None, ge=1)


class _ClearanceBody(BaseModel):
    """Body of a write-off, deletion or give-back: only the version (all optional)."""

    model_config = ConfigDict(extra="forbid")

    declaration_version: int | None = Field(None, ge=1)


def _today() -> date:
    return datetime.now(UTC).date()


def _bad_request(detail: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(
        text=json.dumps({"error": "invalid request", "detail": detail}),
        content_type="application/json",
    )


Body = TypeVar("Body", bound=BaseModel)


async def _body(request: web.Request, model: type[Body]) -> Body:
    raw = await request.read()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as err:
        raise _bad_request(str(err)) from None


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not 0 < len(key) <= MAX_KEY_LENGTH:
        raise _bad_request(f"{IDEMPOTENCY_HEADER} must hold 1 to {MAX_KEY_LENGTH} characters")
    return key


def key_scope(request: web.Request) -> str:
    """What an idempotency key is remembered under: the document of the URL, or the
    whole client (``KEYS_PER_CLIENT``)."""
    if request.get(KEYS_PER_CLIENT, False):
        return CLIENT_SCOPE
    return request.match_info["reference"]


def _refusal_answer(code: str, message: str) -> Answer:
    return Answer(200, {"result": "REFUSED", "code": code, "message": message})


def _not_found(reference: str) -> web.Response:
    return web.json_response({"result": "NOT_FOUND", "document": reference}, status=404)


def _respond(answer: Answer) -> web.Response:
    return web.json_response(answer.body, status=answer.status)


def _keyed(
    request: web.Request, operation: str, body: BaseModel, apply: Callable[[], Answer]
) -> web.Response:
    """Apply ``apply`` once per idempotency key, refusing a stale version; no ``await``
    between reading the key and recording the answer, so racing repeats are serialised."""
    store = request.app[STORE_KEY]
    reference = request.match_info["reference"]
    declaration = request.match_info["declaration"]
    fingerprint = hashlib.sha256(
        f"{operation}\n{declaration}\n{body.model_dump_json()}".encode()
    ).hexdigest()
    try:
        return _respond(
            store.idempotent(key_scope(request), _idempotency_key(request), fingerprint, apply)
        )
    except UnknownDocument:
        return _not_found(reference)
    except StaleVersion as stale:
        return _respond(_refusal_answer(STALE_VERSION, str(stale)))
    except IdempotencyKeyReused as reused:
        return web.json_response({"error": str(reused)}, status=422)


def _position(request: web.Request, body: _PositionBody) -> PositionRequest:
    return PositionRequest(
        declaration=request.match_info["declaration"],
        document_type=body.document_type,
        declarant_eori=body.declarant_eori,
        country_of_destination=body.country_of_destination,
        lines=tuple(
            RequestedLine(
                goods_item=line.goods_item,
                line=line.line,
                quantity=line.quantity,
                unit=line.unit,
                commodity_code=line.commodity_code,
            )
            for line in body.lines
        ),
        version=body.declaration_version,
    )


async def check(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    reference = request.match_info["reference"]
    position = _position(request, await _body(request, _PositionBody))
    try:
        refusal = store.check(reference, position, _today())
    except UnknownDocument:
        return _not_found(reference)
    if refusal is None:
        return web.json_response({"result": "ACCEPTED"})
    return _respond(_refusal_answer(refusal.code.value, refusal.message))


async def reserve(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    body = await _body(request, _PositionBody)
    position = _position(request, body)

    def apply() -> Answer:
        refusal = store.reserve(request.match_info["reference"], position, _today())
        if refusal is None:
            return Answer(200, {"result": "ACCEPTED"})
        return _refusal_answer(refusal.code.value, refusal.message)

    return _keyed(request, "RESERVE", body, apply)


ClearanceOperation = Callable[[LedgerStore, str, str, int | None], ClearanceCode]


def clearance_view(
    operation: str, apply: ClearanceOperation
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A view answering one ledger operation on (document, declaration) with a CERTEX
    clearance code: write off, delete, give back."""

    async def view(request: web.Request) -> web.Response:
        store = request.app[STORE_KEY]
        body = await _body(request, _ClearanceBody)

        def run() -> Answer:
            code = apply(
                store,
                request.match_info["reference"],
                request.match_info["declaration"],
                body.declaration_version,
            )
            return Answer(200, {"result": "DONE", "code": code.value})

        return _keyed(request, operation, body, run)

    return view


write_off = clearance_view("WRITE_OFF", LedgerStore.write_off)
delete = clearance_view("DELETE", LedgerStore.delete)
give_back = clearance_view("GIVE_BACK", LedgerStore.give_back)


def ledger_view(store: LedgerStore, reference: str) -> dict[str, object]:
    """One document, its balance per line and every declaration's position on each line."""
    positions = store.positions(reference)
    return {
        "reference": reference,
        "document": store.document(reference).model_dump(mode="json"),
        "balances": [
            {
                "line": b.line,
                "unit": b.unit,
                "authorised": str(b.authorised),
                "reserved": str(b.reserved),
                "written_off": str(b.written_off),
                "given_back": str(b.given_back),
                "remaining": str(b.remaining),
                "positions": [
                    {
                        "declaration": p.declaration,
                        "version": p.version,
                        "state": p.state,
                        "reserved": str(p.reserved),
                        "written_off": str(p.written_off),
                        "given_back": str(p.given_back),
                    }
                    for p in positions
                    if p.line == b.line
                ],
            }
            for b in store.balances(reference)
        ],
    }


async def document(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    reference = request.match_info["reference"]
    try:
        view = ledger_view(store, reference)
    except UnknownDocument:
        return _not_found(reference)
    del view["reference"]
    return web.json_response(view)


async def ledger(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    return web.json_response(
        {"documents": [ledger_view(store, reference) for reference in store.references()]}
    )
