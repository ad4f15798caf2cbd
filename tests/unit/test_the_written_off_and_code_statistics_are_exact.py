"""The officers' write-off and document-code statistics are exact (review stop 37-s, F1 F2 F3).

* F1: one document line drawn on by two goods items is written off in full (the partner
  adds the claims up per line): the view keys a write-off by goods item as well.
* F2: two documents of one code on one goods item (two war-material licences, both shown
  as ``(confidential)``; one certificate quoted on two lines) are two uses of the code,
  each with its verdict: the view keys a decision's documents by their place in the fact.
* F3: what an invalidation gives back is no longer reported written off: the hub emits a
  ``GivenBackFact`` and the view nets it, counted once, never below nothing.

A view file made before keeps its rows and upgrades itself (ADR 0004, 0017); a fact of a
hub that did not name goods items is still counted, each of its documents.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from gun_hub.ops.facts import (
    DocumentUse,
    GivenBackFact,
    WriteOffFact,
    WrittenOff,
    fact_bytes,
)
from gun_hub.ops.view import OpsView
from tests.unit.test_operations_view import NOON, TOPICS, Feed

REF = "26FR000690I0000012"
CHED = "CHEDP.FR.2026.0001234"


@pytest.fixture
def view(tmp_path: Path) -> OpsView:
    return OpsView(tmp_path / "view.sqlite3", TOPICS)


def written(goods_item: int | None, quantity: str, line: int | None = 1) -> WrittenOff:
    return WrittenOff(
        goods_item=goods_item,
        code="N853",
        reference=CHED,
        line=line,
        quantity=Decimal(quantity),
        unit="KGM",
    )


def write_off(*documents: WrittenOff, version: int = 1, reference: str = REF) -> WriteOffFact:
    return WriteOffFact(
        reference=reference, version=version, authority="dgal", at=NOON, documents=list(documents)
    )


def give_back(*documents: WrittenOff, minutes: int = 60, reference: str = REF) -> GivenBackFact:
    return GivenBackFact(
        reference=reference,
        version=2,
        authority="dgal",
        at=NOON + timedelta(minutes=minutes),
        documents=list(documents),
    )


def apply(view: OpsView, feed: Feed, *facts: WriteOffFact | GivenBackFact) -> None:
    view.apply([feed.record(TOPICS.facts, fact_bytes(fact)) for fact in facts])


def line_of(view: OpsView) -> tuple[str | None, str | None, int, int]:
    [row] = view.written_off(CHED)
    return row["quantity"], row["given_back"], row["declarations"], row["without_quantity"]


# -- F1: a line drawn on by several goods items -------------------------------------------


def test_one_line_drawn_by_two_goods_items_is_written_off_in_full(view: OpsView) -> None:
    """Goods items 1 and 2 both draw on line 1 of one CHED-P: 500 + 700 = 1200 written off
    (it read 700: the second item replaced the first), once however often it is read."""
    feed = Feed()
    fact = write_off(written(1, "500"), written(2, "700"))
    apply(view, feed, fact, fact)
    assert line_of(view) == ("1200", None, 1, 0)


def test_two_goods_items_quoting_a_document_without_a_line_are_both_counted(
    view: OpsView,
) -> None:
    feed = Feed()
    apply(view, feed, write_off(written(1, "500", line=None), written(2, "700", line=None)))
    [row] = view.written_off(CHED)
    assert (row["line"], row["quantity"]) == (None, "1200")


def test_a_fact_of_a_hub_that_named_no_goods_item_still_counts_each_document(
    view: OpsView,
) -> None:
    """A hub older than the view (a rolling upgrade) names no goods item: each document of
    its fact is counted, by its place in the fact, and the fact read again counts once."""
    feed = Feed()
    fact = write_off(written(None, "500"), written(None, "700"))
    apply(view, feed, fact, fact)
    assert line_of(view) == ("1200", None, 1, 0)


def test_a_fact_stated_again_by_a_newer_hub_replaces_what_an_older_one_stated(
    view: OpsView,
) -> None:
    """The same write-off emitted by an older worker (no goods items), then again by an
    upgraded one after a crash: counted once."""
    feed = Feed()
    apply(view, feed, write_off(written(None, "500"), written(None, "700")))
    apply(view, feed, write_off(written(1, "500"), written(2, "700")))
    assert line_of(view) == ("1200", None, 1, 0)


def test_a_field_a_newer_hub_adds_to_a_written_off_document_is_ignored(view: OpsView) -> None:
    """What an older view relies on when the hub adds a field (as ``goods_item`` was added):
    the document is read without it and counted."""
    feed = Feed()
    raw = (
        fact_bytes(write_off(written(1, "500")))
        .replace(b'"goods_item":1', b'"goods_item":1,"pallet":"P-7"')
        .replace(b'"kind":"WRITTEN_OFF"', b'"kind":"WRITTEN_OFF","batch":3')
    )
    assert b'"pallet"' in raw
    view.apply([feed.record(TOPICS.facts, raw)])
    assert view.skipped == 0
    assert line_of(view) == ("500", None, 1, 0)


# -- F2: documents of one code on one goods item --------------------------------------------


def test_two_confidential_licences_of_one_item_are_both_counted(view: OpsView) -> None:
    """Two war-material licences on one goods item, one VALID, one NOT_FOUND: two uses of
    the code, one of each verdict (it read one use, NOT_FOUND: the valid one was lost)."""
    feed = Feed()
    docs = [
        DocumentUse(goods_item=1, code="X002", reference=None, authority="dga", verdict="VALID"),
        DocumentUse(
            goods_item=1, code="X002", reference=None, authority="dga", verdict="NOT_FOUND"
        ),
    ]
    decided = feed.decided(REF, "REFUSE", docs)
    view.apply([decided])
    code = view.statistics()["decisions"]["by_document_code"]["X002"]
    assert code == {"uses": 2, "by_verdict": {"NOT_FOUND": 1, "VALID": 1}}
    # The same fact read again (emitted again after a crash): still two uses.
    view.apply([decided])
    assert view.statistics()["decisions"]["by_document_code"]["X002"]["uses"] == 2
    assert view.statistics()["decisions"]["by_authority"] == {"dga": {"REFUSE": 1}}


def test_one_certificate_quoted_on_two_lines_of_one_item_is_two_uses(view: OpsView) -> None:
    feed = Feed()
    docs = [
        DocumentUse(goods_item=1, code="N853", reference=CHED, authority="dgal", verdict=v)
        for v in ("VALID", "QUANTITY_EXCEEDED")
    ]
    view.apply([feed.decided(REF, "REFUSE", docs)])
    code = view.statistics()["decisions"]["by_document_code"]["N853"]
    assert code == {"uses": 2, "by_verdict": {"QUANTITY_EXCEEDED": 1, "VALID": 1}}
    [used] = view.documents_of_declarant("FR12345678901234")
    assert (used["document"], used["declarations"]) == (CHED, 1)


# -- F3: what is given back ------------------------------------------------------------------


def test_a_quantity_given_back_is_no_longer_reported_written_off(view: OpsView) -> None:
    """v1 released and written off 1200 kg; v2 INVALIDATED gave it back: the line shows
    nothing written off any more (it showed 1200), what was given back, and it counts the
    give-back once however often it is read."""
    feed = Feed()
    back = give_back(written(1, "500"), written(2, "700"))
    apply(view, feed, write_off(written(1, "500"), written(2, "700")), back, back)
    assert line_of(view) == ("0", "1200", 1, 0)


def test_a_give_back_counts_only_for_its_own_declaration(view: OpsView) -> None:
    """Another declaration's write-off on the same line stays written off."""
    feed = Feed()
    other = "26FR000690I0000099"
    apply(
        view,
        feed,
        write_off(written(1, "500")),
        write_off(written(1, "300"), reference=other),
        give_back(written(1, "500")),
    )
    assert line_of(view) == ("300", "500", 2, 0)


