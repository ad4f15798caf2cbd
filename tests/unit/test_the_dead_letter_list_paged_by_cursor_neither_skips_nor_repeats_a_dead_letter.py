"""The officers' dead-letter list pages by cursor as their other lists do
(tests/unit/test_a_list_paged_by_cursor_neither_skips_nor_repeats_a_row_as_rows_arrive.py).

Paged by ``offset`` only, the retention removing dead letters already read pushed every
later one back: the next page skipped as many unseen (``dlq redrive --kind`` left them
unredriven without a word). ``?after=`` starts after the last dead letter read, in the
order the view read them (``next_after``), found through an index however deep the page;
``offset`` still works for those who page by it, and the two together are refused, as a
cursor the hub did not give (a lone surrogate included) is: a 400 saying so, never a 500.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gun_contract.dead_letter import ErrorClass, SourcePosition, dead_letter_record
from gun_hub.cli import app
from gun_hub.ops.dead_letters import DeadLetterFilter
from gun_hub.ops.view import FeedRecord, OpsView
from gun_hub.security.web_auth import write_officer_credentials
from tests.unit.test_dead_letter_desk import (
    FEED,
    PLAIN,
    REFERENCE,
    SECRETS,
    TOPICS,
    Broker,
    Desk,
    serving_desk,
)

KIND = "ENVELOPE_UNKNOWN_KID"  # a hub.intake dead letter of it can be redriven
OLD = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)  # what the retention removes
NEW = OLD + timedelta(hours=2)
RETENTION_CUT = OLD + timedelta(hours=1)


@dataclass
class RetentionBetweenPages(Broker):
    """The broker, and the view's retention running once, when the desk first asks the
    broker for the originals' partitions: after the first page was read from the view,
    before it is answered (the command asks for the next page after that)."""

    between_pages: Callable[[], None] | None = None

    async def partitions(self, *topics: str) -> dict[str, frozenset[int]]:
        if self.between_pages is not None:
            hook, self.between_pages = self.between_pages, None
            hook()
        return await super().partitions(*topics)


@dataclass
class Letters:
    """Dead letters written on four partitions of the dead-letter topic (on the broker,
    each with its original) and read by the view in the order written: across
    partitions, so the view's order is not the ids' order."""

    desk: Desk
    written: list[str] = field(default_factory=list)
    offsets: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    def write(self, at: datetime = NEW, kind: str = KIND) -> str:
        partition = len(self.written) % 4
        offset = self.offsets[partition]
        self.offsets[partition] += 1
        original = 100 + len(self.written)  # one original each: each redriven once
        letter = dead_letter_record(
            TOPICS.dlq,
            PLAIN,
            error_class=ErrorClass.SECURITY,
            kind=kind,
            reason=f"why {kind}",
            source=SourcePosition(TOPICS.declarations, 1, original, REFERENCE.encode()),
            component="hub.intake",
            reference=None,
        )
        broker = self.desk.broker
        broker.put(TOPICS.dlq, partition, offset, letter.key, letter.value, letter.headers)
        broker.put(TOPICS.declarations, 1, original, REFERENCE.encode(), PLAIN)
        self.desk.view.apply(
            [
                FeedRecord(
                    TOPICS.dlq,
                    partition,
                    offset,
                    int(at.timestamp() * 1000),
                    letter.value,
                    letter.headers,
                    letter.key,
                )
            ]
        )
        self.written.append(f"{partition}:{offset}")
        return self.written[-1]


@pytest.fixture
async def desk(tmp_path: Path, keys_dir: Path) -> AsyncIterator[Desk]:
    """The desk of tests/unit/test_dead_letter_desk.py (pages of 10: settings_for), on a
    broker whose first question about partitions runs the view's retention."""
    async with serving_desk(tmp_path, keys_dir, RetentionBetweenPages()) as served:
        yield served


