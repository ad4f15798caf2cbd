"""An answer the partner client does not understand is logged by the kind of fault and
where it was raised, never by the exception's text, which may quote the answer.

A real partner answering in a shape nobody foresaw may echo the licence it was asked
about (``licence LEMG-SECRET-4242 exhausted``); the exception raised reading it says
whatever its author put in it, often the value at hand. Logged with its traceback, that
text put a war-material licence in the DGA adapter's log, which operations read (review
stop 39, C2; docs/security.md: logs hold no document reference of a confidential
authority).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import web

from adapters.base import certex
from gun_contract.logs import JsonFormatter, TextFormatter
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Verdict
from tests.adapter_fixtures import partner_request
from tests.partner_fixtures import partner_client, serving

LICENCE = "LEMG-SECRET-4242"


def _reads_the_code_badly(payload: dict[str, Any]) -> str | None:
    # Stands for a check nobody wrote yet: its exception quotes the partner's answer.
    raise ValueError(f"no code in the partner's answer {payload!r}")


async def test_an_answer_not_understood_is_logged_by_kind_and_place_never_its_text(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(certex, "_partner_code", _reads_the_code_badly)

    async def echoing_the_licence(_: web.Request) -> web.Response:
        return web.json_response(
            {"result": "REFUSED", "code": "05", "message": f"licence {LICENCE} exhausted"}
        )

    request = partner_request(Operation.CHECK, authority="dga", document=LICENCE)
    async with serving(echoing_the_licence) as url:
        partner = partner_client(url)
        try:
            with caplog.at_level(logging.DEBUG):
                [answer] = await partner.answer(request)
        finally:
            await partner.close()

    assert answer.verdict is Verdict.UNAVAILABLE
    [logged] = [r for r in caplog.records if "not understood" in r.getMessage()]
    for formatter in (JsonFormatter("adapter-dga"), TextFormatter("adapter-dga", colour=False)):
        for record in caplog.records:
            line = formatter.format(record)
            assert LICENCE not in line, line
            assert "exhausted" not in line, line
    message = logged.getMessage()
    assert "ValueError" in message, message
    assert f"{__name__}:" in message, message  # the module and line that raised
    assert "_reads_the_code_badly" in message, message
