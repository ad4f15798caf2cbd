"""Risk targeting: rules as data, deterministic random sampling, controls only raise."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gun_contract.model.decision import DocumentResult
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.decide import decide
from gun_hub.domain.risk import (
    RiskRule,
    RiskRules,
    RiskRulesError,
    Sampling,
    assess_risk,
    load_risk_rules,
    sampling_draw,
)
from tests.builders import declaration, goods_item
from tests.conftest import REPO

AUTHORITIES = ["cites", "dga", "dgal"]
NOW = datetime(2026, 11, 22, 10, tzinfo=UTC)


def rule(**conditions: object) -> RiskRule:
    return RiskRule.model_validate(
        {"id": "R1", "description": "test", "action": "CONTROL_PHYSICAL", **conditions}
    )


def released(hits: list) -> Outcome:  # type: ignore[type-arg]
    valid = [
        DocumentResult(
            goods_item=1, code="N853", reference="D", authority="dgal", verdict=Verdict.VALID
        )
    ]
    return decide(
        reference="R", version=1, stage=Stage.LODGED, results=valid, decided_at=NOW, risk=hits
    ).outcome


def test_the_shipped_rules_load() -> None:
    rules = load_risk_rules(REPO / "config" / "risk-rules.toml", AUTHORITIES)
    assert {r.id for r in rules.rules} == {"LIVE-ANIMALS-PHYSICAL", "WAR-MATERIAL-DOCUMENTARY"}


def test_a_rule_fires_only_when_every_condition_holds() -> None:
    rules = RiskRules(rules=(rule(origin=["NO"], commodity_prefix=["0302"]),))
    salmon_from_norway = declaration()
    assert [h.code for h in assess_risk(salmon_from_norway, ["dgal"], rules)] == ["RISK.R1"]
    trout = declaration(items=(goods_item(commodity_code="0303140000"),))
    assert assess_risk(trout, ["dgal"], rules) == []


def test_a_rule_on_the_authority_fires_for_its_documents() -> None:
    rules = RiskRules(rules=(rule(authority=["dga"]),))
    assert assess_risk(declaration(), ["dga"], rules)
    assert not assess_risk(declaration(), ["dgal"], rules)


def test_the_decision_names_the_rule_and_takes_the_strongest_control() -> None:
    rules = RiskRules(
        rules=(
            rule(procedure=["4000"]),
            RiskRule(
                id="R2",
                description="doc",
                action=Outcome.CONTROL_DOCUMENTARY,
                declarant=["FR12345678901234"],
            ),
        )
    )
    hits = assess_risk(declaration(), ["dgal"], rules)
    decision = decide(
        reference="R", version=1, stage=Stage.LODGED, results=[], decided_at=NOW, risk=hits
    )
    assert decision.outcome is Outcome.CONTROL_PHYSICAL
    assert [r.code for r in decision.reasons] == ["RISK.R1", "RISK.R2"]


def test_a_risk_hit_never_softens_a_refusal() -> None:
    """A physical-control rule on a refused declaration: still REFUSE. (Degraded mode is
    no refusal: a rule's control stands there, test_risk_targeting_survives_degraded_mode.py.)"""
    hits = assess_risk(declaration(), ["dgal"], RiskRules(rules=(rule(procedure=["4000"]),)))
    result = DocumentResult(
        goods_item=1, code="N853", reference="D", authority="dgal", verdict=Verdict.NOT_FOUND
    )
    decision = decide(
        reference="R", version=1, stage=Stage.LODGED, results=[result], decided_at=NOW, risk=hits
    )
    assert decision.outcome is Outcome.REFUSE


def test_the_same_declaration_version_always_draws_the_same() -> None:
    assert sampling_draw("s", "REF", 1, "dgal") == sampling_draw("s", "REF", 1, "dgal")
    assert sampling_draw("s", "REF", 1, "dgal") != sampling_draw("s", "REF", 2, "dgal")
    assert 0 <= sampling_draw("s", "REF", 1, "dgal") < 1


def test_observed_sampling_rate_matches_the_configured_rate() -> None:
    """20,000 declaration versions at 5 %: the count of controls is binomial; it must lie
    within four standard deviations of n*p (a false alarm about once in 15,000 runs;
    the draw is deterministic, so the test is stable anyway)."""
    n, rate = 20_000, 0.05
    rules = RiskRules(sampling=Sampling(seed="tolerance", rates={"cites": rate}))
    controlled = sum(
        released(assess_risk(declaration(reference=f"26FRSAMPLE{i:08d}"), ["cites"], rules))
        is Outcome.CONTROL_DOCUMENTARY
        for i in range(n)
    )
    sigma = math.sqrt(n * rate * (1 - rate))
    assert abs(controlled - n * rate) <= 4 * sigma, (controlled, n * rate, sigma)


def test_sampling_is_per_authority() -> None:
    rules = RiskRules(sampling=Sampling(seed="x", rates={"dga": 1.0}))
    assert [h.code for h in assess_risk(declaration(), ["dga"], rules)] == ["SAMPLING.DGA"]
    assert assess_risk(declaration(), ["dgal"], rules) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[rules]]\nid = "R1"\ndescription = "x"\naction = "RELEASE"\norigin = ["NO"]\n',
            "action must be one of",
        ),
        (
            '[[rules]]\nid = "R1"\ndescription = "x"\naction = "CONTROL_PHYSICAL"\n',
            "has no condition",
        ),
        (
            '[[rules]]\nid = "R1"\ndescription = "x"\naction = "CONTROL_PHYSICAL"\n'
            'authority = ["nobody"]\n',
            "unknown authorities",
        ),
        ("[sampling.rates]\ndgal = 1.5\n", "between 0 and 1"),
        ("[sampling.rates]\nmars = 0.5\n", "unknown authorities"),
    ],
)
def test_bad_rules_are_refused_with_their_fault(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(RiskRulesError, match=message):
        load_risk_rules(path, AUTHORITIES)
