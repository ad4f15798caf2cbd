"""A body the lodging listener reads itself, chunk by chunk (gun_hub/gateway/http_channel.py,
``_body_within``), can end badly two ways a client decides: the client goes away mid-body
(a flaky link, a killed upload: ``ConnectionResetError``), or its chunked framing is wrong
(``BadHttpMessage``). Neither is caught in the handler: each escapes to aiohttp, which logs
"Error handling request" at ERROR with a traceback, one per request, not at most one a
second, and the lodgement, counted in flight from its first byte, is counted nowhere in
``gun_hub_gateway_lodgements_total``. Any trader with a valid token (a careless one on a
bad line, or one doing it on purpose) fills the gateway's log with server errors that are
not the server's, and what the operator's alerting on ERROR sees is noise.

The listener runs for real (tests/unit/test_http_lodging.py's fixture); the client is a
raw socket, to cut the body short and to send framing no HTTP client library would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gun_hub.gateway.http_channel import CHANNEL
from gun_hub.gateway.lodging import LODGEMENTS
from gun_hub.security.web_auth import LocalAccess
from tests.builders import EORI, declaration_xml
from tests.unit.test_a_circuit_opened_by_an_outage_closes_once_the_partner_is_back import until
from tests.unit.test_http_lodging import Lodging, lodging_listener


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory) -> LocalAccess:
    return LocalAccess.create(tmp_path_factory.mktemp("access"))


@pytest.fixture
async def lodging(access: LocalAccess, keys_dir: Path) -> AsyncIterator[Lodging]:
    async with lodging_listener(access, keys_dir) as running:
        yield running


def head(lodging: Lodging, framing: str) -> bytes:
    return (
        "POST /declarations HTTP/1.1\r\nHost: gateway\r\n"
        f"Authorization: {lodging.access.lodging_authorization(EORI)}\r\n"
        f"Content-Type: application/xml\r\n{framing}\r\n\r\n"
    ).encode()


async def sent_raw(lodging: Lodging, data: bytes, *, wait_answer: bool) -> bytes:
    """``data`` sent on a connection of its own; the answer read whole, or (``wait_answer``
    false) the connection closed once the handler is reading the body."""
    host, port = lodging.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        if wait_answer:
            return await asyncio.wait_for(reader.read(), 5)
        await until(lambda: lodging.gateway.under_way == 1, 5, "reading the body")
        return b""
    finally:
        writer.close()
        await writer.wait_closed()


def cut_short() -> float:
    return LODGEMENTS.labels(channel=CHANNEL, result="body_cut_short")._value.get()  # type: ignore[no-any-return]


def server_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()} ({r.exc_info[1]!r})" if r.exc_info else r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR
    ]


async def test_a_client_that_goes_away_mid_body_is_no_server_error(
    lodging: Lodging, caplog: pytest.LogCaptureFixture
) -> None:
    body = declaration_xml(reference=f"{EORI}-HTTP-0000000801")
    before = cut_short()
    with caplog.at_level(logging.INFO):
        await sent_raw(
            lodging,
            head(lodging, f"Content-Length: {len(body)}") + body[:100],
            wait_answer=False,
        )
        await until(lambda: cut_short() == before + 1, 5, "counted as cut short")
    assert lodging.gateway.busy is False
    assert lodging.sender.published == []
    assert server_errors(caplog) == [], "a client gone away is logged as the server's error"


async def test_a_badly_chunked_body_is_answered_400_and_is_no_server_error(
    lodging: Lodging, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        answer = await sent_raw(
            lodging,
            head(lodging, "Transfer-Encoding: chunked") + b"zz\r\n<Declaration\r\n0\r\n\r\n",
            wait_answer=True,
        )
    status_line = answer.split(b"\r\n", 1)[0]
    assert b" 400 " in status_line, answer[:200]
    assert lodging.sender.published == []
    assert server_errors(caplog) == [], "a client's framing fault is logged as a server error"
