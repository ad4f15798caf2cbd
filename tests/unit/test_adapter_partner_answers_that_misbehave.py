"""A partner answer the CERTEX client cannot use is UNAVAILABLE, never raised out of the
client, never read without bound, never followed elsewhere, and counted against the
partner's circuit (review stop 37: J2, J4, J5, J6)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapters.base import certex
from adapters.base.certex import ANSWER_LIMIT_BYTES, CertexHttpPartner
from adapters.base.pending import PendingOperations
from adapters.base.replay import Replayer
from gun_contract.health import CircuitStatus
from gun_contract.model.exchange import (
    AuthorityRequest,
    DocumentAnswer,
    Operation,
    RequestedDocument,
    RequestedItem,
)
from gun_contract.model.verdicts import Verdict
from tests.adapter_fixtures import partner_request
from tests.partner_fixtures import Handler, partner_client
from tests.partner_fixtures import serving as partner_serving
from tests.poison_corpus import settle_garbage


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """A partner answering every call with ``handler`` (a handler whose client hung up is
    cancelled: none outlives its test)."""
    async with partner_serving(handler, cancelled_with_client=True) as url:
        yield url


def client(url: str, **settings: Any) -> CertexHttpPartner:
    """The partner client, retrying fast unless told otherwise."""
    return partner_client(
        url, **{"retry_backoff_base_s": 0.01, "retry_backoff_cap_s": 2.0, **settings}
    )


def answering(body: bytes, status: int = 200) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=body, status=status, content_type="application/json")

    return handler


def write_off() -> AuthorityRequest:
    return partner_request(Operation.WRITE_OFF, quantity=None)


def two_documents(operation: Operation) -> AuthorityRequest:
    item = RequestedItem(
        number=1,
        commodity_code="0302130000",
        documents=(
            RequestedDocument(code="N853", reference="CHEDP.FR.2026.0000001"),
            RequestedDocument(code="N853", reference="CHEDP.FR.2026.0000002"),
        ),
    )
    return partner_request(operation, quantity=None).model_copy(update={"items": (item,)})


async def ask_through_the_replayer(
    url: str, request: AuthorityRequest, tmp_path: Path
) -> tuple[tuple[DocumentAnswer, ...], bool]:
    """The live path of a follow-up: the answers, and whether it was queued for replay."""
    partner = client(url)
    pending = PendingOperations(tmp_path / "pending.sqlite")

    async def publish(*_: Any) -> None:
        raise AssertionError("nothing is replayed in this test")

    try:
        answers = await Replayer(pending, partner, publish).ask(request, 0, 7, None)
        return answers, pending.holds(request)
    finally:
        await partner.close()
        pending.close()


# -- J2: an answer of an unexpected shape ------------------------------------------------

DEEP = 20_000  # nesting far past the interpreter's recursion limit, well under the size cap


@pytest.mark.parametrize(
    "body",
    [
        b'{"result": "REFUSED", "code": {"value": "05"}}',
        b'{"result": "REFUSED", "code": ["05"]}',
        b'{"result": "DONE", "code": ["01"]}',
        b'{"result": "REFUSED", "code": ' + b"[" * DEEP + b"]" * DEEP + b"}",
        b'{"result": "REFUSED", "code": "05", "message": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    ],
    ids=["code-object", "code-list", "done-code-list", "code-nested-deep", "message-nested-deep"],
)
async def test_a_follow_up_answered_in_an_unexpected_shape_is_unavailable_and_queued(
    body: bytes, tmp_path: Path
) -> None:
    settle_garbage()  # the nested answers are parsed to the recursion limit
    async with serving(answering(body)) as url:
        answers, queued = await ask_through_the_replayer(url, write_off(), tmp_path)
    assert [a.verdict for a in answers] == [Verdict.UNAVAILABLE]
    assert queued, "the write-off must be replayed, not lost"


@pytest.mark.parametrize("code", [{"value": "05"}, ["05"], 5])
def test_only_a_string_is_a_partner_code(code: Any) -> None:
    for operation in Operation:
        with pytest.raises(certex.PartnerUnavailable):
            certex._map_answer(operation, 200, {"result": "REFUSED", "code": code})


async def test_an_unexpected_error_on_one_document_keeps_the_others_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One document's answer raising something no check foresaw (here a stand-in for a
    bug) is UNAVAILABLE for that document only; the other's answer, maybe applied at
    the partner already, is kept."""
    mapped = certex._map_answer

    def breaks_on_the_second(
        operation: Operation, status: int, payload: dict[str, Any], *, follow_up: bool = False
    ) -> tuple[Verdict, str | None, str | None]:
        if payload.get("document") == "CHEDP.FR.2026.0000002":
            raise LookupError("a case nobody foresaw")
        return mapped(operation, status, payload, follow_up=follow_up)

    monkeypatch.setattr(certex, "_map_answer", breaks_on_the_second)

    async def per_document(request: web.Request) -> web.Response:
        document = request.path.split("/")[4]
        return web.json_response({"result": "DONE", "code": "01", "document": document})

    async with serving(per_document) as url:
        partner = client(url)
        try:
            answers = await partner.answer(two_documents(Operation.WRITE_OFF))
        finally:
            await partner.close()
    by_document = {a.reference: a for a in answers}
    assert by_document["CHEDP.FR.2026.0000001"].verdict is Verdict.VALID
    broken = by_document["CHEDP.FR.2026.0000002"]
    assert broken.verdict is Verdict.UNAVAILABLE
    assert broken.detail is not None
    assert "LookupError" in broken.detail
    assert "nobody foresaw" not in broken.detail  # the type, never the text