def test_a_give_back_read_before_its_write_off_nets_once_both_are_read(view: OpsView) -> None:
    """Read in the other order (a write-off replayed after the partner was down), the
    give-back takes off nothing until the write-off is there, and never goes below it."""
    feed = Feed()
    apply(view, feed, give_back(written(1, "500")))
    assert view.written_off(CHED) == []
    apply(view, feed, write_off(written(1, "500")))
    assert line_of(view) == ("0", "500", 1, 0)


def test_a_give_back_whose_write_off_left_the_view_takes_off_nothing_else(
    view: OpsView,
) -> None:
    """The write-off left with the retention before the invalidation came: the give-back
    cannot make another declaration's write-off on the line smaller, nor the line negative."""
    feed = Feed()
    apply(view, feed, write_off(written(1, "500")))
    while view.prune(NOON + timedelta(minutes=1)):
        pass
    apply(view, feed, write_off(written(1, "300"), reference="26FR000690I0000099"))
    apply(view, feed, give_back(written(1, "500"), minutes=120))
    assert line_of(view) == ("300", "0", 1, 0)
    while view.prune(NOON + timedelta(days=1)):
        pass
    assert view.written_off(CHED) == []
    assert view._db.execute("SELECT COUNT(*) FROM give_backs").fetchone() == (0,)


