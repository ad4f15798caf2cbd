"""Issue 13, item 2: lodging over HTTP, each answer the contract of POST /declarations
gives (gun_hub/gateway/http_channel.py).

The lodging listener runs for real (aiohttp on a free port) with the portal key and
tokens made at test time; the broker behind it is a list (tests/gateway_fixtures.py; the
end-to-end test in tests/e2e/test_intake_channels.py runs it against the real one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from gun_contract.security.entitlements import GATEWAY_PARTY
from gun_contract.settings import DEFAULT_LODGING_SCOPE, GatewaySettings, Settings
from gun_contract.topics import topic_registry
from gun_hub.gateway.http_channel import lodging_app
from gun_hub.gateway.lodging import DeclarationCheck, Gateway
from gun_hub.gateway.service import required_lodging_scope
from gun_hub.security.web_auth import (
    LocalAccess,
    PortalKeys,
    TokenPolicy,
    TraderTokens,
    issue_trader_token,
)
from gun_hub.web.listeners import Listener
from gun_tools.processes import free_port
from tests.builders import EORI, declaration_xml
from tests.conftest import envelope_of
from tests.gateway_fixtures import RecordingSender, gateway_with
from tests.local_cluster import poll_until

LIMIT = 64 * 1024
OWN = f"{EORI}-INV-1"  # a reference of the trader's own (domain/reference_namespace.py)
# Other traders, each lodging its own declarations (tests/gateway_fixtures.py gives the
# gateway 4 lodgements in flight, so each trader a share of 1).
OTHERS = ("DE999999999", "BE0123456789", "NL123456789")
FIFTH = "IT12345678901"
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
            sent["Authorization"] = self.access.lodging_authorization(eori)
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
    app = lodging_app(gateway, tokens, **{"scope": DEFAULT_LODGING_SCOPE, **app_options})
    listener = Listener("lodging", app, "127.0.0.1", port)
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
    # A genuine portal token, issued for another service as well as the hub (review
    # stop 37-i, 4): that service could replay it here.
    shared = issue_trader_token(
        lodging.access.portal_key,
        EORI,
        issuer=lodging.access.issuer,
        audience=lodging.access.audience,
        extra={"aud": ["tracking-partner.example", lodging.access.audience]},
    )
    status, headers, _ = await lodging.post(
        declaration_xml(), eori=None, headers={"Authorization": f"Bearer {shared}"}
    )
    assert (status, headers["WWW-Authenticate"].startswith("Bearer")) == (401, True)
    assert lodging.sender.published == []


def _portal_token(lodging: Lodging, **claims: Any) -> dict[str, str]:
    """Authorization with a genuine portal token for EORI carrying ``claims`` as given."""
    issued = issue_trader_token(
        lodging.access.portal_key,
        EORI,
        issuer=lodging.access.issuer,
        audience=lodging.access.audience,
        extra=claims,
    )
    return {"Authorization": f"Bearer {issued}"}


@pytest.mark.parametrize(
    "scope",
    [
        None,  # a lookup token, as the portal gave every trader before stop 38
        "",
        "gun:read",
        "gun:lodge:all",  # one scope token, not gun:lodge
        "GUN:LODGE",
        "gun:read\tgun:lodge",  # scope tokens are separated by a space (RFC 6749, 3.3)
        ["gun:lodge"],  # the claim is a text (RFC 8693, 4.2), never a list
    ],
)
async def test_a_lookup_token_cannot_lodge(lodging: Lodging, scope: object) -> None:
    """A token handed to a read-only integration (a forwarder's tracking tool) reads the
    trader lookup (tests/unit/test_web_listeners.py) but lodges nothing in the trader's
    name (review stop 37-i, 4): lodging needs ``gun:lodge`` among the token's ``scope``.
    403 ``insufficient_scope`` (RFC 6750, 3.1): the token is genuine, it does not allow this."""
    claims = {} if scope is None else {"scope": scope}
    status, headers, body = await lodging.post(
        declaration_xml(reference=OWN), eori=None, headers=_portal_token(lodging, **claims)
    )
    assert status == 403
    assert headers["WWW-Authenticate"] == (
        'Bearer realm="gun-hub", error="insufficient_scope", scope="gun:lodge"'
    )
    assert body["kind"] == "INSUFFICIENT_SCOPE"
    assert "gun:lodge" in body["error"]
    assert lodging.sender.published == []


@pytest.mark.parametrize("scope", ["gun:lodge", "openid gun:read gun:lodge"])
async def test_a_token_with_the_lodging_scope_lodges(lodging: Lodging, scope: str) -> None:
    status, _, body = await lodging.post(
        declaration_xml(reference=OWN), eori=None, headers=_portal_token(lodging, scope=scope)
    )
    assert (status, body["declarant"]) == (202, EORI)
    assert len(lodging.sender.published) == 1


def test_lodging_needs_gun_lodge_unless_the_operator_opts_out_and_is_warned(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``GUN_HUB_GATEWAY__LODGING_SCOPE``: ``gun:lodge`` unless set; one scope token (RFC
    6749, 3.3), so a list or a typing error is refused at start; empty is the opt-out for a
    portal that does not grant it yet, never silent: a warning at every start."""
    assert GatewaySettings().lodging_scope == "gun:lodge"
    with caplog.at_level(logging.WARNING, logger="gun_hub.gateway.service"):
        assert required_lodging_scope(GatewaySettings()) == "gun:lodge"
        assert required_lodging_scope(GatewaySettings(lodging_scope="customs:lodge")) == (
            "customs:lodge"
        )
    assert caplog.records == []
    for wrong in ("gun:lodge gun:read", " gun:lodge", "gun\\lodge", 'gun"lodge', "gün:lodge"):
        with pytest.raises(ValidationError, match="lodging_scope"):
            GatewaySettings(lodging_scope=wrong)
    monkeypatch.setenv("GUN_HUB_GATEWAY__LODGING_SCOPE", "")
    opted_out = Settings().gateway
    with caplog.at_level(logging.WARNING, logger="gun_hub.gateway.service"):
        assert required_lodging_scope(opted_out) is None
    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING
    assert "GUN_HUB_GATEWAY__LODGING_SCOPE" in warning.getMessage()


async def test_with_the_opt_out_a_lookup_token_lodges(access: LocalAccess, keys_dir: Path) -> None:
    async with lodging_listener(access, keys_dir, scope=None) as running:
        status, _, _ = await running.post(
            declaration_xml(reference=OWN), eori=None, headers=_portal_token(running)
        )
    assert status == 202


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


def own_declaration(eori: str, number: str) -> bytes:
    """A declaration of ``eori``'s, under a reference of its own."""
    return declaration_xml(reference=f"{eori}-{number}", declarant=eori)


def lodgements_counted(result: str) -> float:
    labels = {"channel": "http", "result": result}
    return REGISTRY.get_sample_value("gun_hub_gateway_lodgements_total", labels) or 0.0


async def test_beyond_the_lodgements_in_flight_the_answer_is_503_not_a_queue(
    lodging: Lodging,
) -> None:
    """The global bound: four traders each hold their share, a fifth trader, with nothing
    in flight, is answered 503."""
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
        asyncio.create_task(lodging.post(own_declaration(eori, "BUSY-1"), eori=eori))
        for eori in (EORI, *OTHERS)
    ]
    async with asyncio.timeout(10):
        await all_waiting.wait()
    turned_away = lodgements_counted("busy")
    status, headers, _ = await lodging.post(own_declaration(FIFTH, "BUSY-1"), eori=FIFTH)
    held.set()
    assert (status, headers.get("Retry-After")) == (503, "1")
    assert lodgements_counted("busy") == turned_away + 1
    assert [(await task)[0] for task in waiting] == [202] * 4
    assert f"{FIFTH}-BUSY-1" not in lodging.sender.references()


