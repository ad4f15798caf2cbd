"""Issue 13, item 4: the declarant's override (mention 73000), as pure rules.

Domain notes: the declarant may put the mention 73000 on a goods item to let its goods go
under control when the single window refuses or cannot answer; it is audited and watched.
What it may cover is data (the routing table); a war-material refusal cannot be
overridden.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gun_contract.model.decision import Decision, DocumentResult
from gun_contract.model.declaration import AdditionalInformation, Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.decide import decide
from gun_hub.domain.override import (
    OVERRIDE_APPLIED,
    OVERRIDE_NOT_ACCEPTED,
    audit_body,
    overriding_items,
    review_override,
)
from gun_hub.domain.routing import RoutingTable, RoutingTableError, build_routing_table
from tests.builders import declaration, goods_item

AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def result(
    verdict: Verdict,
    item: int = 1,
    authority: str | None = "dgal",
    code: str = "N853",
    partner_code: str | None = None,
) -> DocumentResult:
    return DocumentResult(
        goods_item=item,
        code=code,
        reference=f"DOC-{item}",
        authority=authority,
        verdict=verdict,
        partner_code=partner_code,
    )


def decided(
    routing: RoutingTable,
    results: list[DocumentResult],
    items: tuple[int, ...] = (1,),
    stage: Stage = Stage.LODGED,
) -> Decision:
    return decide(
        reference="26FR000690I0000012",
        version=1,
        stage=stage,
        results=results,
        decided_at=AT,
        override=review_override(stage, results, items, routing),
    )


def test_an_override_covering_a_dgal_refusal_gives_a_documentary_control_naming_it(
    routing_table: RoutingTable,
) -> None:
    decision = decided(routing_table, [result(Verdict.QUANTITY_INSUFFICIENT, partner_code="05")])
    assert decision.outcome is Outcome.CONTROL_DOCUMENTARY
    assert [r.code for r in decision.reasons] == ["QUANTITY_INSUFFICIENT", OVERRIDE_APPLIED]
    assert "73000" in decision.reasons[1].text
    assert "DOC-1" in decision.reasons[1].text


@pytest.mark.parametrize(
    "verdict",
    [
        Verdict.NOT_FOUND,
        Verdict.INVALID_STATUS,
        Verdict.ALREADY_USED,
        Verdict.QUANTITY_INSUFFICIENT,
        Verdict.MISMATCH,
    ],
)
def test_an_override_never_releases_a_refused_document(
    routing_table: RoutingTable, verdict: Verdict
) -> None:
    decision = decided(routing_table, [result(verdict), result(Verdict.VALID, 2)], items=(1,))
    assert decision.outcome is Outcome.CONTROL_DOCUMENTARY


def test_a_war_material_refusal_is_not_covered_and_still_refuses(
    routing_table: RoutingTable,
) -> None:
    refused = result(Verdict.NOT_FOUND, authority="dga", code="LEMG")
    decision = decided(routing_table, [refused])
    assert decision.outcome is Outcome.REFUSE
    assert [r.code for r in decision.reasons] == ["NOT_FOUND", OVERRIDE_NOT_ACCEPTED]


def test_one_refusal_the_override_cannot_cover_refuses_the_whole_declaration(
    routing_table: RoutingTable,
) -> None:
    covered = result(Verdict.QUANTITY_INSUFFICIENT, 1)
    war_material = result(Verdict.INVALID_STATUS, 2, authority="dga", code="LEMG")
    decision = decided(routing_table, [covered, war_material], items=(1, 2))
    assert decision.outcome is Outcome.REFUSE
    assert OVERRIDE_APPLIED in [r.code for r in decision.reasons]
    assert OVERRIDE_NOT_ACCEPTED in [r.code for r in decision.reasons]


def test_an_override_on_valid_documents_changes_nothing(routing_table: RoutingTable) -> None:
    with_mention = decided(routing_table, [result(Verdict.VALID)], items=(1,))
    without = decided(routing_table, [result(Verdict.VALID)], items=())
    assert with_mention == without
    assert with_mention.outcome is Outcome.RELEASE
    assert review_override(Stage.LODGED, [result(Verdict.VALID)], (1,), routing_table).applied is (
        False
    )


def test_an_override_covers_only_the_items_that_carry_it(routing_table: RoutingTable) -> None:
    decision = decided(
        routing_table,
        [result(Verdict.VALID, 1), result(Verdict.NOT_FOUND, 2)],
        items=(1,),
    )
    assert decision.outcome is Outcome.REFUSE
    assert OVERRIDE_APPLIED not in [r.code for r in decision.reasons]


def test_when_the_single_window_cannot_answer_the_override_is_named_beside_degraded_mode(
    routing_table: RoutingTable,
) -> None:
    decision = decided(routing_table, [result(Verdict.UNAVAILABLE, authority="cites")])
    assert decision.outcome is Outcome.CONTROL_DOCUMENTARY
    assert [r.code for r in decision.reasons] == ["DEGRADED_MODE", "UNAVAILABLE", OVERRIDE_APPLIED]


def test_an_unrouted_document_is_degraded_mode_and_no_override_covers_it(
    routing_table: RoutingTable,
) -> None:
    decision = decided(routing_table, [result(Verdict.UNROUTED, authority=None, code="X999")])
    assert decision.outcome is Outcome.CONTROL_DOCUMENTARY
    assert OVERRIDE_APPLIED not in [r.code for r in decision.reasons]


@pytest.mark.parametrize(
    ("stage", "outcome"),
    [
        (Stage.PRELODGED, Outcome.ADVICE),
        (Stage.CANCELLED, Outcome.CANCELLED),
        (Stage.RELEASED_AFTER_CONTROL, Outcome.RELEASE),
    ],
)
def test_the_override_acts_on_a_lodged_declaration_only(
    routing_table: RoutingTable, stage: Stage, outcome: Outcome
) -> None:
    decision = decided(routing_table, [result(Verdict.NOT_FOUND)], stage=stage)
    assert decision.outcome is outcome
    assert OVERRIDE_APPLIED not in [r.code for r in decision.reasons]


def test_what_an_override_covers_is_read_from_the_routing_table() -> None:
    table = build_routing_table(
        {
            "authorities": {
                "dgal": {
                    "name": "DGAL",
                    "codes": ["N853"],
                    "override_covers": ["QUANTITY_INSUFFICIENT"],
                }
            }
        }
    )
    assert table.override_covers("dgal", Verdict.QUANTITY_INSUFFICIENT)
    assert not table.override_covers("dgal", Verdict.NOT_FOUND)
    assert not table.override_covers(None, Verdict.UNROUTED)
    uncovered = decided(table, [result(Verdict.NOT_FOUND)])
    assert uncovered.outcome is Outcome.REFUSE


def test_an_authority_without_override_covers_lets_it_cover_nothing() -> None:
    table = build_routing_table({"authorities": {"dgal": {"name": "DGAL", "codes": ["N853"]}}})
    assert not any(table.override_covers("dgal", verdict) for verdict in Verdict)


@pytest.mark.parametrize("verdict", ["VALID", "EXEMPT", "UNROUTED", "PERHAPS"])
def test_an_override_may_not_be_configured_to_cover_anything_but_a_refusal_or_no_answer(
    verdict: str,
) -> None:
    with pytest.raises(RoutingTableError, match="override_covers"):
        build_routing_table(
            {
                "authorities": {
                    "dgal": {"name": "DGAL", "codes": ["N853"], "override_covers": [verdict]}
                }
            }
        )


def test_the_shipped_routing_table_never_lets_a_war_material_refusal_be_overridden(
    routing_table: RoutingTable,
) -> None:
    assert not any(
        routing_table.override_covers("dga", verdict) for verdict in Verdict if verdict.is_refusal
    )
    assert all(
        routing_table.override_covers("dgal", verdict) for verdict in Verdict if verdict.is_refusal
    )


def test_the_items_carrying_the_mention_are_read_from_the_declaration() -> None:
    mention = AdditionalInformation(code="73000", text="Certificate presented at the office")
    other = AdditionalInformation(code="00100")
    items = (
        goods_item(1).model_copy(update={"additional_information": (other,)}),
        goods_item(2).model_copy(update={"additional_information": (other, mention)}),
    )
    assert overriding_items(declaration(items=items)) == [2]


def test_the_audit_record_names_documents_by_code_and_verdict_never_by_reference(
    routing_table: RoutingTable,
) -> None:
    results = [
        result(Verdict.QUANTITY_INSUFFICIENT, 1),
        result(Verdict.NOT_FOUND, 2, authority="dga", code="LEMG"),
    ]
    review = review_override(Stage.LODGED, results, (1, 2), routing_table)
    body = audit_body("26FR000690I0000012", 1, "FR12345678901234", review)
    assert body["kind"] == "OVERRIDE"
    assert body["declarant"] == "FR12345678901234"
    assert body["covered"] == [
        {"goods_item": 1, "code": "N853", "verdict": "QUANTITY_INSUFFICIENT", "authority": "dgal"}
    ]
    assert body["declined"] == [
        {"goods_item": 2, "code": "LEMG", "verdict": "NOT_FOUND", "authority": "dga"}
    ]
    assert "DOC-" not in repr(body)
