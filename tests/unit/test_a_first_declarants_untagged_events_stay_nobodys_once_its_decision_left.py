"""A first declarant's events naming no receipt stay nobody's once its decision has left
the view, whoever lodged the reference's version after it (found by the review of stop
54).

ADR 0007's addendum of stop 53 accepts that "a reference used before the upgrade by one
declarant and reused after it by another leaves the first one's untagged history of that
version to neither (it named two declarants)". It named two only while the first one's
decision was kept: ``declarants`` held one row per (reference, version), which the second
receipt replaced, and ``prune`` removes a decision by its own time while the events after
it (a write-off, a control's result days later) stay. From then version 1 was named by the
second declarant alone and every untagged event of it, the first one's, was the second's
to read. ``declarants`` now keeps every declarant of a version (keyed by reference,
version and declarant; a view of before keeps its rows, keyed anew).
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.view import OpsView
from tests.unit.test_a_reference_two_declarants_use_is_read_by_each_alone import (
    _EVENTS_BEFORE,
    REF,
    SECOND,
    SECOND_RECEIPT,
    lookup,
)
from tests.unit.test_operations_view import EORI, NOON, TOPICS, Feed

DAYS = 24 * 60


def test_the_first_declarants_untagged_events_stay_nobodys_once_its_decision_left(
    tmp_path: Path,
) -> None:
    path = tmp_path / "view.sqlite3"
    feed = Feed()
    # A view of before stop 53: the first declarant's version 1, received, decided on day
    # 0, its goods written off on day 5 (events naming no receipt).
    view = OpsView(path, TOPICS)
    view.apply([feed.received(REF), feed.decided(REF, "RELEASE", [])])
    view.close()
    with sqlite3.connect(path) as old:
        old.execute("DROP TABLE events")
        old.executescript(_EVENTS_BEFORE)
        old.executemany(
            "INSERT INTO events (reference, version, kind, at, detail, authority, outcome) "
            "VALUES (?, 1, ?, ?, ?, ?, ?)",
            [
                (REF, "RECEIVED", NOON.isoformat(), "", "", ""),
                (REF, "DECIDED", (NOON + timedelta(minutes=1)).isoformat(), "", "", "RELEASE"),
                (
                    REF,
                    "WRITTEN_OFF",
                    (NOON + timedelta(days=5)).isoformat(),
                    "N853 CHEDP.FR.2026.0001234 line 1: 10 KGM",
                    "dgal",
                    "",
                ),
            ],
        )
    view = OpsView(path, TOPICS)
    try:
        # Upgraded; twenty-five days later another declarant's version 1 of the reference.
        later = NOON + timedelta(days=25)
        view.apply(
            [
                feed.received(REF, declarant=SECOND, at=later, lodging=SECOND_RECEIPT),
                feed.status(REF, StatusKind.RECEIVED, 25 * DAYS, lodging=SECOND_RECEIPT),
            ]
        )
        # Day 31: the first one's decision (day 0) leaves with the retention, its
        # write-off of day 5 stays.
        while view.prune(NOON + timedelta(days=1)):
            pass
        theirs = lookup(view, REF, SECOND)
        read = [e for e in (theirs or {}).get("history", []) if e["at"] < later.isoformat()]
        assert read == [], f"{SECOND} reads the first declarant's events: {read}"
    finally:
        view.close()


def test_a_view_of_before_keeps_its_declarants_keyed_anew(tmp_path: Path) -> None:
    path = tmp_path / "view.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE declarants (reference TEXT NOT NULL, version INTEGER NOT NULL, "
            "declarant TEXT NOT NULL, received_at REAL NOT NULL DEFAULT 0, "
            "PRIMARY KEY (reference, version))"
        )
        old.execute("CREATE INDEX declarants_by_time ON declarants (received_at)")
        old.execute("INSERT INTO declarants VALUES (?, 1, ?, ?)", (REF, EORI, NOON.timestamp()))
    view = OpsView(path, TOPICS)
    try:
        assert view.declarant_of(REF) == EORI
        view.apply([Feed().received(REF, declarant=SECOND, lodging=SECOND_RECEIPT)])
        rows = view._db.execute(
            "SELECT declarant FROM declarants WHERE reference = ? ORDER BY declarant", (REF,)
        ).fetchall()
        assert rows == [(SECOND,), (EORI,)]
        assert view.declarant_of(REF) is None, "version 1 named by two, none decided"
        indexes = {
            row[0]
            for row in view._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'declarants' "
                "AND sql IS NOT NULL"
            )
        }
        assert indexes == {"declarants_by_time"}
    finally:
        view.close()
    assert OpsView(path, TOPICS).declarant_of(REF) is None  # opened again: nothing to do
