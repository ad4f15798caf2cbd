"""A write-off the partner applied to some documents and refused for another counts what
it wrote off.

After a release (or a release after a degraded control) the hub sends one WRITE_OFF per
authority for all its documents; the partner answers each document on its own. The
correlation (pipeline/correlation.py ``_report_follow_up``) writes the WriteOffFact (the
quantities the statistics and the trader's view count as written off) only when every
answer is VALID: one document refused (here INVALID_STATUS: its status changed since the
reservation) makes the whole answer a FOLLOW_UP_FAILED with no fact at all, though the
partner wrote the other document off. Only a partly *stale* answer is split per document
(``_follow_up_answered``). docs/decisions.md, "Quantity life cycle": write-offs are
counted from their answers; the hub's account then says less was drawn on the CHED than
the partner's ledger holds.
"""

from __future__ import annotations

from pathlib import Path

from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.facts import FACT, WriteOffFact
from tests.builders import answer_to, declaration_xml, document, goods_item
from tests.unit.test_pipeline import SOURCE, Hub

DECLARATION = declaration_xml(
    items=(
        goods_item(1, (document("N853", "CHEDP-1", 1, "10"),)),
        goods_item(2, (document("N853", "CHEDP-2", 1, "20"),)),
    )
)


def test_a_write_off_refused_for_one_document_still_counts_the_others_written_off(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    sent = hub.intake.handle(DECLARATION, SOURCE)
    released = hub.answer(sent, "dgal", Verdict.VALID)
    assert [outcome for *_, outcome in hub.decisions(released)] == [Outcome.RELEASE]
    [record] = released.to(hub.topics.requests("dgal"))
    request = AuthorityRequest.model_validate_json(
        hub.envelope("dgal").open(record.value, topic=record.topic).payload
    )
    assert request.operation is Operation.WRITE_OFF
    answer = answer_to(request, Verdict.VALID)
    first, second = answer.answers
    partly = answer.model_copy(
        update={"answers": (first, second.model_copy(update={"verdict": Verdict.INVALID_STATUS}))}
    )
    out = hub.respond(partly)
    assert StatusKind.FOLLOW_UP_FAILED in hub.status_kinds(out)
    facts = [FACT.validate_json(r.value) for r in out.to(hub.topics.facts)]
    written = [
        (d.reference, d.quantity) for f in facts if isinstance(f, WriteOffFact) for d in f.documents
    ]
    assert [reference for reference, _ in written] == [first.reference]