@pytest.fixture
def letters(desk: Desk) -> Letters:
    """Twelve dead letters: the first three old enough for the retention to remove."""
    written = Letters(desk)
    for n in range(12):
        written.write(OLD if n < 3 else NEW)
    return written


def retention(desk: Desk) -> None:
    desk.view.prune(RETENTION_CUT)


async def dlq(desk: Desk, work: Path, officer: str, *args: str) -> Result:
    credentials = work / f"{officer}.credentials"
    write_officer_credentials(credentials, officer, SECRETS[officer])
    return await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["dlq", *args, "--credentials-file", str(credentials), "--hub-url", desk.url],
    )


# -- the officer listener ---------------------------------------------------------------------


async def test_dead_letters_removed_or_arriving_meanwhile_shift_no_page_after_a_cursor(
    desk: Desk, letters: Letters
) -> None:
    seen: list[str] = []
    code, body = await desk.call("GET", "/dead-letters?limit=5", "bob")
    assert code == 200, body
    seen += [row["id"] for row in body["dead_letters"]]
    retention(desk)  # the three oldest, read on the first page, leave
    arriving = letters.write()  # after the last page's cursor when it arrives
    while body["next_after"] is not None:
        code, body = await desk.call("GET", f"/dead-letters?limit=5&after={body['next_after']}")
        assert code == 200, body
        assert body["next_offset"] is None  # an offset from a cursor would name another row
        seen += [row["id"] for row in body["dead_letters"]]
    assert len(seen) == len(set(seen)), f"a dead letter read twice: {seen}"
    assert seen == letters.written, "each one once, in the order the view read them"
    assert seen[-1] == arriving


async def test_a_page_asked_by_offset_still_says_where_the_next_starts_both_ways(
    desk: Desk, letters: Letters
) -> None:
    code, body = await desk.call("GET", "/dead-letters?limit=5&offset=5", "bob")
    assert code == 200, body
    assert [row["id"] for row in body["dead_letters"]] == letters.written[5:10]
    assert body["next_offset"] == 10
    code, after = await desk.call("GET", f"/dead-letters?limit=5&after={body['next_after']}")
    assert [row["id"] for row in after["dead_letters"]] == letters.written[10:]
    assert (after["next_offset"], after["next_after"]) == (None, None)  # the last page


async def test_a_cursor_pages_within_a_filter(desk: Desk, letters: Letters) -> None:
    others = [letters.write(kind="XML_MALFORMED") for _ in range(3)]
    path = "/dead-letters?kind=XML_MALFORMED&limit=2"
    code, first = await desk.call("GET", path)
    code, second = await desk.call("GET", f"{path}&after={first['next_after']}")
    assert code == 200, second
    assert [row["id"] for row in first["dead_letters"] + second["dead_letters"]] == others


def _cursor(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "x",
        "!!!",
        "W10",  # []
        "WyJhIl0",  # ["a"]
        "eyJhIjoxfQ",  # {"a": 1}
        "WzEsMiwzLDQsNV0",  # [1, 2, 3, 4, 5]: a written-off line's length
        "A" * 2000,
        _cursor(b"[true]"),  # no place in the list
        _cursor(b"[3.5]"),
        _cursor(b"[99999999999999999999]"),  # beyond what SQLite binds
        _cursor(b'["\\ud800"]'),  # a lone surrogate: no text UTF-8 carries
        _cursor(b'["dgal","\\udfff","CHEDP.B.000",1,"KGM"]'),
    ],
    ids=[
        "not-base64",
        "not-base64url",
        "empty-list",
        "text",
        "not-a-list",
        "too-long",
        "long",
        "boolean",
        "fraction",
        "too-big",
        "lone-surrogate",
        "written-off-lone-surrogate",
    ],
)
async def test_a_cursor_the_hub_did_not_give_is_refused_saying_so(
    desk: Desk, letters: Letters, cursor: str
) -> None:
    code, body = await desk.call("GET", f"/dead-letters?after={cursor}", "bob")
    assert (code, body["error"]) == (400, "after: not a cursor of this list")