async def _uploads_counted(gateway: Gateway) -> None:
    """Until the gateway counts its lodgements in flight full (no event marks it)."""

    async def full() -> bool:
        return gateway.busy

    await poll_until("the lodgements in flight counted full", full, 10)


async def test_a_slow_upload_counts_as_in_flight_from_its_first_byte(lodging: Lodging) -> None:
    """Bodies being received count toward the lodgements in flight: traders opening many
    slow uploads get 503 once the limit is reached, instead of having the gateway hold
    every body in memory. Stop 30, found by review (this test first): a lodgement counted
    only once its whole body was read, so the uploads were unbounded."""
    go_on = asyncio.Event()

    async def slow_body(xml: bytes) -> AsyncIterator[bytes]:
        yield xml[:100]
        await go_on.wait()
        yield xml[100:]

    uploads = [
        asyncio.create_task(lodging.post(slow_body(own_declaration(eori, "SLOW-1")), eori=eori))
        for eori in (EORI, *OTHERS)
    ]
    await _uploads_counted(lodging.gateway)
    status, headers, _ = await lodging.post(own_declaration(FIFTH, "BUSY-1"), eori=FIFTH)
    go_on.set()
    assert (status, headers.get("Retry-After")) == (503, "1")
    assert [(await upload)[0] for upload in uploads] == [202] * 4
    assert not lodging.gateway.busy


