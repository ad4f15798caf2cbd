"""One certificate quoted on two lines of one goods item is asked once per line, and an
adapter may answer each line: two answers for one (goods item, code, reference). The case
took the last one, so a refusal of the first line followed by a VALID second was released
(found by review, stop 46; latent with the shipped CERTEX client, which answers every
line of a document alike). The worse of the two counts: a refusal over an outage over a
valid answer, never a pass by default."""

from __future__ import annotations

import pytest

from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from tests.builders import answer_to, declaration_xml, document, goods_item
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import REF, at, requests

CHED = "CHEDP.FR.2026.0001234"


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: object) -> Hub:
    return Hub(routing_table, keys_dir)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("first", "second", "worse", "outcome"),
    [
        (Verdict.MISMATCH, Verdict.VALID, Verdict.MISMATCH, Outcome.REFUSE),
        (Verdict.VALID, Verdict.MISMATCH, Verdict.MISMATCH, Outcome.REFUSE),
        (Verdict.UNAVAILABLE, Verdict.VALID, Verdict.UNAVAILABLE, Outcome.CONTROL_DOCUMENTARY),
        (Verdict.VALID, Verdict.UNAVAILABLE, Verdict.UNAVAILABLE, Outcome.CONTROL_DOCUMENTARY),
        (
            Verdict.UNAVAILABLE,
            Verdict.QUANTITY_INSUFFICIENT,
            Verdict.QUANTITY_INSUFFICIENT,
            Outcome.REFUSE,
        ),
        (Verdict.VALID, Verdict.VALID, Verdict.VALID, Outcome.RELEASE),
    ],
)
def test_the_worse_of_two_answers_for_one_certificate_decides(
    hub: Hub, first: Verdict, second: Verdict, worse: Verdict, outcome: Outcome
) -> None:
    quoted = (document("N853", CHED, 1, "40"), document("N853", CHED, 2, "10"))
    sent = hub.intake.handle(declaration_xml(items=(goods_item(1, quoted),)), at(0))
    [request] = requests(hub, sent)
    answered = answer_to(request)
    assert len(answered.answers) == 2  # one per line
    lines = (
        answered.answers[0].model_copy(update={"verdict": first}),
        answered.answers[1].model_copy(update={"verdict": second}),
    )
    decided = hub.respond(answered.model_copy(update={"answers": lines}))
    assert hub.decisions(decided) == [(REF, 1, outcome)]
    [decision] = hub.decision_objects(decided)
    assert {d.verdict for d in decision.documents} == {worse}
