"""Found by the review of stop 54's changes:
the trader lookup and every decision fact scan the whole
``withheld_lodgings`` table (its key is the receipt, its only index the time)."""

from __future__ import annotations

from pathlib import Path

from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.view import OpsView
from tests.unit.test_a_reference_two_declarants_use_is_read_by_each_alone import (
    FIRST_RECEIPT,
    REF,
)
from tests.unit.test_operations_view import EORI, TOPICS, Feed


def _scans(view: OpsView, statements: list[str]) -> list[tuple[str, str]]:
    found = []
    for sql in statements:
        if not sql.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE")):
            continue
        for row in view._db.execute("EXPLAIN QUERY PLAN " + sql):
            if row[3].startswith("SCAN"):
                found.append((row[3], sql[:120]))
    return found


def test_a_lookup_and_a_decision_fact_read_withheld_receipts_by_an_index(
    tmp_path: Path,
) -> None:
    view, feed = OpsView(tmp_path / "v.sqlite3", TOPICS), Feed()
    try:
        view.apply(
            [
                feed.received(REF, lodging=FIRST_RECEIPT),
                feed.status(REF, StatusKind.RECEIVED, 0, lodging=FIRST_RECEIPT),
            ]
        )
        statements: list[str] = []
        view._db.set_trace_callback(statements.append)
        assert view.history_of_declarant(REF, EORI) is not None
        view.apply([feed.decided(REF, "RELEASE", [])])
        view._db.set_trace_callback(None)
        assert _scans(view, statements) == []
    finally:
        view.close()
