"""Through the trader listener, the declarant whose decision was published reads it while
another declarant's decision of the same version is withheld (found by the review of stop
54).

One version of one reference lodged by two declarants on two partitions (ADR 0007's
addendum, the split), each decided by its partition's case; the publisher publishes A's
and withholds B's (NOT_PUBLISHED_OTHER_DECLARANT). The real intake feeds a real view, the
real trader listener answers with a real portal token. The withholding named no receipt
and the view withheld the whole version: A, whose decision the clearance system
received, got the 404 of an unknown reference. B's decision's outbox record now carries
its case's receipt, which the publisher names in that status (the review's test built the
status naming none, as the publisher then wrote it).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import NOT_PUBLISHED, StatusEvent, StatusKind
from gun_hub.ops.view import FeedRecord
from gun_hub.pipeline.decision_outbox import lodging_of
from tests.builders import EORI, declaration_xml
from tests.unit.test_a_reference_two_declarants_use_is_read_by_each_alone import SECOND
from tests.unit.test_decided_cases_leave_the_hot_table import REF
from tests.unit.test_pipeline import Hub
from tests.unit.test_trader_sees_its_declaration_from_receipt import Lookup
from tests.unit.test_trader_sees_its_declaration_from_receipt import (
    lookup as lookup,
)
from tests.unit.test_versions_and_recovery import at


async def test_the_published_declarant_reads_its_decision_when_anothers_is_withheld(
    lookup: Lookup,
    routing_table: RoutingTable,
    keys_dir: Path,
) -> None:
    first = lookup.receive(declaration_xml(), at(0, partition=0))
    lookup.apply(lookup.hub.answer(first, "dgal", Verdict.VALID).records)
    code, mine = await lookup.as_trader(REF, EORI)
    assert (code, mine.get("state"), mine.get("outcome")) == (200, "DECIDED", "RELEASE")

    # Another declarant's version 1 of the reference, read on partition 1.
    other_partition = Hub(routing_table, keys_dir)
    other_partition.now = lookup.hub.now + timedelta(minutes=1)
    theirs = other_partition.intake.handle(declaration_xml(declarant=SECOND), at(0, partition=1))
    lookup.apply(theirs.records)
    refused = other_partition.answer(theirs, "dgal", Verdict.NOT_FOUND)
    assert [o for _, _, o in other_partition.decisions(refused)] == [Outcome.REFUSE]
    lookup.apply(refused.records)
    # The publisher withholds B's decision (OTHER_DECLARANT) and says so on gun.status,
    # naming the receipt B's outbox record carries.
    [receipt] = [
        lodging_of(r.headers or [])
        for r in refused.records
        if r.topic == other_partition.topics.decision_outbox
    ]
    assert receipt is not None
    withheld = StatusEvent(
        reference=REF,
        version=1,
        kind=StatusKind.NOT_PUBLISHED_OTHER_DECLARANT,
        at=other_partition.now,
        detail=f"{NOT_PUBLISHED}: decided for another declarant than the decisions of "
        "this declaration published before it",
        lodging=receipt,
    )
    offset = lookup.offsets.get(lookup.view.topics.status, 0)
    lookup.offsets[lookup.view.topics.status] = offset + 1
    lookup.view.apply([FeedRecord(lookup.view.topics.status, 0, offset, 0, withheld.to_bytes())])

    assert (await lookup.as_trader(REF, SECOND))[0] == 404, "B's withheld version: nobody's"
    code, mine = await lookup.as_trader(REF, EORI)
    assert code == 200, f"A reads {code} {mine} for its own published decision"
    assert (mine["state"], mine["outcome"]) == ("DECIDED", "RELEASE")