# -- J4: the size of an answer -----------------------------------------------------------


async def test_an_answer_larger_than_the_limit_is_unavailable_and_not_read_whole() -> None:
    total = 64 * 1024 * 1024
    chunk = b" " * (64 * 1024)
    sent = 0

    async def huge(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)  # chunked: no Content-Length to refuse up front
        await response.write(b'{"result": "ACCEPTED", "pad": "')
        try:
            while sent < total:
                await response.write(chunk)
                sent += len(chunk)
        except (ConnectionError, RuntimeError):
            return response  # the client hung up: what it did not read was never sent
        await response.write(b'"}')
        await response.write_eof()
        return response

    async with serving(huge) as url:
        partner = client(url, partner_timeout_s=30, retry_attempts=1, circuit_failure_threshold=1)
        try:
            [answer] = await partner.answer(partner_request(Operation.RESERVE))
        finally:
            await partner.close()
    assert answer.verdict is Verdict.UNAVAILABLE
    assert answer.detail is not None
    assert "answer too large" in answer.detail
    # The client stopped reading at the limit: the rest never left the partner (the
    # socket buffers of the loopback hold a few MB at most).
    assert sent < total / 2, f"{sent} bytes sent of {total}"
    assert partner.circuit_state is CircuitStatus.OPEN  # a failure for the circuit


