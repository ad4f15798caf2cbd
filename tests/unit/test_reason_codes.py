"""Issue 13, item 6: every refusal or control reason carries a stable code, aligned with the
EU single window's certificate-check codes where one exists, and a short text in French and
English that says what to do."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from lxml import etree

from adapters.base.certex import CLEARANCE_VERDICTS, REFUSAL_VERDICTS
from gun_contract.model.decision import DocumentResult
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Verdict
from gun_contract.resources import schema_path
from gun_hub.domain.decide import SUPERSEDED, decide
from gun_hub.domain.override import OVERRIDE_APPLIED, OVERRIDE_NOT_ACCEPTED
from gun_hub.domain.reasons import (
    CATALOGUE,
    UNKNOWN,
    Alignment,
    document_reason_code,
    explain,
    explain_codes,
)
from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.view import current_state
from gun_hub.pipeline.intake import TOO_LARGE_TO_DECIDE
from gun_hub.web.redaction import trader_status
from gun_hub.xml.decision_codec import encode_decision
from gun_hub.xml.safe_parse import XmlRejectionKind


def result(verdict: Verdict, partner_code: str | None = None) -> DocumentResult:
    return DocumentResult(
        goods_item=1,
        code="N853",
        reference="CHEDP.FR.2026.0001234",
        authority="dgal",
        verdict=verdict,
        partner_code=partner_code,
    )


def codes_the_hub_can_give() -> set[str]:
    """Every reason code a decision of the hub can carry (risk rules name their own)."""
    from_documents = {document_reason_code(result(verdict)) for verdict in Verdict} | {
        document_reason_code(result(verdict, code)) for code, verdict in REFUSAL_VERDICTS.items()
    }
    whole = {"DEGRADED_MODE", "DEADLINE", OVERRIDE_APPLIED, OVERRIDE_NOT_ACCEPTED, SUPERSEDED}
    unread = {f"XML_{kind.value}" for kind in XmlRejectionKind} | {TOO_LARGE_TO_DECIDE}
    return (from_documents - {"VALID", "EXEMPT"}) | whole | unread


@pytest.mark.parametrize(
    ("partner_code", "code", "csw"),
    [
        ("03", "COMMODITY_CODE_MISMATCH", "CL110/03"),
        ("05", "QUANTITY_INSUFFICIENT", "CL110/05"),
        ("10", "UNIT_MISMATCH", "CL110/10"),
        ("11", "QUANTITY_NOT_VALIDATED", "CL110/11"),
    ],
)
def test_partner_refusals_get_the_code_the_eu_single_window_shows_traders(
    partner_code: str, code: str, csw: str
) -> None:
    verdict = REFUSAL_VERDICTS[partner_code]
    assert document_reason_code(result(verdict, partner_code)) == code
    assert (explain(code).csw, explain(code).alignment) == (csw, Alignment.OBSERVED)


def test_a_document_not_found_is_aligned_with_the_single_windows_not_found() -> None:
    entry = explain(document_reason_code(result(Verdict.NOT_FOUND)))
    assert (entry.code, entry.csw) == ("NOT_FOUND", "CL568/328")
    assert entry.alignment is Alignment.OBSERVED


def test_every_code_the_hub_can_give_has_its_own_french_and_english_text() -> None:
    missing = sorted(codes_the_hub_can_give() - set(CATALOGUE))
    assert missing == []
    for code in codes_the_hub_can_give():
        entry = CATALOGUE[code]
        assert entry.fr
        assert entry.en
        assert entry.fr != entry.en
        assert ":" in entry.en, f"{code}: say what is wrong, then what to do"


def test_every_code_fits_the_decision_schema_and_the_trader_redaction() -> None:
    # decision.xsd ReasonCodeType; web/redaction.py keeps only codes of this shape.
    for code in CATALOGUE:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", code), code
        assert len(code) <= 64


@pytest.mark.parametrize("operation", sorted(CLEARANCE_VERDICTS))
def test_a_write_off_or_deletion_code_never_passes_for_a_refusal_reason(operation: object) -> None:
    """Clearance codes reuse 01-05 with other meanings: only refusal codes refine."""
    for code, verdict in CLEARANCE_VERDICTS[operation].items():  # type: ignore[index]
        assert document_reason_code(result(verdict, code)) == verdict.value


def test_a_stale_version_or_unknown_partner_code_keeps_the_verdict_as_its_code() -> None:
    assert document_reason_code(result(Verdict.MISMATCH, "STALE")) == "MISMATCH"
    assert document_reason_code(result(Verdict.MISMATCH, "99")) == "MISMATCH"


def test_targeting_codes_are_explained_by_their_family_and_unknown_codes_generically() -> None:
    assert explain("RISK.LIVE-ANIMALS-PHYSICAL").code == "RISK.LIVE-ANIMALS-PHYSICAL"
    assert "risk" in explain("RISK.LIVE-ANIMALS-PHYSICAL").en
    assert "random" in explain("SAMPLING.DGAL").en
    unknown = explain("SOMETHING_NEW")
    assert (unknown.code, unknown.en) == ("SOMETHING_NEW", UNKNOWN.en)


def test_the_decision_xml_keeps_the_contracts_reason_shape() -> None:
    """decision.xsd gives a Reason one code attribute and one text, no language: the
    French and English texts live in the catalogue, not in the decision."""
    decision = decide(
        reference="26FR000690I0000012",
        version=1,
        stage=Stage.LODGED,
        results=[result(Verdict.MISMATCH, "10")],
        decided_at=datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
    )
    document = etree.fromstring(encode_decision(decision))
    schema = etree.XMLSchema(etree.parse(str(schema_path("decision.xsd"))))
    schema.assertValid(document)
    [reason] = document.findall("{urn:gun-hub:decision:v1}Reason")
    assert reason.attrib.keys() == ["code"]
    assert reason.get("code") == "UNIT_MISMATCH"


def decided_history(detail: str) -> list[dict[str, object]]:
    return [
        {"version": 1, "kind": StatusKind.RECEIVED.value, "at": "t0", "detail": ""},
        {
            "version": 1,
            "kind": StatusKind.DECIDED.value,
            "at": "t1",
            "detail": detail,
            "outcome": "CONTROL_DOCUMENTARY",
        },
    ]


def test_the_status_lookup_says_what_to_do_for_each_reason_in_both_languages() -> None:
    state = current_state(decided_history("QUANTITY_INSUFFICIENT; OVERRIDE_73000"))
    assert [r["code"] for r in state["reasons"]] == ["QUANTITY_INSUFFICIENT", "OVERRIDE_73000"]
    first = state["reasons"][0]
    assert first["csw"] == "CL110/05"
    assert "balance" in first["en"]
    assert "solde" in first["fr"]


def test_a_trader_is_never_told_why_customs_targeted_the_declaration() -> None:
    shown = trader_status(
        "26FR000690I0000012", decided_history("RISK.LIVE-ANIMALS-PHYSICAL; UNAVAILABLE"), ()
    )
    assert [r["code"] for r in shown["reasons"]] == ["UNAVAILABLE"]


def test_each_code_is_explained_once() -> None:
    assert [e["code"] for e in explain_codes(["DEADLINE", "", "DEADLINE", "UNAVAILABLE"])] == [
        "DEADLINE",
        "UNAVAILABLE",
    ]
