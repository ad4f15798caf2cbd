"""The declarant whose decision of a version was published reads that version, while
another declarant's decision of the same version, withheld by the publisher, is nobody's
(found by the review of stop 54).

Two declarants' versions 1 of one reference (the split of ADR 0007's addendum, or a
reference reused while the publisher lane still remembers its first declarant): A's
decision is published, B's withheld (OTHER_DECLARANT). ``history_of_declarant`` withheld by
(reference, version), as the publisher's NOT_PUBLISHED_OTHER_DECLARANT named no receipt:
A's own events of version 1 were hidden from A too, a 404 for its own declaration. The
decision's outbox record now carries its case's receipt (``gun.decision.lodging``), the
publisher names it in that status, and the view withholds that receipt alone. A status
naming no receipt (an outbox record of before the change) still withholds the whole
version: fail closed.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from gun_hub.domain.status_events import StatusEvent, StatusKind
from gun_hub.ops.view import OpsView
from gun_hub.pipeline.decision_outbox import HEADER_LODGING, declarant_tag
from gun_hub.runtime.published_memory import PublishedMemory
from gun_hub.runtime.publisher import _PartitionPublisher
from tests.unit.test_a_reference_two_declarants_use_is_read_by_each_alone import (
    FIRST_RECEIPT,
    REF,
    SECOND,
    SECOND_RECEIPT,
    kinds,
    lookup,
)
from tests.unit.test_operations_view import EORI, NOON, TOPICS, Feed, use
from tests.unit.test_publisher_memory_is_bounded import _Producer
from tests.unit.test_the_view_counts_only_the_decisions_the_publisher_published import (
    REF as OUTBOX_REF,
)
from tests.unit.test_the_view_counts_only_the_decisions_the_publisher_published import (
    _OutboxRecord,
    _publisher,
)

WITHHELD = "decided but not published: decided for another declarant"


def test_the_published_declarant_still_reads_its_version_when_anothers_is_withheld(
    tmp_path: Path,
) -> None:
    view, feed = OpsView(tmp_path / "v.sqlite3", TOPICS), Feed()
    try:
        view.apply(
            [
                # A's version 1, read on partition 0, decided and published.
                feed.received(REF, lodging=FIRST_RECEIPT),
                feed.status(REF, StatusKind.RECEIVED, lodging=FIRST_RECEIPT),
                feed.status(REF, StatusKind.DECIDED, 1, outcome="RELEASE", lodging=FIRST_RECEIPT),
                feed.decided(REF, "RELEASE", [use("N853", "D1", "dgal")]),
                # B's version 1 of the same reference, read on partition 1, decided
                # there, withheld by the publisher (OTHER_DECLARANT).
                feed.received(
                    REF, declarant=SECOND, at=NOON + timedelta(minutes=2), lodging=SECOND_RECEIPT
                ),
                feed.status(REF, StatusKind.RECEIVED, 2, lodging=SECOND_RECEIPT),
                feed.status(REF, StatusKind.DECIDED, 3, outcome="REFUSE", lodging=SECOND_RECEIPT),
                feed.decided(REF, "REFUSE", [], declarant=SECOND),
                # The publisher's status names B's receipt (its outbox record's).
                feed.status(
                    REF,
                    StatusKind.NOT_PUBLISHED_OTHER_DECLARANT,
                    4,
                    detail=WITHHELD,
                    lodging=SECOND_RECEIPT,
                ),
            ]
        )
        assert lookup(view, REF, SECOND) is None, "B's withheld version stays nobody's"
        mine = lookup(view, REF, EORI)
        assert mine is not None, (
            "A, whose decision of version 1 was published, gets the 404 of an unknown "
            "reference: the withholding of B's version 1 hides A's receipt of it too"
        )
        assert kinds(mine) == ["RECEIVED", "DECIDED"]
        assert mine["outcome"] == "RELEASE"
    finally:
        view.close()


def test_a_reference_reused_and_withheld_leaves_the_first_declarants_history(
    tmp_path: Path,
) -> None:
    """Reused twenty days later while the publisher lane still remembers A as the
    reference's declarant (its memory is a count of decisions, not a time): B's version 1
    is withheld; A's twenty-day-old released history of version 1 disappears with it."""
    view, feed = OpsView(tmp_path / "v.sqlite3", TOPICS), Feed()
    later = NOON + timedelta(days=20)
    minutes = 20 * 24 * 60
    try:
        view.apply(
            [
                feed.received(REF, lodging=FIRST_RECEIPT),
                feed.status(REF, StatusKind.RECEIVED, lodging=FIRST_RECEIPT),
                feed.status(REF, StatusKind.DECIDED, 1, outcome="RELEASE", lodging=FIRST_RECEIPT),
                feed.decided(REF, "RELEASE", []),
                feed.received(REF, declarant=SECOND, at=later, lodging=SECOND_RECEIPT),
                feed.status(REF, StatusKind.RECEIVED, minutes, lodging=SECOND_RECEIPT),
                feed.status(
                    REF,
                    StatusKind.DECIDED,
                    minutes + 1,
                    outcome="RELEASE",
                    lodging=SECOND_RECEIPT,
                ),
                feed.decided(REF, "RELEASE", [], declarant=SECOND, day=later.date()),
                feed.status(
                    REF,
                    StatusKind.NOT_PUBLISHED_OTHER_DECLARANT,
                    minutes + 2,
                    detail=WITHHELD,
                    lodging=SECOND_RECEIPT,
                ),
            ]
        )
        mine = lookup(view, REF, EORI)
        assert kinds(mine) == ["RECEIVED", "DECIDED"], f"A's own released declaration reads {mine}"
    finally:
        view.close()


