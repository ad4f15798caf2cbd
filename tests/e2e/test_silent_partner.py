"""A partner that never answers: the deadline fires and the decision says who was silent."""

from __future__ import annotations

import pytest

from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.status_events import StatusKind
from tests.builders import declaration_xml, document, goods_item
from tests.e2e.conftest import Pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]


async def test_the_deadline_gives_documentary_control_naming_the_silent_partner(
    impatient_hub: Pipeline,
) -> None:
    # DGAL answers (its adapter runs); CITES has no adapter at all.
    await impatient_hub.submit(
        [
            declaration_xml(
                reference="26FRSILENT00000001",
                items=(
                    goods_item(1, (document("N853", "CHEDP.FR.2026.0001234", 1, "10"),)),
                    goods_item(2, (document("C638", "CITES.FR.2026.555", 1, "2", "NAR"),)),
                ),
            )
        ]
    )
    [received] = await impatient_hub.decisions(1)
    decision = received.decision
    assert decision.outcome is Outcome.CONTROL_DOCUMENTARY
    [deadline] = [r for r in decision.reasons if r.code == "DEADLINE"]
    assert "no answer from cites" in deadline.text
    assert {(d.authority, d.verdict) for d in decision.documents} == {
        ("dgal", Verdict.VALID),
        ("cites", Verdict.UNAVAILABLE),
    }
    kinds = [s.kind for s in await impatient_hub.statuses() if s.reference == "26FRSILENT00000001"]
    assert StatusKind.DEADLINE_PASSED in kinds
    assert kinds.index(StatusKind.DEADLINE_PASSED) < kinds.index(StatusKind.DECIDED)
