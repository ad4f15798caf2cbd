"""The simulated partner system's HTTP API honours idempotency keys and declaration
versions, gives write-offs back, and shows its ledger to an independent checker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.partner_fixtures import RunningPartner, running_partner

DOC = "CHEDP.FR.2026.0001234"
DECL = "26FR000690I0000301"
BASE = f"/api/v1/documents/{DOC}/reservations/{DECL}"


@pytest.fixture
async def partner(samples: Path, tmp_path: Path) -> AsyncIterator[RunningPartner]:
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "l.db"
    ) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def position(quantity: str, version: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "document_type": "N853",
        "declarant_eori": "FR12345678901234",
        "country_of_destination": "FR",
        "lines": [
            {
                "goods_item": 1,
                "line": 1,
                "quantity": quantity,
                "unit": "KGM",
                "commodity_code": "0302130000",
            }
        ],
    }
    if version is not None:
        body["declaration_version"] = version
    return body


async def call(
    http: aiohttp.ClientSession,
    partner: RunningPartner,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    key: str | None = None,
) -> tuple[int, dict[str, Any]]:
    headers = {"Idempotency-Key": key} if key else {}
    async with http.request(method, partner.url + path, json=body, headers=headers) as answer:
        return answer.status, await answer.json()


def line_1(partner: RunningPartner) -> tuple[int, int, int]:
    """(reserved, written off, given back) on line 1, whole kilograms in these tests."""
    [line, _] = partner.store.balances(DOC)
    return int(line.reserved), int(line.written_off), int(line.given_back)


async def test_a_write_off_repeated_with_its_key_is_applied_once_and_answers_the_same(
    http: aiohttp.ClientSession, partner: RunningPartner
) -> None:
    await call(http, partner, "PUT", BASE, position("300", 1), key=f"{DECL}/1/dgal/RESERVE")
    key = f"{DECL}/1/dgal/WRITE_OFF"
    body = {"declaration_version": 1}
    first = await call(http, partner, "POST", BASE + "/write-off", body, key=key)
    again = await call(http, partner, "POST", BASE + "/write-off", body, key=key)
    assert first == again == (200, {"result": "DONE", "code": "01"})
    assert line_1(partner) == (0, 300, 0)
    # Without the key the state machine still says "already consumed", a different answer.
    assert await call(http, partner, "POST", BASE + "/write-off", body) == (
        200,
        {"result": "DONE", "code": "03"},
    )


async def test_a_write_off_whose_answer_was_lost_is_not_applied_twice_when_retried(
    http: aiohttp.ClientSession, partner: RunningPartner
) -> None:
    await call(http, partner, "PUT", BASE, position("300", 1))
    await call(http, partner, "PUT", "/admin/faults", {"lose_next": 1, "hang_s": 1})
    key = f"{DECL}/1/dgal/WRITE_OFF"
    body = {"declaration_version": 1}
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await call(http, partner, "POST", BASE + "/write-off", body, key=key)
    assert line_1(partner) == (0, 300, 0)  # applied: only the answer was lost
    retried = await call(http, partner, "POST", BASE + "/write-off", body, key=key)
    assert retried == (200, {"result": "DONE", "code": "01"})
    assert line_1(partner) == (0, 300, 0)


async def test_a_key_used_again_for_another_call_is_refused(
    http: aiohttp.ClientSession, partner: RunningPartner
) -> None:
    key = f"{DECL}/1/dgal/RESERVE"
    assert (await call(http, partner, "PUT", BASE, position("300", 1), key=key))[0] == 200
    status, body = await call(http, partner, "PUT", BASE, position("400", 1), key=key)
    assert status == 422
    assert "key" in body["error"]
    assert line_1(partner) == (300, 0, 0)


@pytest.mark.parametrize(
    ("method", "path"),
    [("DELETE", ""), ("POST", "/write-off"), ("POST", "/give-back"), ("PUT", "")],
)
async def test_an_operation_of_an_older_version_is_refused_as_stale(
    http: aiohttp.ClientSession, partner: RunningPartner, method: str, path: str
) -> None:
    await call(http, partner, "PUT", BASE, position("300", 2))
    body = position("900", 1) if method == "PUT" else {"declaration_version": 1}
    status, answer = await call(http, partner, method, BASE + path, body, key=f"k-{method}{path}")
    assert status == 200
    assert answer["result"] == "REFUSED"
    assert answer["code"] == "STALE_VERSION"
    assert "older" in answer["message"]
    assert line_1(partner) == (300, 0, 0)


async def test_a_written_off_quantity_is_given_back_once(
    http: aiohttp.ClientSession, partner: RunningPartner
) -> None:
    await call(http, partner, "PUT", BASE, position("300", 1))
    await call(http, partner, "POST", BASE + "/write-off", {"declaration_version": 1})
    key = f"{DECL}/2/dgal/GIVE_BACK"
    body = {"declaration_version": 2}
    first = await call(http, partner, "POST", BASE + "/give-back", body, key=key)
    again = await call(http, partner, "POST", BASE + "/give-back", body, key=key)
    assert first == again == (200, {"result": "DONE", "code": "01"})
    assert line_1(partner) == (0, 0, 300)
    assert await call(http, partner, "POST", BASE + "/give-back", body) == (
        200,
        {"result": "DONE", "code": "03"},
    )


async def test_a_body_the_api_does_not_know_is_a_bad_request(
    http: aiohttp.ClientSession, partner: RunningPartner
) -> None:
    status, _ = await call(http, partner, "DELETE", BASE, {"declaration_version": "soon"})
    assert status == 400
    status, _ = await call(http, partner, "POST", BASE + "/write-off", {"quantity": "1"})
    assert status == 400


async def test_the_ledger_shows_every_line_per_declaration_and_version(
    http: aiohttp.ClientSession, partner: RunningPartner
) -> None:
    await call(http, partner, "PUT", BASE, position("300", 2))
    other = f"/api/v1/documents/{DOC}/reservations/26FR000690I0000302"
    await call(http, partner, "PUT", other, position("50", 1))
    await call(http, partner, "POST", other + "/write-off", {"declaration_version": 1})
    await call(http, partner, "POST", other + "/give-back", {"declaration_version": 2})
    await call(http, partner, "PUT", "/admin/faults", {"outage": True})  # never affects it
    status, ledger = await call(http, partner, "GET", "/admin/ledger")
    assert status == 200
    [document] = [d for d in ledger["documents"] if d["reference"] == DOC]
    [line] = [b for b in document["balances"] if b["line"] == 1]
    assert line == {
        "line": 1,
        "unit": "KGM",
        "authorised": "5000",
        "reserved": "300",
        "written_off": "0",
        "given_back": "50",
        "remaining": "4700",
        "positions": [
            {
                "declaration": DECL,
                "version": 2,
                "state": "ACTIVE",
                "reserved": "300",
                "written_off": "0",
                "given_back": "0",
            },
            {
                "declaration": "26FR000690I0000302",
                "version": 2,
                "state": "GIVEN_BACK",
                "reserved": "0",
                "written_off": "0",
                "given_back": "50",
            },
        ],
    }
    status, one = await call(http, partner, "GET", f"/admin/documents/{DOC}")
    assert status == 200
    assert one["balances"] == document["balances"]
    assert one["document"]["reference"] == DOC
