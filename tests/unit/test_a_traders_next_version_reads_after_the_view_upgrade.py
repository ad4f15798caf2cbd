"""Found by the review of stop 54's changes:
a view file from stop 53 whose older receipt's events had already left
learns no version for it (``_version_the_receipts``), and that NULL hides every untagged
event of the reference from its own declarant for as long as the reference has events."""

from __future__ import annotations

import sqlite3
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


def test_a_refusal_of_the_traders_next_version_reads_after_the_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "v.sqlite3"
    view, feed = OpsView(path, TOPICS), Feed()
    view.apply(
        [
            feed.received(REF, lodging=FIRST_RECEIPT),
            feed.status(REF, StatusKind.RECEIVED, 0, lodging=FIRST_RECEIPT),
            feed.status(REF, StatusKind.DECIDED, 5, outcome="RELEASE", lodging=FIRST_RECEIPT),
            feed.received(REF, version=2, lodging=SECOND_RECEIPT),
            feed.status(REF, StatusKind.RECEIVED, 20 * DAYS, version=2, lodging=SECOND_RECEIPT),
            feed.status(
                REF,
                StatusKind.DECIDED,
                20 * DAYS,
                version=2,
                outcome="RELEASE",
                lodging=SECOND_RECEIPT,
            ),
        ]
    )
    view.close()
    # As a stop-53 view held it: version 1's events pruned by time (its receipt kept, the
    # reference still has events), and lodgings without their version.
    db = sqlite3.connect(path)
    db.execute("DELETE FROM events WHERE version = 1")
    db.execute("ALTER TABLE lodgings DROP COLUMN version")
    db.commit()
    db.close()
    view = OpsView(path, TOPICS)  # the upgrade
    try:
        assert lookup(view, REF, EORI)["version"] == 2  # type: ignore[index]
        # Version 3 refused unread (its own, the case names its declarant): no receipt.
        view.apply(
            [
                feed.status(REF, StatusKind.REJECTED, 21 * DAYS, version=3, detail="x"),
                feed.status(
                    REF, StatusKind.DECIDED, 21 * DAYS, version=3, outcome="REFUSE", detail="x"
                ),
                feed.decided(REF, "REFUSE", [], day=date(2026, 12, 13), version=3),
            ]
        )
        mine = lookup(view, REF, EORI)
        assert mine is not None
        assert (mine["version"], mine.get("outcome")) == (3, "REFUSE"), (
            f"the trader reads version {mine['version']} {mine.get('outcome')} and "
            f"{kinds(mine)}: its own refusal of version 3 is hidden by a receipt whose "
            "version the migration could not learn"
        )
    finally:
        view.close()


def test_a_receipt_read_ahead_of_its_events_at_the_upgrade_is_kept(tmp_path: Path) -> None:
    """The migration forgets only a receipt older than every event its reference keeps
    (its own events pruned): one read ahead of its events (the facts topic ahead of the
    status topic as the view stopped) is younger, and its events, read after the upgrade,
    are its declarant's."""
    path = tmp_path / "v.sqlite3"
    view, feed = OpsView(path, TOPICS), Feed()
    view.apply(
        [
            feed.received(REF, lodging=FIRST_RECEIPT),
            feed.status(REF, StatusKind.RECEIVED, 0, lodging=FIRST_RECEIPT),
            feed.status(REF, StatusKind.DECIDED, 5, outcome="RELEASE", lodging=FIRST_RECEIPT),
            feed.received(REF, version=2, at=NOON + timedelta(days=1), lodging=SECOND_RECEIPT),
        ]
    )
    view.close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE lodgings DROP COLUMN version")  # as a stop-53 view held it
    db.commit()
    db.close()
    view = OpsView(path, TOPICS)  # the upgrade
    try:
        view.apply(
            [
                feed.status(REF, StatusKind.RECEIVED, DAYS, version=2, lodging=SECOND_RECEIPT),
                feed.status(
                    REF,
                    StatusKind.DECIDED,
                    DAYS,
                    version=2,
                    outcome="RELEASE",
                    lodging=SECOND_RECEIPT,
                ),
            ]
        )
        mine = lookup(view, REF, EORI)
    finally:
        view.close()
    assert mine is not None, "the new version's receipt was forgotten at the upgrade"
    assert mine["version"] == 2


