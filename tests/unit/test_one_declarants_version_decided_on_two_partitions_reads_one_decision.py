"""One declarant's version read on two partitions at once, decided twice, reads one
decision: the one the publisher published (found by the review of stop 54).

A version read on two partitions (docs/decisions.md, "One reference on several
partitions") is decided by each partition's case; the publisher publishes the first and
drops the other as a DUPLICATE (runtime/publisher.py: nothing recorded on gun.status). The
view marks a version's second DECIDED ``decided_again`` and the trader's answer leaves it
out (web/redaction.py). Since each receipt counted apart (``_dated`` keyed by (version,
lodging)), the trader read two decisions of version 1, the second one never received by
the clearance system. A version is now decided once per declarant: the receipts one
declarant owns count as one, two declarants' stay two.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.view import OpsView
from tests.unit.test_a_reference_two_declarants_use_is_read_by_each_alone import (
    FIRST_RECEIPT,
    REF,
    SECOND_RECEIPT,
    lookup,
)
from tests.unit.test_operations_view import EORI, NOON, TOPICS, Feed


def test_one_declarants_version_decided_on_two_partitions_reads_one_decision(
    tmp_path: Path,
) -> None:
    view, feed = OpsView(tmp_path / "v.sqlite3", TOPICS), Feed()
    try:
        view.apply(
            [
                feed.received(REF, lodging=FIRST_RECEIPT),  # partition 0's receipt
                feed.status(REF, StatusKind.RECEIVED, lodging=FIRST_RECEIPT),
                feed.received(  # the same version, read on partition 1 too
                    REF, at=NOON + timedelta(seconds=1), lodging=SECOND_RECEIPT
                ),
                feed.status(REF, StatusKind.RECEIVED, lodging=SECOND_RECEIPT),
                feed.status(REF, StatusKind.DECIDED, 1, outcome="RELEASE", lodging=FIRST_RECEIPT),
                feed.decided(REF, "RELEASE", []),
                feed.status(REF, StatusKind.DECIDED, 2, outcome="REFUSE", lodging=SECOND_RECEIPT),
            ]
        )
        mine = lookup(view, REF, EORI)
        assert mine is not None
        decided = [e.get("outcome") for e in mine["history"] if e["kind"] == "DECIDED"]
        assert decided == ["RELEASE"], (
            f"the trader reads {decided} for one version the clearance system received "
            "one decision of"
        )
    finally:
        view.close()
