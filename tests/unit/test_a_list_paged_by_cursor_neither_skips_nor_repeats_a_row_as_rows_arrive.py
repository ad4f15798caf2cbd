"""An officer pages through a declarant's documents or the written-off lines while the
hub goes on deciding. Paged by ``offset`` (the only way before: stop 56's note), a row
that arrives on an earlier page pushes every later row one place on: the next page
repeats the last row read, and a row removed (by the retention) makes one skipped unseen.
``?after=`` pages by the last row read instead (a cursor the previous page gives as
``next_after``): every row there at the start is read exactly once whatever arrives in
between, a row arriving after the cursor is read too, and the cost of a page does not
grow with how deep it is (SQLite seeks to the row, where OFFSET walks past the skipped).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gun_hub.cli import app
from gun_hub.ops.facts import DecisionFact, DocumentUse, WriteOffFact, WrittenOff, fact_bytes
from gun_hub.ops.lag_metrics import OpsState
from gun_hub.ops.view import OpsView
from gun_hub.security.web_auth import basic_authorization
from gun_hub.web import build_web
from tests.unit.test_operations_view import NOON, Feed
from tests.unit.test_web_listeners import ALICE_PASSWORD, TOPICS, get, settings_for

DECLARANT = "FR12345678901234"


class Officer:
    def __init__(self, url: str, authorization: str) -> None:
        self.url, self.authorization = url, authorization

    async def read(self, path: str) -> tuple[int, Any]:
        code, body, _ = await get(f"{self.url}{path}", self.authorization)
        return code, body


class Hub:
    """What the hub's view reads: decisions quoting documents, and their write-offs."""

    def __init__(self, view: OpsView) -> None:
        self.view, self.feed, self.decided = view, Feed(), 0

    def decides(self, *certificates: str) -> None:
        records = []
        for certificate in certificates:
            self.decided += 1
            reference = f"26FRPAGE{self.decided:010d}"
            use = DocumentUse(
                goods_item=1, code="N853", reference=certificate, authority="dgal", verdict="VALID"
            )
            fact = DecisionFact(
                reference=reference,
                version=1,
                declarant_eori=DECLARANT,
                stage="LODGED",
                outcome="RELEASE",
                decided_at=NOON,
                authorities=["dgal"],
                documents=[use],
            )
            written = WriteOffFact(
                reference=reference,
                version=1,
                authority="dgal",
                at=NOON,
                documents=[
                    WrittenOff(
                        goods_item=1,
                        code="N853",
                        reference=certificate,
                        line=1,
                        quantity=Decimal("2.5"),
                        unit="KGM",
                    )
                ],
            )
            records += [self.feed.record(TOPICS.facts, fact_bytes(f)) for f in (fact, written)]
        self.view.apply(records)


@pytest.fixture
async def hub_and_officer(tmp_path: Path) -> AsyncIterator[tuple[Hub, Officer]]:
    view = OpsView(tmp_path / "view.sqlite3", TOPICS)
    hub = Hub(view)
    hub.decides(*(f"CHEDP.B.{n:03d}" for n in range(12)))
    settings, _ = settings_for(tmp_path / "web")
    web = build_web(settings, view.path, OpsState(), {"dga"})
    assert web is not None
    await web.start()
    try:
        url = f"http://127.0.0.1:{settings.officer_port}"
        yield hub, Officer(url, basic_authorization("alice", ALICE_PASSWORD))
    finally:
        await web.stop()
        view.close()


LISTS = {
    "documents": (f"/stats/declarants/{DECLARANT}/documents?limit=5", "documents"),
    "written-off": ("/stats/written-off?limit=5", "written_off"),
}


@pytest.mark.parametrize("listed", list(LISTS))
async def test_rows_arriving_on_an_earlier_page_are_not_read_twice(
    hub_and_officer: tuple[Hub, Officer], listed: str
) -> None:
    hub, officer = hub_and_officer
    path, rows_of = LISTS[listed]
    seen: list[str] = []
    code, body = await officer.read(path)
    assert code == 200, body
    seen += [row["document"] for row in body[rows_of]]
    arriving = iter(["CHEDP.A.001", "CHEDP.C.001"])  # before the first page, after the last
    while body["next_after"] is not None:
        if (certificate := next(arriving, None)) is not None:
            hub.decides(certificate)  # decided while the officer reads the pages
        code, body = await officer.read(f"{path}&after={body['next_after']}")
        assert code == 200, body
        seen += [row["document"] for row in body[rows_of]]
    assert len(seen) == len(set(seen)), f"a row read twice: {seen}"
    assert set(seen) >= {f"CHEDP.B.{n:03d}" for n in range(12)}, "a row there at the start"
    assert "CHEDP.C.001" in seen  # after the cursor when it arrived
    assert seen == sorted(seen)


@pytest.mark.parametrize("listed", list(LISTS))
@pytest.mark.parametrize(
    "cursor",
    ["x", "!!!", "W10", "WyJhIl0", "eyJhIjoxfQ", "WzEsMiwzLDQsNV0", "A" * 2000],
    ids=["not-base64", "not-base64url", "empty-list", "too-short", "not-a-list", "numbers", "long"],
)
async def test_a_cursor_the_hub_did_not_give_is_refused_saying_so(
    hub_and_officer: tuple[Hub, Officer], listed: str, cursor: str
) -> None:
    _, officer = hub_and_officer
    path, _ = LISTS[listed]
    code, body = await officer.read(f"{path}&after={cursor}")
    assert (code, body["error"]) == (400, "after: not a cursor of this list")


async def test_a_page_asked_by_cursor_and_by_offset_at_once_is_refused(
    hub_and_officer: tuple[Hub, Officer],
) -> None:
    _, officer = hub_and_officer
    path, _ = LISTS["written-off"]
    _, first = await officer.read(path)
    code, body = await officer.read(f"{path}&offset=5&after={first['next_after']}")
    assert (code, body["error"]) == (400, "after and offset: one or the other")


async def test_the_stats_command_pages_by_cursor(
    hub_and_officer: tuple[Hub, Officer], tmp_path: Path
) -> None:
    _, officer = hub_and_officer
    credentials = tmp_path / "alice.credentials"
    credentials.write_text(f"alice:{ALICE_PASSWORD}\n")
    credentials.chmod(0o600)
    seen: list[str] = []
    after: list[str] = []
    while True:
        ran = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["stats", "--written-off", "--limit", "5", "--json", "--credentials-file",
             str(credentials), "--hub-url", officer.url, *after],
        )  # fmt: skip
        assert ran.exit_code == 0, ran.output
        body = json.loads(ran.stdout)
        seen += [row["document"] for row in body["written_off"]]
        if body["next_after"] is None:
            break
        after = ["--after", body["next_after"]]
    assert seen == [f"CHEDP.B.{n:03d}" for n in range(12)]
