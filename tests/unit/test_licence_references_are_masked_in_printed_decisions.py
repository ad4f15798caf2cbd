"""A printed decision a trader may read shows a confidential authority's document
references masked (issue 13): in the document's line and in any reason that quotes it.
Other authorities' references, verdicts, codes and outcomes are printed as decided."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gun_contract.model.decision import DocumentResult
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.decide import decide
from gun_hub.domain.decision_text import decision_lines, mask_reference, masked

LICENCE = "EXP-2026-0042"
CHED = "CHEDP.FR.2026.0001234"


@pytest.mark.parametrize(
    ("reference", "shown"),
    [
        (LICENCE, "EXP-****-0042"),
        ("LEMG.FR.2026.0042", "LEMG.**.****.0042"),
        ("20260042ABCD", "********ABCD"),
        # Too short to keep four characters and still hide anything worth hiding.
        ("L-4217", "L-****"),
        ("X1", "**"),
    ],
)
def test_a_reference_keeps_its_type_prefix_and_last_four_characters_only(
    reference: str, shown: str
) -> None:
    assert mask_reference(reference) == shown


def refused_export() -> list[str]:
    decision = decide(
        reference="26FR000690E0000012",
        version=1,
        stage=Stage.LODGED,
        results=[
            DocumentResult(
                goods_item=1,
                code="LEMG",
                reference=LICENCE,
                authority="dga",
                verdict=Verdict.MISMATCH,
                partner_code="08",
            ),
            DocumentResult(
                goods_item=2, code="N853", reference=CHED, authority="dgal", verdict=Verdict.VALID
            ),
        ],
        decided_at=datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
    )
    assert decision.outcome is Outcome.REFUSE
    assert LICENCE in decision.reasons[0].text  # the clearance system's decision names it
    return decision_lines(masked(decision, {"dga"}), "12-refuse-war-material-destination.xml")


def test_a_confidential_licence_is_masked_in_its_line_and_in_the_reason_quoting_it() -> None:
    lines = refused_export()

    assert not any(LICENCE in line for line in lines)
    assert lines[0] == "26FR000690E0000012 v1  12-refuse-war-material-destination.xml: REFUSE"
    assert lines[1] == (
        "    reason DESTINATION_MISMATCH: goods item 1, LEMG EXP-****-0042: "
        "mismatch at dga (partner code 08)"
    )
    assert "    item 1 LEMG EXP-****-0042: MISMATCH (dga) partner code 08" in lines


def test_other_authorities_references_are_printed_in_clear() -> None:
    assert f"    item 2 N853 {CHED}: VALID (dgal)" in refused_export()


def test_a_decision_without_confidential_documents_is_printed_unchanged() -> None:
    decision = decide(
        reference="26FR000690I0000001",
        version=1,
        stage=Stage.LODGED,
        results=[
            DocumentResult(
                goods_item=1, code="N853", reference=CHED, authority="dgal", verdict=Verdict.VALID
            )
        ],
        decided_at=datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
    )
    assert masked(decision, {"dga"}) == decision