async def test_one_trader_s_slow_uploads_do_not_shut_out_another_trader(
    lodging: Lodging,
) -> None:
    """Each trader has a share of the lodgements in flight (here 1 of 4): past it, its
    uploads are answered 429, and another trader still lodges. Stop 37, found by review
    (this test first): one trader's slow uploads held every place, everyone else got 503."""
    go_on = asyncio.Event()
    xml = own_declaration(EORI, "SLOW-1")

    async def slow_body() -> AsyncIterator[bytes]:
        yield xml[:100]
        await go_on.wait()
        yield xml[100:]

    held = asyncio.create_task(lodging.post(slow_body()))

    async def share_held() -> bool:
        return lodging.gateway.holds_its_share(EORI)

    await poll_until("the trader's share of lodgements in flight held", share_held, 10)
    refused_before = lodgements_counted("trader_busy")
    try:
        hogs = await asyncio.gather(*(lodging.post(slow_body()) for _ in range(3)))
        other = await lodging.post(own_declaration(OTHERS[0], "INV-1"), eori=OTHERS[0])
    finally:
        go_on.set()
    assert other[0] == 202, f"another trader was refused while one held its share: {other}"
    assert [(status, headers.get("Retry-After")) for status, headers, _ in hogs] == [(429, "1")] * 3
    assert hogs[0][2] == {
        "error": f"{EORI} has 1 declaration being lodged already, the most one trader may "
        "have at once: send again once one is answered",
        "kind": "TOO_MANY_IN_FLIGHT",
    }
    assert lodgements_counted("trader_busy") == refused_before + 3
    assert (await held)[0] == 202
    assert lodging.sender.references() == [f"{OTHERS[0]}-INV-1", f"{EORI}-SLOW-1"]
    assert not lodging.gateway.holds_its_share(EORI)


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


async def test_an_upload_that_sends_nothing_for_a_while_is_answered_408_before_its_time_is_up(
    access: LocalAccess, keys_dir: Path
) -> None:
    """A body must keep arriving: one silent for ``body_idle_timeout_s`` gives its place
    back at once, rather than after the whole body's time."""
    never = asyncio.Event()

    async def stalled_body() -> AsyncIterator[bytes]:
        yield b"<Declaration"
        await never.wait()
        yield b"/>"

    async with lodging_listener(
        access, keys_dir, body_timeout_s=60, body_idle_timeout_s=0.5
    ) as lodging:
        timed_out = lodgements_counted("body_timeout")
        try:
            status, _, body = await asyncio.wait_for(lodging.post(stalled_body()), 10)
        finally:
            never.set()
        assert status == 408
        assert body["error"] == "no part of the body arrived for 0.5 s"
        assert lodgements_counted("body_timeout") == timed_out + 1
        assert not lodging.gateway.holds_its_share(EORI)


async def test_a_body_that_keeps_arriving_may_take_longer_than_the_idle_time(
    access: LocalAccess, keys_dir: Path
) -> None:
    """The idle time is between two parts of a body, not for the whole of it."""
    xml = own_declaration(EORI, "STEADY-1")
    parts = [xml[n : n + len(xml) // 5 + 1] for n in range(0, len(xml), len(xml) // 5 + 1)]

    async def steady_body() -> AsyncIterator[bytes]:
        for part in parts:
            yield part
            await asyncio.sleep(0.5)  # a slow client, the behaviour under test

    async with lodging_listener(access, keys_dir, body_idle_timeout_s=2) as lodging:
        status, _, _ = await asyncio.wait_for(lodging.post(steady_body()), 20)
    assert len(parts) * 0.5 > 2
    assert status == 202


def test_a_trader_s_share_is_a_quarter_of_the_lodgements_in_flight_unless_set() -> None:
    def share(**options: int) -> int:
        return Gateway(RecordingSender(), DeclarationCheck(LIMIT), **options).trader_share

    assert share(max_in_flight=32) == 8
    assert share(max_in_flight=3) == 1
    assert share(max_in_flight=32, max_in_flight_per_trader=5) == 5
    assert share(max_in_flight=4, max_in_flight_per_trader=10) == 4
    assert GatewaySettings().max_in_flight_per_trader is None
    assert GatewaySettings(max_in_flight_per_trader="3").max_in_flight_per_trader == 3


def test_each_trader_s_lodgements_in_flight_are_counted_apart() -> None:
    gateway = Gateway(
        RecordingSender(), DeclarationCheck(LIMIT), max_in_flight=8, max_in_flight_per_trader=2
    )
    with gateway.in_flight(EORI):
        assert not gateway.holds_its_share(EORI)
        with gateway.in_flight(EORI), gateway.in_flight(OTHERS[0]):
            assert gateway.holds_its_share(EORI)
            assert not gateway.holds_its_share(OTHERS[0])
            assert not gateway.busy
        assert not gateway.holds_its_share(EORI)
    with gateway.in_flight():  # the file drop's: nobody's share
        assert not gateway.holds_its_share(EORI)
