"""Issue 13, item 2: lodging over HTTP, each answer the contract of POST /declarations
gives (gun_hub/gateway/http_channel.py).

The lodging listener runs for real (aiohttp on a free port) with the portal key and
tokens made at test time; the broker behind it is a list (tests/gateway_fixtures.py; the
end-to-end test in tests/e2e/test_intake_channels.py runs it against the real one).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gun_contract.security.entitlements import GATEWAY_PARTY
from gun_contract.topics import topic_registry
from gun_hub.gateway.http_channel import lodging_app
from gun_hub.gateway.lodging import Gateway
from gun_hub.security.web_auth import LocalAccess, PortalKeys, TokenPolicy, TraderTokens
from gun_hub.web.listeners import Listener
from gun_tools.processes import free_port
from tests.builders import EORI, declaration_xml
from tests.conftest import envelope_of
from tests.gateway_fixtures import RecordingSender, gateway_with
from tests.local_cluster import poll_until

LIMIT = 64 * 1024
OWN = f"{EORI}-INV-1"  # a reference of the trader's own (domain/reference_namespace.py)
STATUS_URL = "https://status.example/gun"


@dataclass
class Lodging:
    url: str
    access: LocalAccess
    sender: RecordingSender
    gateway: Gateway

    async def post(
        self,
        body: bytes | AsyncIterator[bytes],
        *,
        eori: str | None = EORI,
        content_type: str = "application/xml",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        sent = {"Content-Type": content_type, **(headers or {})}
        if eori is not None:
            sent["Authorization"] = self.access.trader_authorization(eori)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/declarations", data=body, headers=sent) as answer,
        ):
            return answer.status, dict(answer.headers), await answer.json()


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory) -> LocalAccess:
    return LocalAccess.create(tmp_path_factory.mktemp("access"))


@contextlib.asynccontextmanager
async def lodging_listener(
    access: LocalAccess, keys_dir: Path, **app_options: Any
) -> AsyncIterator[Lodging]:
    """The lodging listener on a free port, its gateway recording what it publishes."""
    topics = topic_registry("gun", ("dgal",))
    sender = RecordingSender(envelope_of(GATEWAY_PARTY, topics, keys_dir), topics.declarations)
    gateway = gateway_with(sender, max_bytes=LIMIT)
    tokens = TraderTokens(
        PortalKeys(access.portal_jwks), TokenPolicy(issuer=access.issuer, audience=access.audience)
    )
    port = free_port()
    listener = Listener("lodging", lodging_app(gateway, tokens, **app_options), "127.0.0.1", port)
    await gateway.start()
    await listener.start()
    try:
        yield Lodging(f"http://127.0.0.1:{port}", access, sender, gateway)
    finally:
        await listener.stop()
        await gateway.stop()


@pytest.fixture
async def lodging(access: LocalAccess, keys_dir: Path) -> AsyncIterator[Lodging]:
    async with lodging_listener(access, keys_dir, status_url=STATUS_URL) as running:
        yield running


async def test_a_trader_s_own_declaration_is_accepted_202_with_where_to_follow_it(
    lodging: Lodging,
) -> None:
    status, headers, body = await lodging.post(
        declaration_xml(reference="FR12345678901234-HTTP-0000000001")
    )
    assert status == 202
    assert body == {
        "reference": "FR12345678901234-HTTP-0000000001",
        "version": 1,
        "declarant": EORI,
        "status": "/declarations/FR12345678901234-HTTP-0000000001",
    }
    assert headers["Location"] == f"{STATUS_URL}/declarations/FR12345678901234-HTTP-0000000001"
    assert lodging.sender.references() == ["FR12345678901234-HTTP-0000000001"]


async def test_without_a_valid_portal_token_nothing_is_looked_at(lodging: Lodging) -> None:
    status, headers, _ = await lodging.post(declaration_xml(), eori=None)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    forged = {"Authorization": "Bearer eyJhbGciOiJFUzI1NiJ9.e30.AAAA"}
    assert (await lodging.post(declaration_xml(), eori=None, headers=forged))[0] == 401
    assert lodging.sender.published == []


async def test_a_declaration_of_another_declarant_is_refused_403_with_the_reason(
    lodging: Lodging,
) -> None:
    status, _, body = await lodging.post(declaration_xml(), eori="DE999999999")
    assert status == 403
    assert body["kind"] == "DECLARANT_MISMATCH"
    assert f"the declaration's declarant is {EORI}" in body["error"]
    assert "DE999999999" in body["error"]
    assert lodging.sender.published == []


async def test_an_invalid_declaration_is_refused_400_with_the_hub_s_precise_reason(
    lodging: Lodging,
) -> None:
    broken = declaration_xml().replace(b"<Version>1</Version>", b"<Version>one</Version>")
    status, _, body = await lodging.post(broken)
    assert status == 400
    assert body["kind"] == "XML_SCHEMA"
    assert "/Declaration/Version" in body["error"]
    assert lodging.sender.published == []


async def test_a_body_announced_over_the_limit_is_refused_413_unread(lodging: Lodging) -> None:
    padded = declaration_xml() + b" " * LIMIT
    status, _, body = await lodging.post(padded)
    assert status == 413
    assert body["kind"] == "XML_OVERSIZED"
    assert f"{len(padded)} bytes, over the limit of {LIMIT}" in body["error"]


async def test_a_chunked_body_is_refused_413_as_soon_as_it_passes_the_limit(
    lodging: Lodging,
) -> None:
    async def endless() -> AsyncIterator[bytes]:
        yield declaration_xml()
        for _ in range(4 * LIMIT // 1024):
            yield b" " * 1024

    status, _, body = await lodging.post(endless())
    assert status == 413
    assert f"over the limit of {LIMIT}" in body["error"]


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "application/xml; charset=iso-8859-1"]
)
async def test_anything_but_utf_8_xml_is_refused_415(lodging: Lodging, content_type: str) -> None:
    status, _, _ = await lodging.post(declaration_xml(), content_type=content_type)
    assert status == 415


async def test_a_broker_that_does_not_confirm_gets_503_and_lodging_again_is_allowed(
    lodging: Lodging,
) -> None:
    lodging.sender.confirm = False
    status, headers, body = await lodging.post(declaration_xml(reference=OWN))
    assert status == 503
    assert "Retry-After" in headers
    assert "send it again" in body["error"]
    lodging.sender.confirm = True
    assert (await lodging.post(declaration_xml(reference=OWN)))[0] == 202


async def test_beyond_the_lodgements_in_flight_the_answer_is_503_not_a_queue(
    lodging: Lodging,
) -> None:
    held, all_waiting = asyncio.Event(), asyncio.Event()
    publish = lodging.sender.publish
    arrived = 0

    async def slow_publish(value: bytes, reference: str) -> asyncio.Future[Any]:
        nonlocal arrived
        arrived += 1
        if arrived == 4:  # the gateway's max_in_flight: all checked, waiting for the broker
            all_waiting.set()
        await held.wait()
        return await publish(value, reference)

    lodging.sender.publish = slow_publish  # type: ignore[method-assign]
    waiting = [
        asyncio.create_task(
            lodging.post(declaration_xml(reference=f"FR12345678901234-BUSY-{n:010d}"))
        )
        for n in range(4)
    ]
    async with asyncio.timeout(10):
        await all_waiting.wait()
    status, headers, _ = await lodging.post(
        declaration_xml(reference="FR12345678901234-BUSY-0000000099")
    )
    held.set()
    assert (status, headers.get("Retry-After")) == (503, "1")
    assert [(await task)[0] for task in waiting] == [202] * 4
    assert "FR12345678901234-BUSY-0000000099" not in lodging.sender.references()


async def _uploads_counted(gateway: Gateway) -> None:
    """Until the gateway counts its lodgements in flight full (no event marks it)."""

    async def full() -> bool:
        return gateway.busy

    await poll_until("the lodgements in flight counted full", full, 10)


async def test_a_slow_upload_counts_as_in_flight_from_its_first_byte(lodging: Lodging) -> None:
    """Bodies being received count toward the lodgements in flight: a trader opening many
    slow uploads gets 503 once the limit is reached, instead of having the gateway hold
    every body in memory. Stop 30, found by review (this test first): a lodgement counted
    only once its whole body was read, so the uploads were unbounded."""
    go_on = asyncio.Event()
    xml = declaration_xml(reference=OWN)

    async def slow_body() -> AsyncIterator[bytes]:
        yield xml[:100]
        await go_on.wait()
        yield xml[100:]

    uploads = [asyncio.create_task(lodging.post(slow_body())) for _ in range(4)]
    await _uploads_counted(lodging.gateway)
    status, headers, _ = await lodging.post(
        declaration_xml(reference="FR12345678901234-BUSY-0000000099")
    )
    go_on.set()
    assert (status, headers.get("Retry-After")) == (503, "1")
    assert [(await upload)[0] for upload in uploads] == [202] * 4
    assert not lodging.gateway.busy


async def test_an_upload_that_stalls_is_answered_408_and_frees_its_place(
    access: LocalAccess, keys_dir: Path
) -> None:
    never = asyncio.Event()

    async def stalled_body() -> AsyncIterator[bytes]:
        yield b"<Declaration"
        await never.wait()
        yield b"/>"

    async with lodging_listener(access, keys_dir, body_timeout_s=0.5) as lodging:
        try:
            status, _, body = await asyncio.wait_for(lodging.post(stalled_body()), 10)
        finally:
            never.set()
        assert status == 408
        assert "0.5 s" in body["error"]
        assert not lodging.gateway.busy
