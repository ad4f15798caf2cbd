"""A receipt read ahead of its events is kept until they are read: pruned only a second
retention after its time (found by the review of stop 54).

``prune`` forgot a receipt (``lodgings``, and the version's ``declarants`` row) older
than the retention once no event of its reference was in the view. The two topics are
read apart: a view catching up (rebuilt, or back after a stop: hours of backlog) may
hold the facts topic's ReceivedFact long before the status topic's events of the same
receipt. A declaration held for a control is received on day 0 and decided days later:
its ReceivedFact is past the retention, its later events are not. Pruned in between, the
receipt was gone for good (the fact is never read again), and every event of it read
next, kept for days more, was nobody's: the trader read a 404 for its own declaration.
An event-less receipt now leaves once older than ``forget_left_before`` (the feed: two
retentions).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.view import OpsView
from tests.unit.test_a_reference_two_declarants_use_is_read_by_each_alone import (
    FIRST_RECEIPT,
    REF,
    kinds,
    lookup,
)
from tests.unit.test_operations_view import EORI, NOON, TOPICS, Feed

DAYS = 24 * 60


def test_a_receipt_read_ahead_of_its_events_is_kept_until_they_are_read(
    tmp_path: Path,
) -> None:
    view, feed = OpsView(tmp_path / "v.sqlite3", TOPICS), Feed()
    try:
        # The facts topic read ahead: the receipt of day 0.
        view.apply([feed.received(REF, lodging=FIRST_RECEIPT)])
        # The hourly prune, the retention's cutoff just past day 0's noon.
        while view.prune(NOON + timedelta(hours=1)):
            pass
        # The status topic catches up: the declaration's events, decided on day 3
        # after its control (well within the retention).
        view.apply(
            [
                feed.status(REF, StatusKind.RECEIVED, 0, lodging=FIRST_RECEIPT),
                feed.status(
                    REF, StatusKind.DECIDED, 3 * DAYS, outcome="RELEASE", lodging=FIRST_RECEIPT
                ),
            ]
        )
        mine = lookup(view, REF, EORI)
        assert mine is not None, (
            "the trader's own declaration, decided within the retention, reads as unknown: "
            "its receipt was pruned before its events were read"
        )
        assert "DECIDED" in kinds(mine)
    finally:
        view.close()


def test_an_event_less_receipt_leaves_a_second_retention_after_its_time(
    tmp_path: Path,
) -> None:
    view, feed = OpsView(tmp_path / "v.sqlite3", TOPICS), Feed()
    try:
        view.apply([feed.received(REF, lodging=FIRST_RECEIPT)])
        retention = timedelta(days=30)
        now = NOON + retention + timedelta(hours=1)
        while view.prune(now - retention, forget_left_before=now - 2 * retention):
            pass
        assert view.declarant_of(REF) == EORI, "within two retentions: kept"
        now += retention
        while view.prune(now - retention, forget_left_before=now - 2 * retention):
            pass
        assert view.declarant_of(REF) is None
        assert view._db.execute("SELECT COUNT(*) FROM lodgings").fetchone() == (0,)
    finally:
        view.close()
