"""The degraded decision says how long the silent partner was given, not how long ago the
declaration was first read.

A declaration read again after a crash asks its partners again and gives them a whole
deadline again (intake.py: ``known.deadline = max(known.deadline, now + deadline)``),
while the case keeps when it was first opened (``opened_at``). The deadline handler
(pipeline/deadlines.py) writes its reason as ``no answer from X within Ns`` with N the
time from the first reading to the extended deadline: a hub back after an hour decides
``DEADLINE: no answer from cites within 3630s``, telling the clearance system, the
officer and the trader that CITES was waited for an hour, when it was asked 30 seconds
before (docs/decisions.md: "the reasons say `DEADLINE: no answer from cites within
30s`").
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from gun_contract.dead_letter import SourcePosition
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_pipeline import SOURCE, Hub

REF = "26FR000690I0000012"
DECLARATION = declaration_xml(
    items=(
        goods_item(1, (document("N853", "CHEDP-1"),)),
        goods_item(2, (document("C638", "CITES-1", 1, "2", "NAR"),)),
    )
)


def test_a_deadline_after_a_redelivery_names_the_time_the_partner_was_given(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    first = hub.intake.handle(DECLARATION, SOURCE)
    hub.answer(first, "dgal", Verdict.VALID)
    # The worker stops before the record is committed; back an hour later, it reads the
    # declaration again and asks cites again: cites has 30 s from now.
    hub.now += timedelta(hours=1)
    again = hub.intake.handle(DECLARATION, SOURCE)
    assert StatusKind.REQUESTS_SENT in hub.status_kinds(again)
    hub.now += timedelta(seconds=31)
    out = hub.deadlines.handle(REF, 1, SourcePosition(hub.topics.deadlines, 0, 0))
    [decision] = hub.decision_objects(out)
    assert decision.outcome is Outcome.CONTROL_DOCUMENTARY
    [deadline] = [r.text for r in decision.reasons if r.code == "DEADLINE"]
    assert deadline == "no answer from cites within 30s"
    [passed] = [s.detail for s in hub.statuses(out) if s.kind is StatusKind.DEADLINE_PASSED]
    assert passed == "no answer from cites within 30s"
