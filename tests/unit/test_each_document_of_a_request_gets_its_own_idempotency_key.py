"""Each partner call of a request (one per quoted document) carries its own idempotency
key: a partner that remembers keys per client (the IETF idempotency-key draft, Stripe-like
APIs), not per document of the URL, applies every document. Found by review, stop 37 (J1):
the request id went out on every document's call, so such a partner answered document B
from document A's memory (B never written off, the hub recording WRITTEN_OFF) or 422.

The key stays the same across retries, replays and restarts, and keeps the document's
reference (a war-material licence number) out of the header."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.base.pending import PendingOperations
from adapters.base.replay import Replayer
from gun_contract.model.exchange import (
    AuthorityRequest,
    DocumentAnswer,
    Operation,
    RequestedDocument,
    RequestedItem,
    request_id_for,
)
from gun_contract.model.verdicts import Verdict
from tests.adapter_fixtures import partner_request
from tests.partner_fixtures import (
    RunningPartner,
    partner_client,
    running_partner,
    serving,
    set_faults,
)

DECL = "26FR000690I0000401"
FISH = "CHEDP.FR.2026.0001234"  # line 1: 0302, 5000 KGM
TINS = "CHEDP.FR.2026.0004410"  # line 1: 1604, 30 KGM


def two_documents(operation: Operation, version: int = 1) -> AuthorityRequest:
    """A request quoting two N853 documents, one per goods item (a follow-up quotes the
    documents only, as the hub sends it)."""
    follow_up = operation in (Operation.WRITE_OFF, Operation.DELETE, Operation.GIVE_BACK)
    base = partner_request(operation, reference=DECL, version=version)

    def quoted(reference: str, quantity: str) -> RequestedDocument:
        if follow_up:
            return RequestedDocument(code="N853", reference=reference)
        return RequestedDocument(
            code="N853", reference=reference, line=1, quantity=quantity, unit="KGM"
        )

    return base.model_copy(
        update={
            "items": (
                RequestedItem(
                    number=1, commodity_code="0302130000", documents=(quoted(FISH, "300"),)
                ),
                RequestedItem(
                    number=2, commodity_code="1604140000", documents=(quoted(TINS, "10"),)
                ),
            )
        }
    )


@pytest.fixture
async def partner(samples: Path, tmp_path: Path) -> AsyncIterator[RunningPartner]:
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "l.db"
    ) as running:
        yield running


async def keys_per_client(partner: RunningPartner, on: bool = True) -> None:
    await set_faults(partner.url, keys_per_client=on)


def written_off(partner: RunningPartner, reference: str) -> int:
    [line, *_] = partner.store.balances(reference)
    return int(line.written_off)


async def test_a_partner_keeping_keys_per_client_writes_off_every_document() -> None:
    """The reviewer's partner: keys per client, a repeat compared by its body only and
    answered from memory (a write-off's body is the same for every document)."""
    memory: dict[str, tuple[bytes, dict[str, Any]]] = {}
    applied: list[str] = []

    async def partner_app(request: web.Request) -> web.Response:
        key = request.headers["Idempotency-Key"]
        body = await request.read()
        if key in memory:
            seen_body, answer = memory[key]
            if seen_body != body:
                return web.json_response({"error": "key reused"}, status=422)
            return web.json_response(answer)
        applied.append(request.path.split("/")[4])
        answer = {"result": "DONE", "code": "01"}
        memory[key] = (body, answer)
        return web.json_response(answer)

    async with serving(partner_app) as url:
        adapter = partner_client(url)
        try:
            answers = await adapter.answer(two_documents(Operation.WRITE_OFF))
        finally:
            await adapter.close()
    assert [a.verdict for a in answers] == [Verdict.VALID, Verdict.VALID]
    assert sorted(applied) == [FISH, TINS], f"answered VALID for both, written off only {applied}"


async def test_the_keys_of_two_documents_differ_and_each_is_the_same_on_every_attempt() -> None:
    seen: dict[str, list[str]] = {}

    async def partner_app(request: web.Request) -> web.Response:
        reference = request.path.split("/")[4]
        seen.setdefault(reference, []).append(request.headers["Idempotency-Key"])
        if len(seen[reference]) == 1:  # every document's first attempt fails: retried
            return web.json_response({"error": "internal"}, status=500)
        return web.json_response({"result": "DONE", "code": "01"})

    request = two_documents(Operation.DELETE)
    async with serving(partner_app) as url:
        adapter = partner_client(url, retry_attempts=2, retry_backoff_base_s=0.01)
        try:
            first = await adapter.answer(request)
            # Asked again from a copy read back (a replay from the pending queue, or the
            # request read from the log again after a restart): the same keys.
            read_back = AuthorityRequest.model_validate_json(request.model_dump_json())
            again = await adapter.answer(read_back)
        finally:
            await adapter.close()
    assert [a.verdict for a in first + again] == [Verdict.VALID] * 4
    fish, tins = seen[FISH], seen[TINS]
    assert len(fish) == len(tins) == 3
    assert len(set(fish)) == len(set(tins)) == 1, "a retry or a replay changed the key"
    assert fish[0] != tins[0]
    for key in (fish[0], tins[0]):
        assert key.startswith(request.request_id)  # operations can tell the request by it
        assert FISH not in key
        assert TINS not in key  # a licence number stays out of the header
        assert len(key) <= 255  # what the partner API accepts


async def test_the_simulator_keeping_keys_per_client_writes_off_every_document(
    partner: RunningPartner,
) -> None:
    adapter = partner_client(partner.url)
    try:
        reserved = await adapter.answer(two_documents(Operation.RESERVE))
        assert [a.verdict for a in reserved] == [Verdict.VALID, Verdict.VALID]
        await keys_per_client(partner)
        answers = await adapter.answer(two_documents(Operation.WRITE_OFF))
    finally:
        await adapter.close()
    assert [(a.verdict, a.partner_code) for a in answers] == [(Verdict.VALID, "01")] * 2
    assert (written_off(partner, FISH), written_off(partner, TINS)) == (300, 10)


async def test_the_simulator_keeping_keys_per_client_answers_one_key_sent_twice_from_memory(
    partner: RunningPartner,
) -> None:
    """The mode the kit switches on does what such a partner does: the request id sent on
    both documents' calls (what adapters before stop 37 did) writes off the first only,
    and the second is answered from the first's memory."""
    adapter = partner_client(partner.url)
    try:
        await adapter.answer(two_documents(Operation.RESERVE))
    finally:
        await adapter.close()
    await keys_per_client(partner)
    base = f"{partner.url}/api/v1/documents/{{}}/reservations/{DECL}/write-off"
    headers = {"Idempotency-Key": f"{DECL}/1/dgal/WRITE_OFF"}
    async with aiohttp.ClientSession() as http:
        for reference in (FISH, TINS):
            async with http.post(
                base.format(reference), json={"declaration_version": 1}, headers=headers
            ) as answer:
                assert await answer.json() == {"result": "DONE", "code": "01"}
    assert (written_off(partner, FISH), written_off(partner, TINS)) == (300, 0)


@pytest.mark.parametrize(
    ("operation", "version", "code"),
    [
        (Operation.WRITE_OFF, 1, "03"),  # already written off
        (Operation.DELETE, 1, "02"),  # no reservation left to delete
        (Operation.GIVE_BACK, 2, "03"),  # already given back
    ],
)
async def test_an_operation_queued_before_the_upgrade_and_applied_already_is_answered_by_state(
    partner: RunningPartner, tmp_path: Path, operation: Operation, version: int, code: str
) -> None:
    """Upgrade (docs/deployment.md): an operation queued by an earlier release, which the
    partner applied under the old key (the request id) though its answer was lost, is
    replayed under its new key. The partner does not know that key, so it answers by its
    ledger's state (03 already written off or given back, 02 nothing to delete): VALID,
    and the ledger changes once."""
    adapter = partner_client(partner.url)
    old = partner_request(Operation.RESERVE, reference=DECL, quantity="300")
    queued = partner_request(operation, reference=DECL, version=version, quantity=None)
    url = f"{partner.url}/api/v1/documents/{FISH}/reservations/{DECL}"
    write_off = ("POST", "/write-off", 1, Operation.WRITE_OFF)
    old_calls = {
        Operation.WRITE_OFF: [write_off],
        Operation.DELETE: [("DELETE", "", 1, Operation.DELETE)],
        Operation.GIVE_BACK: [write_off, ("POST", "/give-back", 2, Operation.GIVE_BACK)],
    }[operation]
    pending = PendingOperations(tmp_path / "pending.sqlite")
    published: list[DocumentAnswer] = []

    async def publish(
        _request: AuthorityRequest, answers: tuple[DocumentAnswer, ...], _partition: int | None
    ) -> None:
        published.extend(answers)

    try:
        [reserved] = await adapter.answer(old)
        assert reserved.verdict is Verdict.VALID
        async with aiohttp.ClientSession() as http:
            for method, suffix, call_version, called in old_calls:
                # What the earlier release sent: the request id as the key.
                old_key = request_id_for(DECL, call_version, "dgal", called)
                async with http.request(
                    method,
                    url + suffix,
                    json={"declaration_version": call_version},
                    headers={"Idempotency-Key": old_key},
                ) as answer:
                    assert (await answer.json())["code"] == "01"
        before = [(b.reserved, b.written_off, b.given_back) for b in partner.store.balances(FISH)]
        pending.add(queued, 0, 7)  # queued by the earlier release: its answer was lost
        await Replayer(pending, adapter, publish).replay_all()
        left = len(pending)
    finally:
        await adapter.close()
        pending.close()
    assert [(a.verdict, a.partner_code) for a in published] == [(Verdict.VALID, code)]
    assert left == 0
    after = [(b.reserved, b.written_off, b.given_back) for b in partner.store.balances(FISH)]
    assert after == before  # applied once, before the upgrade
