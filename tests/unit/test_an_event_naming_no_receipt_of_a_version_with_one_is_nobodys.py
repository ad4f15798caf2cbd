"""An event naming no receipt, of a version whose receipt is known, is nobody's: another
declarant's version refused unread, under a reference reused once the hub forgot the first
one's case, is not read by the first declarant as its own refusal (found by the review of
stop 54).

The refused-unread events (REJECTED, DECIDED REFUSE) name no receipt and followed the
former rule: shown by the versions one declarant alone named. The first declarant's
version 1 is named by it alone (its receipt and its decision), so the second declarant's
refusal of *its* version 1 was shown to the first, whose released declaration then read
DECIDED REFUSE. ``lodgings`` now keeps each receipt's version (a view of before reads it
from the receipt's events), and an untagged event of a version with a known receipt
proves no declarant.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.view import OpsView
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_a_reference_two_declarants_use_is_read_by_each_alone import (
    FIRST_RECEIPT,
    REF,
    SECOND,
    SECOND_RECEIPT,
    fed_from,
    kinds,
    lookup,
)
from tests.unit.test_decided_cases_leave_the_hot_table import MARKER_S, RetainingHub
from tests.unit.test_decided_cases_leave_the_hot_table import REF as RETAINED
from tests.unit.test_operations_view import EORI, NOON, TOPICS, Feed
from tests.unit.test_versions_and_recovery import at


def test_anothers_version_refused_unread_is_not_read_by_the_first_declarant(
    tmp_path: Path, routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = RetainingHub(routing_table, keys_dir)
    view, feed = fed_from(hub, tmp_path)
    try:
        first = hub.intake.handle(declaration_xml(), at(0))
        feed(first.records)
        feed(hub.answer(first, "dgal", Verdict.VALID).records)
        released_at = hub.now
        hub.retire()
        hub.now += timedelta(seconds=MARKER_S + 1)
        hub.retention_tick()
        assert hub.retained == {}, "the marker is forgotten"
        before = lookup(view, RETAINED, EORI)
        assert before is not None
        assert before["outcome"] == "RELEASE"

        # Another declarant's version 1 of the same reference, failing the schema.
        broken = declaration_xml(
            declarant=SECOND, items=(goods_item(1, (document(quantity="-5"),)),)
        )
        refused = hub.intake.handle(broken, at(5))
        assert (RETAINED, 1, Outcome.REFUSE) in hub.decisions(refused)
        feed(refused.records)

        mine = lookup(view, RETAINED, EORI)
        assert mine is not None
        read = [e for e in mine["history"] if e["at"] > released_at.isoformat()]
        assert read == [], (
            f"{EORI} reads {SECOND}'s refusal as its own ({mine['state']} "
            f"{mine.get('outcome')}): {json.dumps(read)}; {kinds(mine)}"
        )
        assert mine["outcome"] == "RELEASE"
    finally:
        view.close()


def test_a_view_of_before_learns_its_receipts_versions(tmp_path: Path) -> None:
    """Receipts kept without their version: read from their events when the view starts;
    one whose events are not read yet hides the reference's untagged events until its
    first event says its version."""
    path = tmp_path / "view.sqlite3"
    feed = Feed()
    view = OpsView(path, TOPICS)
    view.apply([feed.status(REF, StatusKind.RECEIVED, lodging=FIRST_RECEIPT)])
    view.close()
    with sqlite3.connect(path) as old:
        old.execute("DROP TABLE lodgings")
        old.execute(
            "CREATE TABLE lodgings (lodging TEXT PRIMARY KEY, reference TEXT NOT NULL, "
            "declarant TEXT NOT NULL, received_at REAL NOT NULL)"
        )
        # The first received with its event, the second a day later, read ahead of its
        # events (a receipt older than every event left is one whose events were pruned).
        old.executemany(
            "INSERT INTO lodgings VALUES (?, ?, ?, ?)",
            [
                (FIRST_RECEIPT, REF, EORI, NOON.timestamp()),
                (SECOND_RECEIPT, REF, EORI, (NOON + timedelta(days=1)).timestamp()),
            ],
        )
        old.execute("INSERT INTO declarants VALUES (?, 1, ?, 0)", (REF, EORI))
    view = OpsView(path, TOPICS)
    try:
        versions = dict(view._db.execute("SELECT lodging, version FROM lodgings").fetchall())
        assert versions == {FIRST_RECEIPT: 1, SECOND_RECEIPT: None}
        view.apply([feed.status(REF, StatusKind.REJECTED, 1, version=3, detail="XSD")])
        assert kinds(lookup(view, REF, EORI)) == ["RECEIVED"], "version 3: not known yet"
        view.apply([feed.status(REF, StatusKind.RECEIVED, 2, version=2, lodging=SECOND_RECEIPT)])
        assert kinds(lookup(view, REF, EORI)) == ["RECEIVED", "REJECTED", "RECEIVED"]
    finally:
        view.close()
