"""What the lodging listener leaves for the operator when it refuses
(gun_hub/gateway/http_channel.py; docs/intake-channels.md, "What a refusal leaves": each
lodgement is counted in ``gun_hub_gateway_lodgements_total{channel, result}``, result the
refusal kind; a flood must not flood the logs, gun_hub/web/common.py ``OncePerSecond``).

* A body refused 413 ``XML_OVERSIZED`` before the gateway's check, over its announced
  ``Content-Length`` or once a chunked body passes the limit, is answered with that kind
  but never counted: the counter says no oversized body was ever sent over HTTP.
* Every 403 the check gives is logged at WARNING as "tried to lodge a declaration for
  another declarant", a ``REFERENCE_NOT_THE_DECLARANTS`` too (which is the trader's own
  declaration under a reference outside its namespace: the log names the wrong fault),
  one line per request, not at most one a second: a trader with a valid token writes the
  gateway's log at the rate it can post small declarations.

The listener runs for real, the broker is a list (tests/unit/test_http_lodging.py's
fixtures).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from gun_hub.security.web_auth import LocalAccess
from tests.builders import declaration_xml
from tests.unit.test_http_lodging import LIMIT, Lodging, lodging_listener


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory) -> LocalAccess:
    return LocalAccess.create(tmp_path_factory.mktemp("access"))


@pytest.fixture
async def lodging(access: LocalAccess, keys_dir: Path) -> AsyncIterator[Lodging]:
    async with lodging_listener(access, keys_dir) as running:
        yield running


def counted(result: str) -> float:
    labels = {"channel": "http", "result": result}
    return REGISTRY.get_sample_value("gun_hub_gateway_lodgements_total", labels) or 0.0


async def test_a_body_refused_413_over_its_content_length_is_counted_as_oversized(
    lodging: Lodging,
) -> None:
    before = counted("XML_OVERSIZED")
    status, _, body = await lodging.post(declaration_xml() + b" " * LIMIT)
    assert (status, body["kind"]) == (413, "XML_OVERSIZED")
    assert counted("XML_OVERSIZED") == before + 1, "answered XML_OVERSIZED, counted nowhere"


async def test_a_chunked_body_refused_413_past_the_limit_is_counted_as_oversized(
    lodging: Lodging,
) -> None:
    async def endless() -> AsyncIterator[bytes]:
        yield declaration_xml()
        for _ in range(4 * LIMIT // 1024):
            yield b" " * 1024

    before = counted("XML_OVERSIZED")
    status, _, body = await lodging.post(endless())
    assert (status, body["kind"]) == (413, "XML_OVERSIZED")
    assert counted("XML_OVERSIZED") == before + 1, "answered XML_OVERSIZED, counted nowhere"


async def test_a_reference_outside_the_trader_s_namespace_is_not_logged_as_another_declarant(
    lodging: Lodging, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="gun_hub.gateway.http_channel"):
        status, _, body = await lodging.post(declaration_xml(reference="24FR0000000000001"))
    assert (status, body["kind"]) == (403, "REFERENCE_NOT_THE_DECLARANTS")
    said = [r.getMessage() for r in caplog.records]
    assert not any("another declarant" in line for line in said), said


async def test_a_trader_s_403s_are_logged_at_most_once_a_second(
    lodging: Lodging, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="gun_hub.gateway.http_channel"):
        for _ in range(20):  # well within a second on this listener
            status, _, _ = await lodging.post(declaration_xml(), eori="DE999999999")
            assert status == 403
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    span = warned[-1].created - warned[0].created if warned else 0.0
    assert len(warned) <= 1 + int(span), (
        f"{len(warned)} warning lines in {span:.2f} s for one trader's 403s"
    )
    assert "DE999999999" in warned[0].getMessage(), "the token's trader is named"
