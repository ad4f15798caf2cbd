"""Found by the review of stop 54's changes:
prune drops a fresh receipt read ahead of its events when its reference's
older events leave in the same step (c11baea kept only receipts of references with no
events at all)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.view import OpsView
from tests.unit.test_a_reference_two_declarants_use_is_read_by_each_alone import (
    FIRST_RECEIPT,
    REF,
    SECOND_RECEIPT,
    kinds,
    lookup,
)
from tests.unit.test_operations_view import EORI, NOON, TOPICS, Feed

DAYS = 24 * 60


def test_a_new_versions_receipt_survives_the_prune_of_its_references_old_events(
    tmp_path: Path,
) -> None:
    view, feed = OpsView(tmp_path / "v.sqlite3", TOPICS), Feed()
    try:
        # Version 1, day 0: received, decided, all its events read.
        view.apply(
            [
                feed.received(REF, lodging=FIRST_RECEIPT),
                feed.status(REF, StatusKind.RECEIVED, 0, lodging=FIRST_RECEIPT),
                feed.status(REF, StatusKind.DECIDED, 5, outcome="RELEASE", lodging=FIRST_RECEIPT),
            ]
        )
        # Day 31: the same trader lodges version 2; the facts topic is read ahead of the
        # status topic (a few seconds are enough).
        day31 = NOON + timedelta(days=31)
        view.apply([feed.received(REF, version=2, at=day31, lodging=SECOND_RECEIPT)])
        # The hourly prune at a 30-day retention: version 1's events leave.
        retention = timedelta(days=30)
        now = day31 + timedelta(minutes=1)
        while view.prune(now - retention, forget_left_before=now - 2 * retention):
            pass
        # The status topic catches up: version 2's events, and its decision fact.
        view.apply(
            [
                feed.status(REF, StatusKind.RECEIVED, 31 * DAYS, version=2, lodging=SECOND_RECEIPT),
                feed.status(
                    REF,
                    StatusKind.DECIDED,
                    31 * DAYS + 5,
                    version=2,
                    outcome="RELEASE",
                    lodging=SECOND_RECEIPT,
                ),
                feed.decided(REF, "RELEASE", [], day=date(2026, 12, 23), version=2),
            ]
        )
        mine = lookup(view, REF, EORI)
        assert mine is not None, (
            "the trader's version 2, received a minute ago, reads as unknown: its receipt "
            "left with version 1's events"
        )
        assert "DECIDED" in kinds(mine)
    finally:
        view.close()
