"""A follow-up whose answer is partly STALE_VERSION (a newer version of the declaration
took some of its documents over at the partner) and partly applied is reported for what
it did on each part: RESERVATION_DELETED / WRITTEN_OFF for the documents it was applied
to, FOLLOW_UP_SUPERSEDED for those a newer version took; never FOLLOW_UP_FAILED, since
nothing failed, and never a post-release alert for what a newer version took.

Found by review, stop 36 (D10): a DELETE of v1 on {A, B}, replayed after v2's RESERVE took
A, answered STALE_VERSION on A and 01 on B, was reported FOLLOW_UP_FAILED.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gun_contract.effects import Effects
from gun_contract.model.exchange import AuthorityRequest, AuthorityResponse, DocumentAnswer
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusEvent, StatusKind
from gun_hub.ops.facts import FACT, WriteOffFact
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import REF, at, requests

A = "CHEDP.FR.2026.000000A"
B = "CHEDP.FR.2026.000000B"
LICENCE_A = "LEMG.2026.A"
LICENCE_B = "LEMG.2026.B"
STALE = "STALE_VERSION"


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


def quoting(version: int, code: str, *references: str) -> bytes:
    return declaration_xml(
        version=version,
        items=(goods_item(1, tuple(document(code, r, 1, "10", "KGM") for r in references)),),
    )


def mixed_answer(hub: Hub, request: AuthorityRequest, stale: str, applied: str) -> Effects:
    """The partner's answer: ``stale`` refused STALE_VERSION, ``applied`` done (01)."""
    answers = tuple(
        DocumentAnswer(
            goods_item=item.number,
            code=d.code,
            reference=d.reference,
            verdict=Verdict.MISMATCH if d.reference == stale else Verdict.VALID,
            partner_code=STALE if d.reference == stale else "01",
        )
        for item in request.items
        for d in item.documents
    )
    assert {a.reference for a in answers} == {stale, applied}
    return hub.respond(
        AuthorityResponse(
            request_id=request.request_id,
            authority=request.authority,
            operation=request.operation,
            reference=request.reference,
            version=request.version,
            answers=answers,
            answered_at=hub.now,
        )
    )


def by_kind(hub: Hub, outbox: Effects) -> dict[StatusKind, StatusEvent]:
    statuses = hub.statuses(outbox)
    assert len({s.kind for s in statuses}) == len(statuses), statuses
    return {s.kind: s for s in statuses}


def test_a_deletion_stale_on_one_document_and_done_on_another_says_both(hub: Hub) -> None:
    """v1 quotes A and B and is refused: DELETE v1 of both. v2 quotes A again, and the
    partner takes v2's RESERVE of A before v1's deletion (replayed after an outage)."""
    first = hub.intake.handle(quoting(1, "N853", A, B), at(0))
    refused = hub.answer(first, "dgal", Verdict.QUANTITY_INSUFFICIENT)
    assert hub.decisions(refused) == [(REF, 1, Outcome.REFUSE)]
    [deletion] = requests(hub, refused)
    hub.intake.handle(quoting(2, "N853", A), at(1))
    reported = by_kind(hub, mixed_answer(hub, deletion, stale=A, applied=B))
    assert set(reported) == {StatusKind.RESERVATION_DELETED, StatusKind.FOLLOW_UP_SUPERSEDED}
    deleted, superseded = (
        reported[StatusKind.RESERVATION_DELETED],
        reported[StatusKind.FOLLOW_UP_SUPERSEDED],
    )
    assert (deleted.version, deleted.authority) == (1, "dgal")
    assert B in deleted.detail
    assert A not in deleted.detail
    assert A in superseded.detail
    assert B not in superseded.detail


def test_a_write_off_stale_on_one_document_counts_only_what_it_wrote_off(hub: Hub) -> None:
    first = hub.intake.handle(quoting(1, "N853", A, B), at(0))
    released = hub.answer(first, "dgal", Verdict.VALID)
    [write_off] = requests(hub, released)
    out = mixed_answer(hub, write_off, stale=A, applied=B)
    assert set(by_kind(hub, out)) == {StatusKind.WRITTEN_OFF, StatusKind.FOLLOW_UP_SUPERSEDED}
    facts = [FACT.validate_json(r.value) for r in out.to(hub.topics.facts)]
    [fact] = [f for f in facts if isinstance(f, WriteOffFact)]
    assert [d.reference for d in fact.documents] == [B]


def test_a_war_material_write_off_partly_superseded_raises_no_alert(hub: Hub) -> None:
    """A licence a newer version took is no refusal of what left: no post-release alert;
    the status names verdicts only, never a licence."""
    first = hub.intake.handle(quoting(1, "LEMG", LICENCE_A, LICENCE_B), at(0))
    released = hub.answer(first, "dga", Verdict.VALID)
    [write_off] = requests(hub, released, "dga")
    out = mixed_answer(hub, write_off, stale=LICENCE_A, applied=LICENCE_B)
    reported = by_kind(hub, out)
    assert set(reported) == {StatusKind.WRITTEN_OFF, StatusKind.FOLLOW_UP_SUPERSEDED}
    assert all("LEMG." not in s.detail for s in reported.values())


def test_a_follow_up_all_applied_or_all_stale_says_it_once(hub: Hub) -> None:
    first = hub.intake.handle(quoting(1, "N853", A, B), at(0))
    released = hub.answer(first, "dgal", Verdict.VALID)
    [write_off] = requests(hub, released)
    assert hub.status_kinds(hub.answer(released, "dgal", Verdict.VALID)) == [StatusKind.WRITTEN_OFF]
    # The same write-off answered STALE_VERSION on every document (a replay after a
    # newer version took them all): superseded, once.
    stale = hub.respond(
        AuthorityResponse(
            request_id=write_off.request_id,
            authority="dgal",
            operation=write_off.operation,
            reference=REF,
            version=1,
            answers=tuple(
                DocumentAnswer(
                    goods_item=1,
                    code="N853",
                    reference=r,
                    verdict=Verdict.MISMATCH,
                    partner_code=STALE,
                )
                for r in (A, B)
            ),
            answered_at=hub.now,
        )
    )
    assert hub.status_kinds(stale) == [StatusKind.FOLLOW_UP_SUPERSEDED]