def test_a_withholding_naming_no_receipt_still_withholds_the_whole_version(
    tmp_path: Path,
) -> None:
    """An outbox record of before the receipt header: its status names no receipt, the
    view cannot tell whose decision was withheld, and neither declarant reads version 1."""
    view, feed = OpsView(tmp_path / "v.sqlite3", TOPICS), Feed()
    try:
        view.apply(
            [
                feed.received(REF, lodging=FIRST_RECEIPT),
                feed.status(REF, StatusKind.RECEIVED, lodging=FIRST_RECEIPT),
                feed.status(REF, StatusKind.DECIDED, 1, outcome="RELEASE", lodging=FIRST_RECEIPT),
                feed.decided(REF, "RELEASE", []),
                feed.received(REF, declarant=SECOND, lodging=SECOND_RECEIPT),
                feed.status(REF, StatusKind.DECIDED, 3, outcome="REFUSE", lodging=SECOND_RECEIPT),
                feed.status(REF, StatusKind.NOT_PUBLISHED_OTHER_DECLARANT, 4, detail=WITHHELD),
            ]
        )
        assert lookup(view, REF, SECOND) is None
        assert lookup(view, REF, EORI) is None
    finally:
        view.close()


def test_the_published_decision_stays_counted_and_the_withheld_one_is_not(
    tmp_path: Path,
) -> None:
    """The view keeps one decision per (reference, version): A's, read first, stays
    counted and names A; B's, withheld, is counted whether read before or after."""
    for withheld_first in (False, True):
        view, feed = OpsView(tmp_path / f"v{withheld_first}.sqlite3", TOPICS), Feed()
        withheld = feed.status(
            REF,
            StatusKind.NOT_PUBLISHED_OTHER_DECLARANT,
            4,
            detail=WITHHELD,
            lodging=SECOND_RECEIPT,
        )
        theirs = [
            feed.received(REF, declarant=SECOND, lodging=SECOND_RECEIPT),
            feed.decided(REF, "REFUSE", [], declarant=SECOND),
        ]
        try:
            ours = [
                feed.received(REF, lodging=FIRST_RECEIPT),
                feed.decided(REF, "RELEASE", [use("N853", "D1", "dgal")]),
            ]
            view.apply([withheld, *theirs, *ours] if withheld_first else [*ours, *theirs, withheld])
            assert view.outcome_counts() == {"RELEASE": 1}
            assert view.declarant_of(REF) == EORI
        finally:
            view.close()


@pytest.mark.asyncio
async def test_the_publisher_names_the_withheld_receipt(
    keys_dir: Path,
) -> None:
    """The lane's NOT_PUBLISHED_OTHER_DECLARANT names the receipt its outbox record
    carries."""
    memory = PublishedMemory(100)
    memory.add((OUTBOX_REF.encode(), b"1"), declarant_tag(EORI))
    producer = _Producer()
    lane = _PartitionPublisher(0, producer, memory)
    withheld = _OutboxRecord(b"1", 7, SECOND)
    withheld.headers.append((HEADER_LODGING, SECOND_RECEIPT.encode()))

    published = await _publisher(keys_dir)._publish_batch(
        lane, None, TopicPartition("gun.hub.decision-outbox", 0), [withheld]
    )

    assert published
    [value] = [v for t, v in producer.sent if t == "gun.status"]
    event = StatusEvent.model_validate_json(value)
    assert (event.kind, event.version, event.lodging) == (
        StatusKind.NOT_PUBLISHED_OTHER_DECLARANT,
        1,
        SECOND_RECEIPT,
    )