async def test_an_answer_declaring_a_length_above_the_limit_is_refused_before_reading() -> None:
    async def declared(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 10 * ANSWER_LIMIT_BYTES
        await response.prepare(request)
        await response.write(b'{"result": ')
        await asyncio.sleep(30)  # the rest never comes: only the header can end the call soon
        return response

    async with serving(declared) as url:
        partner = client(url, partner_timeout_s=10, retry_attempts=1)
        began = time.monotonic()
        try:
            [answer] = await partner.answer(partner_request(Operation.RESERVE))
            took = time.monotonic() - began
        finally:
            await partner.close()
    assert answer.verdict is Verdict.UNAVAILABLE
    assert answer.detail is not None
    assert "answer too large" in answer.detail
    assert took < 5


async def test_an_answer_just_under_the_limit_is_read() -> None:
    pad = b" " * (ANSWER_LIMIT_BYTES - 64)
    async with serving(answering(b'{"result": "ACCEPTED"}' + pad)) as url:
        partner = client(url)
        try:
            [answer] = await partner.answer(partner_request(Operation.RESERVE))
        finally:
            await partner.close()
    assert answer.verdict is Verdict.VALID


# -- J5: redirects -----------------------------------------------------------------------


async def test_a_redirect_to_another_origin_is_not_followed_and_its_origin_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        return web.json_response({"result": "ACCEPTED"})

    async with serving(elsewhere) as other:

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(other + request.path)

        async with serving(redirect) as url:
            partner = client(url, circuit_failure_threshold=2)
            try:
                with caplog.at_level(logging.WARNING, logger=certex.__name__):
                    answers = [
                        await partner.answer(partner_request(Operation.RESERVE)) for _ in range(2)
                    ]
            finally:
                await partner.close()
    assert not seen, f"followed to another origin: {seen}"
    for [answer] in answers:
        assert answer.verdict is Verdict.UNAVAILABLE
        assert answer.detail == "partner redirected (HTTP 307): check partner_url"
    logged = [r.getMessage() for r in caplog.records if "redirected" in r.getMessage()]
    assert len(logged) == 1, logged  # once, not once per call
    assert other in logged[0]  # where to: the origin ...
    assert "CHEDP" not in logged[0]  # ... never the path, which names the document
    assert partner.circuit_state is CircuitStatus.OPEN  # two failures, threshold two


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_follow_up_redirected_is_unavailable_and_queued_not_sent_as_a_get(
    status: int, tmp_path: Path
) -> None:
    methods: list[str] = []

    async def partner_app(request: web.Request) -> web.Response:
        methods.append(request.method)
        if request.path.startswith("/moved"):
            return web.json_response({"result": "MAYBE"})
        return web.Response(status=status, headers={"Location": "/moved" + request.path})

    async with serving(partner_app) as url:
        answers, queued = await ask_through_the_replayer(url, write_off(), tmp_path)
    assert [a.verdict for a in answers] == [Verdict.UNAVAILABLE]
    assert answers[0].detail == f"partner redirected (HTTP {status}): check partner_url"
    assert queued
    assert methods == ["POST"]  # asked once, never followed


# -- J6: a partner refusing access, or asking for a pause ------------------------------


@pytest.mark.parametrize("status", [401, 403, 407, 429, 421])
async def test_a_partner_refusing_every_call_opens_the_circuit(status: int) -> None:
    calls = 0

    async def gateway(_: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response({"message": "Unauthorized"}, status=status)

    async with serving(gateway) as url:
        partner = client(url, circuit_failure_threshold=5, circuit_reset_s=60)
        try:
            for _ in range(10):
                [answer] = await partner.answer(write_off())
                assert answer.verdict is Verdict.UNAVAILABLE
        finally:
            await partner.close()
    # What the heartbeat puts on ops.health (runner.health): the partner is not serving.
    assert partner.circuit_state is CircuitStatus.OPEN
    assert calls == 5  # the open circuit spared the partner the other calls


@pytest.mark.parametrize(
    "body",
    [
        {"status": "maintenance"},  # a gateway's maintenance page, in JSON
        {"result": "PENDING"},  # no result of the contract
        {"result": "DONE", "code": {"v": "01"}},  # J2's code object
        # Of the contract's shape, but no answer to a write-off (the review of the first
        # fix, which looked at the shape only):
        {"result": "DONE", "code": "99"},  # no write-off outcome
        {"result": "ACCEPTED"},  # a check's answer
        {"result": "REFUSED", "code": "01"},  # no refusal the contract knows
    ],
)
async def test_a_partner_answering_200_outside_the_contract_opens_the_circuit(
    body: dict[str, Any],
) -> None:
    """Every call was answered UNAVAILABLE, but each counted as a success: the circuit
    stayed closed, the heartbeat said so, GunHubPartnerCircuitOpen never fired and the
    queued follow-ups went on being sent every round (review of stop 47); the same page
    in HTML opened it."""
    async with serving(answering_json(body, 200)) as url:
        partner = client(url, circuit_failure_threshold=5, circuit_reset_s=60)
        try:
            for _ in range(10):
                [answer] = await partner.answer(write_off())
                assert answer.verdict is Verdict.UNAVAILABLE
        finally:
            await partner.close()
    assert partner.circuit_state is CircuitStatus.OPEN


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, {"result": "NOT_FOUND"}),  # an answer about the document
        (409, {"error": "in conflict with the ledger"}),  # a rejection of the call
        (422, {"error": "key reused"}),
    ],
)
async def test_an_answer_about_the_call_keeps_the_circuit_closed(
    status: int, body: dict[str, Any]
) -> None:
    async with serving(answering_json(body, status)) as url:
        partner = client(url, circuit_failure_threshold=1)
        try:
            await partner.answer(write_off())
        finally:
            await partner.close()
    assert partner.circuit_state is CircuitStatus.CLOSED


def answering_json(body: dict[str, Any], status: int) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response(body, status=status)

    return handler


@pytest.mark.parametrize("status", [429, 503])
async def test_a_pause_the_partner_asks_for_is_waited_out_before_the_next_call(
    status: int,
) -> None:
    called_at: list[float] = []

    async def throttled(_: web.Request) -> web.Response:
        called_at.append(time.monotonic())
        if len(called_at) == 1:
            return web.json_response(
                {"error": "slow down"}, status=status, headers={"Retry-After": "1"}
            )
        return web.json_response({"result": "ACCEPTED"})

    async with serving(throttled) as url:
        partner = client(url, retry_backoff_base_s=0.01, retry_attempts=3)
        try:
            [answer] = await partner.answer(partner_request(Operation.RESERVE))
        finally:
            await partner.close()
    assert answer.verdict is Verdict.VALID
    assert len(called_at) == 2
    assert called_at[1] - called_at[0] >= 0.95  # Retry-After, not the 10 ms backoff


async def test_a_pause_longer_than_a_retry_waits_holds_every_call_until_it_ends(
    tmp_path: Path,
) -> None:
    calls = 0

    async def maintenance(_: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response(
            {"error": "maintenance"}, status=503, headers={"Retry-After": "120"}
        )

    async with serving(maintenance) as url:
        partner = client(url, retry_attempts=3, retry_backoff_cap_s=0.5)
        try:
            began = time.monotonic()
            [first] = await partner.answer(write_off())
            [second] = await partner.answer(partner_request(Operation.RESERVE))
            took = time.monotonic() - began
        finally:
            await partner.close()
    assert calls == 1, "a call went out during the pause the partner asked for"
    assert took < 2
    for answer in (first, second):
        assert answer.verdict is Verdict.UNAVAILABLE
        assert answer.detail is not None
        assert "Retry-After" in answer.detail
    assert partner.circuit_state is CircuitStatus.OPEN  # not calling: the health says so
