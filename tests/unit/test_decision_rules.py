"""The decision rules of the contract (section 4), as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gun_contract.model.decision import DocumentResult
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.decide import decide, outcome_for
from gun_hub.xml.decision_codec import DecisionCodec, encode_decision


def result(verdict: Verdict, item: int = 1, authority: str | None = "dgal") -> DocumentResult:
    return DocumentResult(
        goods_item=item, code="N853", reference=f"DOC-{item}", authority=authority, verdict=verdict
    )


@pytest.mark.parametrize(
    ("verdicts", "outcome"),
    [
        ([Verdict.VALID], Outcome.RELEASE),
        ([Verdict.VALID, Verdict.EXEMPT], Outcome.RELEASE),
        ([], Outcome.RELEASE),
        ([Verdict.VALID, Verdict.NOT_FOUND], Outcome.REFUSE),
        ([Verdict.INVALID_STATUS], Outcome.REFUSE),
        ([Verdict.ALREADY_USED], Outcome.REFUSE),
        ([Verdict.QUANTITY_INSUFFICIENT], Outcome.REFUSE),
        ([Verdict.MISMATCH], Outcome.REFUSE),
        ([Verdict.UNAVAILABLE, Verdict.VALID], Outcome.CONTROL_DOCUMENTARY),
        ([Verdict.UNROUTED], Outcome.CONTROL_DOCUMENTARY),
        # A refusal is certain; a missing answer is not: the refusal wins.
        ([Verdict.UNAVAILABLE, Verdict.NOT_FOUND], Outcome.REFUSE),
    ],
)
def test_lodged_outcome_follows_the_verdicts(verdicts: list[Verdict], outcome: Outcome) -> None:
    results = [result(v, i) for i, v in enumerate(verdicts, start=1)]
    assert outcome_for(Stage.LODGED, results) is outcome


@pytest.mark.parametrize("verdict", list(Verdict))
def test_prelodged_is_always_advice(verdict: Verdict) -> None:
    assert outcome_for(Stage.PRELODGED, [result(verdict)]) is Outcome.ADVICE


def test_cancelled_is_cancelled() -> None:
    assert outcome_for(Stage.CANCELLED, [result(Verdict.VALID)]) is Outcome.CANCELLED


def test_degraded_mode_says_so_and_names_each_unchecked_document() -> None:
    decision = decide(
        reference="26FR000690I0000012",
        version=2,
        stage=Stage.LODGED,
        results=[result(Verdict.VALID, 1), result(Verdict.UNAVAILABLE, 2, "cites")],
        decided_at=datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
    )
    assert decision.outcome is Outcome.CONTROL_DOCUMENTARY
    assert [r.code for r in decision.reasons] == ["DEGRADED_MODE", "UNAVAILABLE"]
    assert "cites" in decision.reasons[1].text
    assert "DOC-2" in decision.reasons[1].text


def test_a_decision_renders_to_xml_valid_against_decision_xsd() -> None:
    decision = decide(
        reference="26FR000690I0000012",
        version=1,
        stage=Stage.LODGED,
        results=[result(Verdict.QUANTITY_INSUFFICIENT), result(Verdict.EXEMPT, 2, None)],
        decided_at=datetime(2026, 11, 22, 10, 0, 0, 120000, tzinfo=UTC),
    )
    xml = encode_decision(decision)
    assert b"<DecidedAt>2026-11-22T10:00:00.120Z</DecidedAt>" in xml
    assert DecisionCodec().decode(xml) == decision
