"""Review of stop 59's change (ADR 0028, the view's ``_settle``): a version read on three
partitions, decided by each one's case.

The lane wrote a NOT_PUBLISHED_DECIDED_ELSEWHERE for every duplicate from another
partition than the one published, naming that duplicate's outcome, even when it was the
outcome published. ``_settle`` reads the outcomes the statuses name as "not published"
and drops every decision set aside with one of them: on three partitions, a status naming
the published outcome (its twin's on a second partition) dropped the published decision
set aside, and the control kept (third partition) stood in the counts for good. The lane
now writes no status for a duplicate of the outcome published (publisher.py
``_tell_decided_elsewhere``; its test in
tests/unit/test_a_split_version_read_on_before_its_not_published_notice.py): the view
reads the control's status alone.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.facts import DocumentUse, ReceivedFact
from gun_hub.ops.view import OpsView
from tests.unit.test_the_view_reads_the_decision_published_when_two_partitions_decided_a_version import (  # noqa: E501
    CONTROL,
    EORI,
    NOON,
    PUBLISHED_FACT,
    RECEIPTS,
    REF,
    RELEASE,
    TOPICS,
    UNPUBLISHED_FACT,
    Written,
    _decision,
    _fact,
    _named,
    _read,
    _status,
)

THIRD_RECEIPT = "2c2c2c2c2c2c2c2c"
SECOND_RECEIPT = "1b1b1b1b1b1b1b1b"

# Partition 1's case released too (not published: the lane published partition 0's).
TWIN_RELEASE_FACT = _fact(
    "twin release fact",
    _decision(
        RELEASE,
        2,
        [
            DocumentUse(
                goods_item=1, code="N853", reference="CHEDP.1", authority="dgal", verdict="VALID"
            )
        ],
    ),
)
# Partition 2's case decided a control at its deadline (not published).
CONTROL_FACT = UNPUBLISHED_FACT
CONTROL_MARKER = _status(
    "marker of the control",
    StatusKind.NOT_PUBLISHED_DECIDED_ELSEWHERE,
    33,
    outcome=CONTROL,
    detail="decided CONTROL_DOCUMENTARY on partition 2; the decision of the case on "
    "partition 0 was published",
    lodging=THIRD_RECEIPT,
)
THIRD_RECEIPTS = [
    _fact(
        "received on 2",
        ReceivedFact(
            reference=REF, version=1, declarant_eori=EORI, received_at=NOON, lodging=THIRD_RECEIPT
        ),
    ),
    _status("RECEIVED on 2", StatusKind.RECEIVED, 0, lodging=THIRD_RECEIPT),
]


def test_three_partitions_one_released_like_the_published_the_release_is_counted_in_every_order(
    tmp_path: Path,
) -> None:
    """Partition 0 released (published), partition 1 released too, partition 2 decided a
    control: the lane's status names the control alone, and the release is counted
    whatever the order the three facts and it are read in."""
    records: list[Written] = [PUBLISHED_FACT, TWIN_RELEASE_FACT, CONTROL_FACT]
    wrong: list[str] = []
    for n, order in enumerate(itertools.permutations([*records, CONTROL_MARKER])):
        view = OpsView(tmp_path / f"view{n}.sqlite3", TOPICS)
        try:
            _read(view, *RECEIPTS, *THIRD_RECEIPTS, *order)
            by_outcome = view.statistics()["decisions"]["by_outcome"]
            if by_outcome != {RELEASE: 1}:
                wrong.append(f"{_named(order)}: {by_outcome}")
        finally:
            view.close()
    assert not wrong, f"{len(wrong)} orders count another decision:\n" + "\n".join(wrong[:5])
