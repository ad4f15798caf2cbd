"""A risk rule's control holds whatever else sends the declaration to control.

Domain notes: customs targets risky operations, and "a decision may send a declaration to
control even when every document is valid". An outage (degraded mode), a deadline, an
authority not connected at the office, or the declarant's override (mention 73000) send a
declaration to documentary control; none of them may soften what a risk rule asks for. The
stronger control wins, and the decision names the rule that hit beside the other reasons.
A refusal stays a refusal: risk targeting never weakens it.

Before: decide() applied risk only to a RELEASE. With dgal UNAVAILABLE and the rule on live
animals asking for CONTROL_PHYSICAL, the decision was CONTROL_DOCUMENTARY with the reasons
[DEGRADED_MODE, UNAVAILABLE]: the physical control was lost and the rule not named; the same
under the override (found by review, stop 36, D5).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.model.decision import Decision, DocumentResult
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.decide import DEGRADED_MODE, decide
from gun_hub.domain.override import NO_OVERRIDE, OVERRIDE_APPLIED, OverrideReview
from gun_hub.domain.risk import RiskHit, RiskRule, RiskRules
from gun_hub.domain.rollout import AUTHORITY_NOT_CONNECTED, RolloutMode
from gun_hub.domain.routing import RoutingTable
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_pipeline import Hub

NOW = datetime(2026, 11, 22, 10, tzinfo=UTC)
REF = "26FR000690I0000012"
LIVE_ANIMALS = RiskHit(
    "RISK.LIVE-ANIMALS-PHYSICAL",
    Outcome.CONTROL_PHYSICAL,
    "risk rule LIVE-ANIMALS-PHYSICAL: live animals are always inspected",
)
SAMPLED = RiskHit("SAMPLING.DGAL", Outcome.CONTROL_DOCUMENTARY, "random sampling of dgal (2.0%)")


def cheda(verdict: Verdict, partner_code: str | None = None) -> DocumentResult:
    return DocumentResult(
        goods_item=1,
        code="C640",
        reference="CHEDA.FR.2026.0000101",
        authority="dgal",
        verdict=verdict,
        partner_code=partner_code,
    )


def decided(
    results: list[DocumentResult],
    risk: list[RiskHit],
    *,
    stage: Stage = Stage.LODGED,
    override: OverrideReview = NO_OVERRIDE,
    rollout: dict[str, RolloutMode] | None = None,
) -> Decision:
    return decide(
        reference=REF,
        version=1,
        stage=stage,
        results=results,
        decided_at=NOW,
        risk=risk,
        rollout=rollout,
        override=override,
    )


def codes(decision: Decision) -> list[str]:
    return [reason.code for reason in decision.reasons]


def test_a_physical_control_asked_by_a_risk_rule_survives_degraded_mode() -> None:
    """dgal cannot answer (UNAVAILABLE) for a CHED-A of live animals that the rule on live
    animals sends to physical control: the physical control stands, named beside degraded
    mode."""
    decision = decided([cheda(Verdict.UNAVAILABLE)], [LIVE_ANIMALS])
    assert decision.outcome is Outcome.CONTROL_PHYSICAL
    assert codes(decision) == [DEGRADED_MODE, "UNAVAILABLE", LIVE_ANIMALS.code]
    assert decision.reasons[-1].text == LIVE_ANIMALS.text


def test_a_physical_control_asked_by_a_risk_rule_survives_the_declarants_override() -> None:
    """The override (73000) covers a dgal refusal: a documentary control, unless a risk rule
    asks for a physical one; then the physical control stands and both are named."""
    refused = cheda(Verdict.QUANTITY_INSUFFICIENT, "05")
    override = OverrideReview(items=(1,), covered=(refused,))
    decision = decided([refused], [LIVE_ANIMALS], override=override)
    assert decision.outcome is Outcome.CONTROL_PHYSICAL
    assert codes(decision) == ["QUANTITY_INSUFFICIENT", OVERRIDE_APPLIED, LIVE_ANIMALS.code]


@pytest.mark.parametrize("mode", [RolloutMode.OFF, RolloutMode.SHADOW])
def test_a_physical_control_asked_by_a_risk_rule_survives_an_authority_not_connected(
    mode: RolloutMode,
) -> None:
    """dgal is not connected at the office (off, or shadow): its documents are checked
    there (a documentary control); the rule on live animals still asks for physical."""
    decision = decided([cheda(Verdict.UNROUTED)], [LIVE_ANIMALS], rollout={"dgal": mode})
    assert decision.outcome is Outcome.CONTROL_PHYSICAL
    assert codes(decision) == [AUTHORITY_NOT_CONNECTED, LIVE_ANIMALS.code]


def test_a_documentary_risk_hit_on_a_documentary_control_is_named() -> None:
    """Sampling drew a declaration that degraded mode already sends to documentary
    control: the outcome is the same control, and the draw is named (the figures of
    targeting count it)."""
    decision = decided([cheda(Verdict.UNAVAILABLE)], [SAMPLED])
    assert decision.outcome is Outcome.CONTROL_DOCUMENTARY
    assert codes(decision) == [DEGRADED_MODE, "UNAVAILABLE", SAMPLED.code]


def test_the_strongest_control_any_hit_asks_wins_over_degraded_mode() -> None:
    decision = decided([cheda(Verdict.UNAVAILABLE)], [SAMPLED, LIVE_ANIMALS])
    assert decision.outcome is Outcome.CONTROL_PHYSICAL
    assert codes(decision)[-2:] == [SAMPLED.code, LIVE_ANIMALS.code]


@pytest.mark.parametrize(
    "verdict", [Verdict.NOT_FOUND, Verdict.QUANTITY_INSUFFICIENT, Verdict.MISMATCH]
)
def test_a_risk_hit_never_weakens_a_refusal(verdict: Verdict) -> None:
    decision = decided([cheda(verdict), cheda(Verdict.UNAVAILABLE)], [LIVE_ANIMALS])
    assert decision.outcome is Outcome.REFUSE
    assert LIVE_ANIMALS.code not in codes(decision)


@pytest.mark.parametrize(
    ("stage", "outcome"),
    [
        (Stage.PRELODGED, Outcome.ADVICE),
        (Stage.CANCELLED, Outcome.CANCELLED),
        (Stage.INVALIDATED, Outcome.CANCELLED),
        (Stage.RELEASED_AFTER_CONTROL, Outcome.RELEASE),
    ],
)
def test_risk_targeting_stays_out_of_the_stages_that_are_not_a_lodgement(
    stage: Stage, outcome: Outcome
) -> None:
    decision = decided([cheda(Verdict.VALID)], [LIVE_ANIMALS], stage=stage)
    assert decision.outcome is outcome
    assert LIVE_ANIMALS.code not in codes(decision)


# -- through the hub's processing steps (no broker) -------------------------------------

SOURCE = SourcePosition("gun.declarations", 0, 0)
RULES = RiskRules(
    rules=(
        RiskRule(
            id="LIVE-ANIMALS-PHYSICAL",
            description="Live animals are always inspected at the border control post",
            commodity_prefix=("01",),
            action=Outcome.CONTROL_PHYSICAL,
        ),
    )
)


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir, risk_rules=RULES)


def live_animals(mentions: tuple[str, ...] = ()) -> bytes:
    return declaration_xml(
        items=(
            goods_item(
                1,
                (document("C640", "CHEDA.FR.2026.0000101", 1, "10", "NAR"),),
                commodity_code="0102291000",
                mentions=mentions,
            ),
        )
    )


def test_live_animals_whose_authority_is_down_still_go_to_physical_control(hub: Hub) -> None:
    sent = hub.intake.handle(live_animals(), SOURCE)
    [decision] = hub.decision_objects(hub.answer(sent, "dgal", Verdict.UNAVAILABLE))
    assert decision.outcome is Outcome.CONTROL_PHYSICAL
    assert codes(decision) == [DEGRADED_MODE, "UNAVAILABLE", "RISK.LIVE-ANIMALS-PHYSICAL"]


def test_live_animals_whose_authority_is_silent_still_go_to_physical_control(hub: Hub) -> None:
    hub.intake.handle(live_animals(), SOURCE)
    hub.now = hub.now.replace(year=hub.now.year + 1)  # far past the request deadline
    timed_out = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 0))
    [decision] = hub.decision_objects(timed_out)
    assert decision.outcome is Outcome.CONTROL_PHYSICAL
    assert codes(decision) == [
        DEGRADED_MODE,
        "DEADLINE",
        "UNAVAILABLE",
        "RISK.LIVE-ANIMALS-PHYSICAL",
    ]


def test_live_animals_under_the_override_still_go_to_physical_control(hub: Hub) -> None:
    sent = hub.intake.handle(live_animals(mentions=("73000",)), SOURCE)
    [decision] = hub.decision_objects(hub.answer(sent, "dgal", Verdict.QUANTITY_INSUFFICIENT))
    assert decision.outcome is Outcome.CONTROL_PHYSICAL
    assert codes(decision) == [
        "QUANTITY_INSUFFICIENT",
        OVERRIDE_APPLIED,
        "RISK.LIVE-ANIMALS-PHYSICAL",
    ]