async def test_a_page_asked_by_cursor_and_by_offset_at_once_is_refused(
    desk: Desk, letters: Letters
) -> None:
    _, first = await desk.call("GET", "/dead-letters?limit=5")
    code, body = await desk.call("GET", f"/dead-letters?offset=5&after={first['next_after']}")
    assert (code, body["error"]) == (400, "after and offset: one or the other")


@pytest.mark.parametrize(
    "chosen",
    [
        DeadLetterFilter(),
        DeadLetterFilter(kind=KIND),
        DeadLetterFilter(reference=REFERENCE),
        DeadLetterFilter(since=OLD),
        DeadLetterFilter(since=OLD, kind=KIND),
        DeadLetterFilter(kind=KIND, reference=REFERENCE),
        DeadLetterFilter(since=OLD, kind=KIND, reference=REFERENCE),
    ],
    ids=["all", "kind", "reference", "since", "since-kind", "kind-reference", "every"],
)
def test_the_page_after_a_cursor_is_found_through_an_index_not_a_scan(
    tmp_path: Path, chosen: DeadLetterFilter
) -> None:
    view = OpsView(tmp_path / "view.sqlite3", FEED)
    try:
        statements: list[str] = []
        view._db.set_trace_callback(statements.append)
        view.dead_letters(chosen, limit=11, after=(500,))
        view._db.set_trace_callback(None)
        [sql] = [s for s in statements if "FROM dead_letters" in s]
        plan = [row[3] for row in view._db.execute("EXPLAIN QUERY PLAN " + sql)]
        assert not [step for step in plan if step.startswith("SCAN")], plan
        assert not [step for step in plan if "TEMP B-TREE" in step], plan  # nothing sorted
    finally:
        view.close()


# -- gun-hub dlq ------------------------------------------------------------------------------


async def test_dlq_list_pages_by_cursor(desk: Desk, letters: Letters, tmp_path: Path) -> None:
    seen: list[str] = []
    after: list[str] = []
    while True:
        ran = await dlq(desk, tmp_path, "bob", "list", "--limit", "5", "--json", *after)
        assert ran.exit_code == 0, ran.output
        body = json.loads(ran.stdout)
        seen += [row["id"] for row in body["dead_letters"]]
        if body["next_after"] is None:
            break
        after = ["--after", body["next_after"]]
    assert seen == letters.written
    printed = await dlq(desk, tmp_path, "bob", "list", "--limit", "5")
    assert printed.exit_code == 0, printed.output
    assert "(more: --after " in printed.stderr


async def test_dlq_list_refuses_an_offset_given_with_a_cursor(
    desk: Desk, letters: Letters, tmp_path: Path
) -> None:
    _, first = await desk.call("GET", "/dead-letters?limit=5")
    ran = await dlq(
        desk, tmp_path, "bob", "list", "--limit", "5", "--offset", "5",
        "--after", first["next_after"], "--json",
    )  # fmt: skip
    assert ran.exit_code == 2, f"--offset dropped without a word: {ran.stdout}"
    assert "offset" in ran.stderr


async def test_redriving_a_kind_redrives_each_one_as_the_retention_removes_those_listed(
    desk: Desk, letters: Letters, tmp_path: Path
) -> None:
    """Twelve of the kind, two pages of ten: the three oldest leave between them. By
    offset, the second page started at the eleventh of the nine left: the last two
    skipped, not redriven, and not said ("10 redriven")."""
    assert isinstance(desk.broker, RetentionBetweenPages)
    desk.broker.between_pages = lambda: retention(desk)
    done = await dlq(desk, tmp_path, "alice", "redrive", "--kind", KIND)
    assert done.exit_code == 0, done.output
    assert desk.broker.between_pages is None, "the retention ran between the pages"
    assert "12 redriven, 0 cannot be redriven, 0 refused, 0 not answered" in done.stderr
    assert len(desk.broker.to(TOPICS.declarations)) == 12