def test_a_give_back_without_a_quantity_is_said_so(view: OpsView) -> None:
    """The hub gave back a document whose quantity it no longer knew: the line still shows
    what is known, and counts the entry without a quantity."""
    feed = Feed()
    unknown = WrittenOff(goods_item=1, code="N853", reference=CHED, line=1, unit="KGM")
    apply(view, feed, write_off(written(1, "500")), give_back(unknown))
    assert line_of(view) == ("500", "0", 1, 1)


# -- a view file made before --------------------------------------------------------------

# The two tables as a view made before stop 37-s keyed them.
_BEFORE = """
CREATE TABLE decision_documents (
    reference TEXT NOT NULL, version INTEGER NOT NULL, goods_item INTEGER NOT NULL,
    code TEXT NOT NULL, document TEXT NOT NULL, authority TEXT NOT NULL, verdict TEXT NOT NULL,
    PRIMARY KEY (reference, version, goods_item, code, document));
CREATE TABLE write_offs (
    reference TEXT NOT NULL, version INTEGER NOT NULL, authority TEXT NOT NULL,
    code TEXT NOT NULL, document TEXT NOT NULL, line INTEGER NOT NULL,
    quantity TEXT NOT NULL, unit TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (reference, version, authority, code, document, line));
CREATE INDEX write_offs_by_document ON write_offs (document);
"""


def test_a_view_file_made_before_upgrades_itself_and_keeps_what_it_holds(
    tmp_path: Path,
) -> None:
    """A view made before keeps its file across restarts: opened by this version, its
    rows are kept (their goods item unknown), counted as before, and what it reads next
    is keyed the new way; the same write-off stated again replaces its old row."""
    path = tmp_path / "view.sqlite3"
    view = OpsView(path, TOPICS)
    feed = Feed()
    view.apply([feed.decided(REF, "RELEASE", [])])
    view.close()
    with sqlite3.connect(path) as old:
        old.execute("DROP TABLE decision_documents")
        old.execute("DROP TABLE write_offs")
        old.executescript(_BEFORE)
        old.execute(
            "INSERT INTO decision_documents VALUES (?, 1, 1, 'N853', ?, 'dgal', 'VALID')",
            (REF, CHED),
        )
        old.execute(
            "INSERT INTO write_offs VALUES (?, 1, 'dgal', 'N853', ?, 1, '700', 'KGM', ?)",
            (REF, CHED, NOON.isoformat()),
        )
    upgraded = OpsView(path, TOPICS)
    assert line_of(upgraded) == ("700", None, 1, 0)
    [used] = upgraded.documents_of_declarant("FR12345678901234")
    assert used["document"] == CHED
    # Opened again: nothing more to upgrade, nothing lost.
    upgraded.close()
    upgraded = OpsView(path, TOPICS)
    assert line_of(upgraded) == ("700", None, 1, 0)
    # The write-off stated again by an upgraded hub replaces the row it was kept as.
    apply(upgraded, feed, write_off(written(1, "500"), written(2, "700")))
    assert line_of(upgraded) == ("1200", None, 1, 0)
    # Another declaration's write-off and a give-back are kept the new way.
    apply(upgraded, feed, give_back(written(1, "500")))
    assert line_of(upgraded) == ("700", "500", 1, 0)
    docs = [
        DocumentUse(goods_item=1, code="X002", reference=None, authority="dga", verdict=v)
        for v in ("VALID", "NOT_FOUND")
    ]
    upgraded.apply([feed.decided("26FR000690I0000099", "REFUSE", docs)])
    code = upgraded.statistics()["decisions"]["by_document_code"]["X002"]
    assert code == {"uses": 2, "by_verdict": {"NOT_FOUND": 1, "VALID": 1}}


def test_an_upgrade_stopped_half_way_is_finished_at_the_next_start(tmp_path: Path) -> None:
    """The old table set aside (renamed, its indexes dropped) and the process stopped
    before its rows were moved in: the next start moves them in."""
    path = tmp_path / "view.sqlite3"
    OpsView(path, TOPICS).close()
    with sqlite3.connect(path) as old:
        old.execute("DROP TABLE decision_documents")
        old.execute("DROP TABLE write_offs")
        old.executescript(_BEFORE)
        old.execute(
            "INSERT INTO write_offs VALUES (?, 1, 'dgal', 'N853', ?, 1, '700', 'KGM', ?)",
            (REF, CHED, NOON.isoformat()),
        )
        old.execute("DROP INDEX write_offs_by_document")
        old.execute("ALTER TABLE write_offs RENAME TO write_offs_keyed_before")
    view = OpsView(path, TOPICS)
    assert line_of(view) == ("700", None, 1, 0)
    tables = {row[0] for row in view._db.execute("SELECT name FROM sqlite_master")}
    assert "write_offs_keyed_before" not in tables
    assert "write_offs_by_document" in tables