def test_a_receipt_read_ahead_of_its_events_is_kept_when_only_later_events_are_left(
    tmp_path: Path,
) -> None:
    """Found by the review of stop 54's last changes: a receipt read ahead of its
    events is older than every event its reference keeps when what is left is an event of
    the previous version made after it (its control taken over by the new version): the
    migration judged by time forgot it, and its declarant never read version 2. The
    receipt's version is read from the declarants kept with it instead."""
    path = tmp_path / "v.sqlite3"
    view, feed = OpsView(path, TOPICS), Feed()
    view.apply(
        [
            feed.received(REF, lodging=FIRST_RECEIPT),
            feed.status(REF, StatusKind.RECEIVED, 0, lodging=FIRST_RECEIPT),
            feed.status(REF, StatusKind.DECIDED, 5, outcome="RELEASE", lodging=FIRST_RECEIPT),
            # Version 2 lodged 20 days on: its receipt read, its events not yet.
            feed.received(REF, version=2, at=NOON + timedelta(days=20), lodging=SECOND_RECEIPT),
            # Version 1's control taken over by version 2, ten minutes after its receipt.
            feed.status(
                REF,
                StatusKind.TAKEN_OVER_BY_LATER_VERSION,
                20 * DAYS + 10,
                lodging=FIRST_RECEIPT,
            ),
        ]
    )
    view.close()
    # As a stop-53 view held it: version 1's old events pruned by time (the reference
    # still has one), and lodgings without their version.
    db = sqlite3.connect(path)
    db.execute("DELETE FROM events WHERE at < ?", ((NOON + timedelta(days=1)).isoformat(),))
    db.execute("ALTER TABLE lodgings DROP COLUMN version")
    db.commit()
    db.close()
    view = OpsView(path, TOPICS)  # the upgrade
    try:
        kept = view._db.execute(
            "SELECT lodging FROM lodgings WHERE lodging = ?", (SECOND_RECEIPT,)
        ).fetchall()
        view.apply(
            [
                feed.status(
                    REF, StatusKind.RECEIVED, 20 * DAYS + 15, version=2, lodging=SECOND_RECEIPT
                ),
                feed.status(
                    REF,
                    StatusKind.DECIDED,
                    20 * DAYS + 20,
                    version=2,
                    outcome="RELEASE",
                    lodging=SECOND_RECEIPT,
                ),
            ]
        )
        mine = lookup(view, REF, EORI)
    finally:
        view.close()
    assert kept, "the upgrade forgot version 2's receipt, read ahead of its events"
    assert mine is not None, "its declarant reads nothing"
    assert mine["version"] == 2, (
        f"its declarant reads version {mine['version']}: version 2's events name a "
        "receipt the upgrade forgot"
    )


def test_a_copys_event_gives_no_receipt_its_version_at_the_upgrade(tmp_path: Path) -> None:
    """Found by the review of stop 55's change: a copy's IGNORED_STALE_VERSION names the
    case's receipt, maybe a later version's (the hub's ``_ignore_stale``). A view file
    from before stop 54 that a stop-55 hub wrote to (the hub upgraded first) gave that
    receipt the copy's lower version at its upgrade (the lowest version of the events
    naming it)."""
    path = tmp_path / "v.sqlite3"
    view, feed = OpsView(path, TOPICS), Feed()
    view.apply(
        [
            feed.received(REF, version=2, lodging=SECOND_RECEIPT),
            feed.status(REF, StatusKind.RECEIVED, 0, version=2, lodging=SECOND_RECEIPT),
            # Version 1 read after version 2: ignored, named with the case's receipt.
            feed.status(
                REF, StatusKind.IGNORED_STALE_VERSION, 1, version=1, lodging=SECOND_RECEIPT
            ),
        ]
    )
    view.close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE lodgings DROP COLUMN version")  # as a stop-53 view held it
    db.commit()
    db.close()
    OpsView(path, TOPICS).close()  # the upgrade
    db = sqlite3.connect(path)
    try:
        [(version,)] = db.execute(
            "SELECT version FROM lodgings WHERE lodging = ?", (SECOND_RECEIPT,)
        ).fetchall()
    finally:
        db.close()
    assert version == 2, f"the receipt of version 2 was given version {version} by a copy"
