"""A version whose own operation is a follow-up (RELEASED_AFTER_CONTROL: the write-off of
what the control kept; CANCELLED: the deletion; INVALIDATED: the give-back) reports the
partner's answer as any follow-up does: its status (WRITTEN_OFF, RESERVATION_DELETED,
GIVEN_BACK, FOLLOW_UP_PENDING...) and, for a write-off, the fact the statistics count.

Found by review, stop 36 (D6, side finding): answered before the deadline, such an answer
was taken in as the awaited answer only (ANSWER_RECEIVED, DECIDED): no WRITTEN_OFF and no
write-off fact, so ``/stats/written-off`` and the trader's ``quantities`` missed every
write-off after a control.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.facts import FACT, WriteOffFact
from gun_hub.ops.view import FeedRecord, FeedTopics, OpsView
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import REF, at

DOC = "CHEDP.FR.2026.0001234"


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


@pytest.fixture
def view(hub: Hub, tmp_path: Path) -> OpsView:
    return view_for(hub, tmp_path)


def view_for(hub: Hub, tmp_path: Path) -> OpsView:
    """An operations view in ``tmp_path`` reading ``hub``'s topics."""
    return OpsView(
        tmp_path / "view.sqlite3",
        FeedTopics(
            status=hub.topics.status,
            facts=hub.topics.facts,
            dlq=hub.topics.dlq,
            health=hub.topics.ops_health,
        ),
    )


class Feeder:
    """Feeds what the hub emitted on the status and facts topics to the view."""

    def __init__(self, hub: Hub, view: OpsView) -> None:
        self.hub, self.view = hub, view
        self.offsets: dict[str, int] = {}

    def __call__(self, *outboxes: Effects) -> None:
        records = []
        for outbox in outboxes:
            for topic in (self.hub.topics.status, self.hub.topics.facts):
                for record in outbox.to(topic):
                    offset = self.offsets.get(topic, 0)
                    self.offsets[topic] = offset + 1
                    records.append(FeedRecord(topic, 0, offset, 0, record.value, []))
        self.view.apply(records)


def xml(version: int, stage: Stage = Stage.LODGED, quantity: str = "150") -> bytes:
    return declaration_xml(
        version=version,
        stage=stage,
        items=(goods_item(1, (document("N853", DOC, 1, quantity, "KGM"),)),),
    )


def write_off_facts(hub: Hub, outbox: Effects) -> list[WriteOffFact]:
    facts = [FACT.validate_json(r.value) for r in outbox.to(hub.topics.facts)]
    return [f for f in facts if isinstance(f, WriteOffFact)]


def held_for_control(hub: Hub) -> None:
    """Version 1 lodged; DGAL stays silent: a documentary control keeps the reservation."""
    hub.intake.handle(xml(1), at(0))
    hub.now += timedelta(seconds=31)
    ticked = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 0))
    assert hub.decisions(ticked) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]


def test_a_write_off_after_a_control_answered_in_time_is_written_off_and_counted(
    hub: Hub, view: OpsView
) -> None:
    """v1 held for a control; v2 RELEASED_AFTER_CONTROL (150 KGM): the partner confirms
    the write-off before the deadline. The history says WRITTEN_OFF before the decision,
    a write-off fact carries v2's quantity, and the statistics and the trader's
    ``quantities`` show it, once even when the answer is read again."""
    feed = Feeder(hub, view)
    held_for_control(hub)
    after = hub.intake.handle(xml(2, Stage.RELEASED_AFTER_CONTROL), at(1))
    decided = hub.answer(after, "dgal", Verdict.VALID)
    assert hub.decisions(decided) == [(REF, 2, Outcome.RELEASE)]
    assert hub.status_kinds(decided) == [
        StatusKind.ANSWER_RECEIVED,
        StatusKind.WRITTEN_OFF,
        StatusKind.DECIDED,
    ]
    [fact] = write_off_facts(hub, decided)
    assert (fact.version, fact.authority) == (2, "dgal")
    assert [(d.reference, d.line, d.quantity, d.unit) for d in fact.documents] == [
        (DOC, 1, Decimal(150), "KGM")
    ]
    feed(after, decided)
    again = hub.answer(after, "dgal", Verdict.VALID)  # the same answer read again
    feed(again)
    [line] = view.written_off(DOC)
    assert (line["quantity"], line["unit"], line["declarations"]) == ("150", "KGM", 1)
    state = view.declaration(REF)
    assert state is not None
    assert state["outcome"] == "RELEASE"
    assert state["quantities"] == ["WRITTEN_OFF"]


def test_a_write_off_after_a_control_the_partner_could_not_take_is_pending_then_counted_once(
    hub: Hub, view: OpsView
) -> None:
    """Answered UNAVAILABLE in time: RELEASE anyway (the goods left), FOLLOW_UP_PENDING and
    nothing counted; the adapter's replay then writes it off, counted once."""
    feed = Feeder(hub, view)
    held_for_control(hub)
    after = hub.intake.handle(xml(2, Stage.RELEASED_AFTER_CONTROL), at(1))
    decided = hub.answer(after, "dgal", Verdict.UNAVAILABLE)
    assert hub.decisions(decided) == [(REF, 2, Outcome.RELEASE)]
    assert StatusKind.FOLLOW_UP_PENDING in hub.status_kinds(decided)
    assert write_off_facts(hub, decided) == []
    replayed = hub.answer(after, "dgal", Verdict.VALID)
    assert hub.status_kinds(replayed) == [StatusKind.WRITTEN_OFF]
    feed(after, decided, replayed)
    [line] = view.written_off(DOC)
    assert (line["quantity"], line["declarations"]) == ("150", 1)


def test_a_deletion_after_a_control_answered_in_time_is_reported_deleted(hub: Hub) -> None:
    """The office refused the goods (CANCELLED): the deletion's answer says so."""
    held_for_control(hub)
    cancelled = hub.intake.handle(xml(2, Stage.CANCELLED), at(1))
    decided = hub.answer(cancelled, "dgal", Verdict.VALID)
    assert hub.decisions(decided) == [(REF, 2, Outcome.CANCELLED)]
    assert hub.status_kinds(decided) == [
        StatusKind.ANSWER_RECEIVED,
        StatusKind.RESERVATION_DELETED,
        StatusKind.DECIDED,
    ]
    assert write_off_facts(hub, decided) == []


def test_a_give_back_after_an_invalidation_answered_in_time_is_reported_given_back(
    hub: Hub,
) -> None:
    first = hub.intake.handle(xml(1), at(0))
    hub.answer(first, "dgal", Verdict.VALID)  # released, written off
    invalidated = hub.intake.handle(xml(2, Stage.INVALIDATED), at(1))
    decided = hub.answer(invalidated, "dgal", Verdict.VALID)
    assert hub.decisions(decided) == [(REF, 2, Outcome.CANCELLED)]
    assert hub.status_kinds(decided) == [
        StatusKind.ANSWER_RECEIVED,
        StatusKind.GIVEN_BACK,
        StatusKind.DECIDED,
    ]


def test_a_lodged_versions_reservation_answer_is_no_follow_up(hub: Hub) -> None:
    """The reservation of a lodged version is not a follow-up: nothing more is said."""
    sent = hub.intake.handle(xml(1), at(0))
    decided = hub.answer(sent, "dgal", Verdict.VALID)
    assert StatusKind.WRITTEN_OFF not in hub.status_kinds(decided)
    assert hub.status_kinds(decided)[:2] == [StatusKind.ANSWER_RECEIVED, StatusKind.DECIDED]
