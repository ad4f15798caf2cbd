"""A new version restates the documents it quotes; the reservations an earlier version
made of documents it no longer quotes, or at an authority it no longer asks to reserve,
are deleted, and that deletion is never mistaken for the new version's own answer
(lifecycle.py, docs/decisions.md). Found by review in stop 36 (D1, D4, D8)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.rollout import RolloutMode, RolloutSetting
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from tests.builders import answer_to, declaration_xml, document, goods_item
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import REF, at, requests

A = "CHEDP.FR.2026.000000A"
B = "CHEDP.FR.2026.000000B"


def quoting(version: int, reference: str, stage: Stage = Stage.LODGED) -> bytes:
    return declaration_xml(
        version=version, stage=stage, items=(goods_item(1, (document("N853", reference),)),)
    )


def documents_of(hub: Hub, outbox: object) -> list[tuple[Operation, int, list[str]]]:
    return [
        (r.operation, r.version, [d.reference for item in r.items for d in item.documents])
        for r in requests(hub, outbox)  # type: ignore[arg-type]
    ]


# -- D1: the deletion's answer is not the new version's answer ---------------------------


def test_an_amendment_replacing_a_document_at_the_same_authority_is_decided_on_its_own_answer(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """v1 quotes CHED A, v2 CHED B instead, both at DGAL: v2 sends DELETE(A) then
    RESERVE(B) to DGAL, answered in that order. The DELETE's answer is a follow-up; v2
    is released on the RESERVE's (before: the DELETE's answer was taken as DGAL's, B
    recorded UNAVAILABLE and v2 sent to control in degraded mode, the partner up)."""
    hub = Hub(routing_table, keys_dir)
    hub.intake.handle(quoting(1, A), at(0))
    delete, reserve = requests(hub, hub.intake.handle(quoting(2, B), at(1)))
    assert (delete.operation, reserve.operation) == (Operation.DELETE, Operation.RESERVE)

    after_delete = hub.respond(answer_to(delete, Verdict.VALID))
    after_reserve = hub.respond(answer_to(reserve, Verdict.VALID))

    assert hub.decisions(after_delete) == []
    assert StatusKind.RESERVATION_DELETED in hub.status_kinds(after_delete)
    assert hub.decisions(after_reserve) == [(REF, 2, Outcome.RELEASE)]


def test_an_amendment_the_partner_refuses_is_refused_whatever_its_deletion_answered(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    hub.intake.handle(quoting(1, A), at(0))
    delete, reserve = requests(hub, hub.intake.handle(quoting(2, B), at(1)))

    hub.respond(answer_to(delete, Verdict.VALID))
    refused = hub.respond(answer_to(reserve, Verdict.QUANTITY_INSUFFICIENT))

    assert hub.decisions(refused) == [(REF, 2, Outcome.REFUSE)]


def test_a_cancellation_waits_for_its_own_deletion_not_for_that_of_a_document_it_dropped(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """A cancellation quoting B only, after a version that held A and B: both DELETEs go
    to DGAL, for different documents. The one of A (dropped) decides nothing."""
    hub = Hub(routing_table, keys_dir)
    both = declaration_xml(
        version=1, items=(goods_item(1, (document("N853", A), document("N853", B))),)
    )
    hub.intake.handle(both, at(0))
    sent = requests(hub, hub.intake.handle(quoting(2, B, Stage.CANCELLED), at(1)))
    by_documents = {tuple(d.reference for i in r.items for d in i.documents): r for r in sent}
    assert set(by_documents) == {(A,), (B,)}
    assert {r.operation for r in sent} == {Operation.DELETE}

    dropped = hub.respond(answer_to(by_documents[(A,)], Verdict.VALID))
    own = hub.respond(answer_to(by_documents[(B,)], Verdict.VALID))

    assert hub.decisions(dropped) == []
    assert hub.decisions(own) == [(REF, 2, Outcome.CANCELLED)]


# -- D8: a redelivered version sends its deletions again ---------------------------------


def test_a_redelivered_amendment_sends_the_deletion_of_what_it_dropped_again(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """The worker died after case v2 reached the changelog and before its requests
    reached the broker: the record read again sends DELETE(A) again, not only
    RESERVE(B) (before: v1's reservation on A was never deleted)."""
    hub = Hub(routing_table, keys_dir)
    hub.intake.handle(quoting(1, A), at(0))
    hub.broker_up = False
    hub.intake.handle(quoting(2, B), at(1))  # its records never reach the broker
    hub.broker_up = True

    again = hub.intake.handle(quoting(2, B), at(1))  # the same record, read again

    assert (Operation.DELETE, 2, [A]) in documents_of(hub, again)
    assert (Operation.RESERVE, 2, [B]) in documents_of(hub, again)


def test_a_redelivered_cancellation_quoting_nothing_sends_its_deletions_again(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """A cancellation quoting no document is decided at once; read again after the
    crash, its decision is announced again and the deletion of what v1 held is sent
    again (before: the decision only)."""
    hub = Hub(routing_table, keys_dir)
    hub.intake.handle(quoting(1, A), at(0))
    nothing = declaration_xml(version=2, stage=Stage.CANCELLED, items=(goods_item(1, ()),))
    hub.broker_up = False
    hub.intake.handle(nothing, at(1))
    hub.broker_up = True

    again = hub.intake.handle(nothing, at(1))

    assert documents_of(hub, again) == [(Operation.DELETE, 2, [A])]


# -- D4: an authority switched off or to shadow between versions -------------------------


@pytest.mark.parametrize("mode", [RolloutMode.OFF, RolloutMode.SHADOW])
def test_an_authority_no_longer_enforced_gets_the_reservations_of_earlier_versions_deleted(
    routing_table: RoutingTable, keys_dir: Path, mode: RolloutMode
) -> None:
    """v1 reserved A at DGAL; an officer then set DGAL off (or to shadow: a pilot
    rolled back); v2 still quotes A. v2 does not reserve at DGAL, so A's reservation is
    deleted under v2 (before: nothing was sent, v2 held nothing, and neither a
    cancellation nor a release after control followed A up: stranded for good)."""
    hub = Hub(routing_table, keys_dir)
    hub.intake.handle(quoting(1, A), at(0))
    hub.rollout.apply(
        RolloutSetting(
            authority="dgal", mode=mode, officer="o", reason="pilot rolled back",
            at=datetime.now(UTC),
        )
    )  # fmt: skip

    sent = documents_of(hub, hub.intake.handle(quoting(2, A), at(1)))

    assert (Operation.DELETE, 2, [A]) in sent
    expected_others = [(Operation.CHECK, 2, [A])] if mode is RolloutMode.SHADOW else []
    assert [s for s in sent if s[0] is not Operation.DELETE] == expected_others
