"""The CERTEX-style client sends the declaration version and an idempotency key with every
partner call, and maps give-backs and stale-version refusals (defects 7 and 12)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapters.base.certex import CLEARANCE_VERDICTS, _map_answer
from adapters.base.pending import PendingOperations
from adapters.base.replay import Replayer
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from gun_contract.model.verdicts import Verdict
from gun_tools.processes import free_port
from tests.adapter_fixtures import partner_request
from tests.partner_fixtures import RunningPartner, partner_client, running_partner, set_faults

DOC = "CHEDP.FR.2026.0001234"
DECL = "26FR000690I0000401"


def request(
    operation: Operation, version: int = 1, quantity: str | None = "300"
) -> AuthorityRequest:
    return partner_request(operation, reference=DECL, version=version, quantity=quantity)


@pytest.fixture
async def partner(samples: Path, tmp_path: Path) -> AsyncIterator[RunningPartner]:
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "l.db"
    ) as running:
        yield running


def line_1(partner: RunningPartner) -> tuple[int, int, int]:
    [line, _] = partner.store.balances(DOC)
    return int(line.reserved), int(line.written_off), int(line.given_back)


async def test_every_partner_call_carries_the_declaration_version_and_an_idempotency_key() -> None:
    seen: list[tuple[str, str, str | None, dict[str, Any]]] = []

    async def record(http_request: web.Request) -> web.Response:
        body = await http_request.json() if await http_request.read() else {}
        seen.append(
            (
                http_request.method,
                http_request.path,
                http_request.headers.get("Idempotency-Key"),
                body,
            )
        )
        if http_request.method in ("PUT", "POST") and "checks" in http_request.path:
            return web.json_response({"result": "ACCEPTED"})
        if http_request.method == "PUT":
            return web.json_response({"result": "ACCEPTED"})
        return web.json_response({"result": "DONE", "code": "01"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    partner = partner_client(f"http://127.0.0.1:{port}")
    try:
        for operation in Operation:
            asked = request(operation, version=3)
            [answer] = await partner.answer(asked)
            assert answer.verdict is Verdict.VALID, operation
            _, _, key, body = seen[-1]
            assert key == asked.idempotency_key_for("N853", DOC), operation
            assert body["declaration_version"] == 3, operation
    finally:
        await partner.close()
        await runner.cleanup()
    assert [(method, path.rsplit("/", 1)[-1]) for method, path, _, _ in seen] == [
        ("POST", DECL),
        ("PUT", DECL),
        ("POST", "write-off"),
        ("DELETE", DECL),
        ("POST", "give-back"),
    ]


async def test_a_write_off_whose_answer_was_lost_is_retried_and_applied_once(
    partner: RunningPartner,
) -> None:
    adapter = partner_client(partner.url, partner_timeout_s=0.5, retry_attempts=3)
    try:
        [reserved] = await adapter.answer(request(Operation.RESERVE))
        assert reserved.verdict is Verdict.VALID
        await set_faults(partner.url, lose_next=1, hang_s=1)
        [written_off] = await adapter.answer(request(Operation.WRITE_OFF, quantity=None))
    finally:
        await adapter.close()
    # The retry carried the same key: the first call's answer, not "already consumed".
    assert (written_off.verdict, written_off.partner_code) == (Verdict.VALID, "01")
    assert line_1(partner) == (0, 300, 0)


async def test_an_operation_older_than_the_partner_has_seen_is_refused_as_stale(
    partner: RunningPartner,
) -> None:
    adapter = partner_client(partner.url)
    try:
        await adapter.answer(request(Operation.RESERVE, version=2))
        [deleted] = await adapter.answer(request(Operation.DELETE, version=1, quantity=None))
    finally:
        await adapter.close()
    assert deleted.partner_code == "STALE"  # decision.xsd's form (stop 36)
    assert deleted.verdict is Verdict.MISMATCH  # a refusal, never a pass
    assert deleted.detail is not None
    assert "older" in deleted.detail
    assert line_1(partner) == (300, 0, 0)


async def test_a_write_off_the_partner_rejects_is_answered_once_and_never_replayed(
    partner: RunningPartner, tmp_path: Path
) -> None:
    """The partner simulator rejects (422) an idempotency key reused for another body:
    the write-off is answered with the rejection, not queued as if the partner were down
    (replayed for ever, holding its partition's commit: found by review in stop 30)."""
    adapter = partner_client(partner.url)
    pending = PendingOperations(tmp_path / "pending.sqlite")
    published: list[DocumentAnswer] = []

    async def publish(
        _request: AuthorityRequest, answers: tuple[DocumentAnswer, ...], _partition: int | None
    ) -> None:
        published.extend(answers)

    replayer = Replayer(pending, adapter, publish)
    try:
        await adapter.answer(request(Operation.RESERVE))
        await adapter.answer(request(Operation.WRITE_OFF, quantity=None))
        # The same operation's key with another version: the partner will never take it.
        reused = request(Operation.WRITE_OFF, quantity=None).model_copy(update={"version": 2})
        [rejected] = await replayer.ask(reused, 0, 41)
        assert len(pending) == 0  # not kept for replay
        await replayer.replay_all()
    finally:
        await adapter.close()
        pending.close()
    assert (rejected.verdict, rejected.partner_code) == (Verdict.MISMATCH, "HTTP422")
    assert published == []  # nothing replayed: answered once, on the live path
    assert line_1(partner) == (0, 300, 0)  # the first write-off stands, applied once


async def test_a_written_off_quantity_is_given_back(partner: RunningPartner) -> None:
    adapter = partner_client(partner.url)
    try:
        await adapter.answer(request(Operation.RESERVE))
        await adapter.answer(request(Operation.WRITE_OFF, quantity=None))
        [given] = await adapter.answer(request(Operation.GIVE_BACK, version=2, quantity=None))
        [again] = await adapter.answer(request(Operation.GIVE_BACK, version=2, quantity=None))
    finally:
        await adapter.close()
    assert (given.verdict, given.partner_code) == (Verdict.VALID, "01")
    assert (again.verdict, again.partner_code) == (Verdict.VALID, "01")
    assert line_1(partner) == (0, 0, 300)


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        ("01", Verdict.VALID),
        ("02", Verdict.MISMATCH),  # no write-off to give back
        ("03", Verdict.VALID),  # given back already: a redelivery
        ("05", Verdict.MISMATCH),  # still an active reservation: never written off
    ],
)
def test_give_back_outcomes_have_verdicts(code: str, verdict: Verdict) -> None:
    assert CLEARANCE_VERDICTS[Operation.GIVE_BACK][code] is verdict
    answer = _map_answer(Operation.GIVE_BACK, 200, {"result": "DONE", "code": code})
    assert answer == (verdict, code, None)


@pytest.mark.parametrize("operation", list(Operation))
def test_a_stale_version_refusal_keeps_its_code_for_every_operation(operation: Operation) -> None:
    refusal = {"result": "REFUSED", "code": "STALE_VERSION", "message": "older than 2"}
    assert _map_answer(operation, 200, refusal) == (
        Verdict.MISMATCH,
        "STALE",  # the partner's STALE_VERSION, in the form decision.xsd carries (stop 36)
        "older than 2",
    )
