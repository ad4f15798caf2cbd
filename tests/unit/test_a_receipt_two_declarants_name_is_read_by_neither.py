"""A receipt id two declarants' ReceivedFacts name is nobody's: neither reads the other's
events (found by the review of stop 54).

The receipt id is 16 hex digits of SHA-256(reference | version | topic/partition/offset):
nothing in it tells two lodgings apart once a declarations topic's offsets start again
(the topic recreated, a cluster restored or moved: offsets are the log's, not the
record's), and the view keeps the history 30 days. ``_received`` kept the first
declarant of a receipt (``INSERT OR IGNORE``) and said nothing of the second: every later
event naming that receipt (the second declarant's) was shown to the first. A receipt two
declarants name is no proof of either: both lose it (fail closed), the same declarant's
fact read again changes nothing.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from gun_hub.domain.status_events import StatusKind, lodging
from gun_hub.ops.view import OpsView
from tests.unit.test_a_reference_two_declarants_use_is_read_by_each_alone import (
    REF,
    SECOND,
    lookup,
)
from tests.unit.test_operations_view import EORI, NOON, TOPICS, Feed

# The same record position, before and after the declarations topic was recreated.
SAME = lodging(REF, 1, "gun.declarations/0/17")


def test_a_receipt_named_by_a_second_declarant_is_not_read_by_the_first(
    tmp_path: Path,
) -> None:
    view, feed = OpsView(tmp_path / "v.sqlite3", TOPICS), Feed()
    later = NOON + timedelta(days=20)
    minutes = 20 * 24 * 60
    try:
        view.apply(
            [
                feed.received(REF, lodging=SAME),
                feed.status(REF, StatusKind.RECEIVED, lodging=SAME),
                feed.status(REF, StatusKind.DECIDED, 1, outcome="RELEASE", lodging=SAME),
                feed.decided(REF, "RELEASE", []),
                # Twenty days later, the topic recreated: another declarant's version 1
                # of the same reference at the same position.
                feed.received(REF, declarant=SECOND, at=later, lodging=SAME),
                feed.status(REF, StatusKind.RECEIVED, minutes, lodging=SAME),
                feed.status(
                    REF,
                    StatusKind.ANSWER_RECEIVED,
                    minutes + 1,
                    authority="cites",
                    detail="INVALID",
                    lodging=SAME,
                ),
                feed.status(REF, StatusKind.DECIDED, minutes + 2, outcome="REFUSE", lodging=SAME),
                feed.decided(REF, "REFUSE", [], declarant=SECOND, day=later.date()),
            ]
        )
        mine = lookup(view, REF, EORI)
        read = [e for e in (mine or {}).get("history", []) if e["at"] >= later.isoformat()]
        assert read == [], f"{EORI} reads {SECOND}'s declaration: {read}"
    finally:
        view.close()


def test_a_receipt_named_again_by_its_declarant_stays_its(tmp_path: Path) -> None:
    view, feed = OpsView(tmp_path / "v.sqlite3", TOPICS), Feed()
    try:
        view.apply(
            [
                feed.received(REF, lodging=SAME),
                feed.received(REF, lodging=SAME),  # emitted again (a redelivery)
                feed.status(REF, StatusKind.RECEIVED, lodging=SAME),
            ]
        )
        assert lookup(view, REF, EORI) is not None
        view.apply([feed.received(REF, declarant=SECOND, lodging=SAME)])
        assert lookup(view, REF, EORI) is None
        assert lookup(view, REF, SECOND) is None
        view.apply([feed.received(REF, lodging=SAME)])
        assert lookup(view, REF, EORI) is None, "nobody's for good"
    finally:
        view.close()
