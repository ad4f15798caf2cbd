"""What DGA answers a cancellation or a release after a control reads to the trader as
nothing: the same declaration without the licence reads the same.

docs/security.md ("Who may see what"): the trader reads a decision's codes "less the
codes only it gave"; "its enforced refusal is kept: it refuses the goods". A version
whose stage is a follow-up (CANCELLED: the reservations deleted; RELEASED_AFTER_CONTROL:
what the control kept written off) asks each authority that stage's operation, and the
verdicts of its answers are the decision's reasons (decide.py: the enforced ones). The
outcome is CANCELLED or RELEASE whatever they say: DGA's deletion or write-off refused
refuses no goods. Its follow-ups (FOLLOW_UP_FAILED, POST_RELEASE_ALERT) are left out for
the trader; its answer to the stage's own operation was read whole, as the decision's
codes (a review of stop 58, third round): a write-off DGA refused after the office
released the goods read ``QUANTITY_INSUFFICIENT`` on the release, where the licence's
write-off refused after a plain release raises an alert the trader never reads.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.declaration import DocumentRef, Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.web.redaction import trader_status
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_pipeline import SOURCE, Hub

CONFIDENTIAL = frozenset({"dga"})
REFERENCE = "26FR000690I0000012"
CHED = document("N853", "CHEDP.FR.2026.0001234", 1, "10")
LICENCE = document("LEMG", "LEMG-FR-2026-0042", 1, "5", "NAR")
LATER = SourcePosition(SOURCE.topic, SOURCE.partition, SOURCE.offset + 1)


def trader_reads(
    routing_table: RoutingTable,
    keys_dir: Path,
    licence: tuple[DocumentRef, ...],
    stage: Stage,
    dgal: Verdict,
    dga: Verdict,
) -> tuple[list[Outcome], dict[str, Any]]:
    """Version 1 held for a documentary control (DGAL silent, DGA's licence valid), then
    version 2 at ``stage``: DGAL answers ``dgal``, DGA ``dga``. The outcomes decided and
    the trader's answer, without its times."""
    hub = Hub(routing_table, keys_dir)
    item = goods_item(1, (CHED, *licence), commodity_code="9301100000")
    lodged = hub.intake.handle(declaration_xml(items=(item,)), SOURCE)
    outboxes: list[Effects] = [lodged]
    if licence:
        outboxes.append(hub.answer(lodged, "dga", Verdict.VALID))
    hub.now += timedelta(seconds=31)
    outboxes.append(hub.deadlines.handle(REFERENCE, 1, SourcePosition(hub.topics.deadlines, 0, 1)))
    followed = hub.intake.handle(declaration_xml(version=2, stage=stage, items=(item,)), LATER)
    outboxes += [followed, hub.answer(followed, "dgal", dgal)]
    if licence:
        outboxes.append(hub.answer(followed, "dga", dga))
    outcomes = [outcome for o in outboxes for *_, outcome in hub.decisions(o)]
    history = [s.model_dump(mode="json") for o in outboxes for s in hub.statuses(o)]
    status = trader_status(REFERENCE, history, CONFIDENTIAL)
    events = [{k: v for k, v in e.items() if k != "at"} for e in status["history"]]
    return outcomes, {**{k: v for k, v in status.items() if k != "updated_at"}, "history": events}


def decided(status: dict[str, Any]) -> list[str]:
    return [e["detail"] for e in status["history"] if e["kind"] == StatusKind.DECIDED.value]


FOLLOW_UPS = {
    "cancelled": (Stage.CANCELLED, Outcome.CANCELLED),
    "released-after-control": (Stage.RELEASED_AFTER_CONTROL, Outcome.RELEASE),
}
ANSWERS = {
    # DGA refuses the deletion or the write-off; DGAL carries it out.
    "dga-not-found": (Verdict.VALID, Verdict.NOT_FOUND),
    "dga-already-used": (Verdict.VALID, Verdict.ALREADY_USED),
    "dga-quantity-insufficient": (Verdict.VALID, Verdict.QUANTITY_INSUFFICIENT),
    "dga-invalid-status": (Verdict.VALID, Verdict.INVALID_STATUS),
    # DGAL refuses it too: its code is the trader's, once.
    "both-not-found": (Verdict.NOT_FOUND, Verdict.NOT_FOUND),
}


@pytest.mark.parametrize("answers", ANSWERS.values(), ids=ANSWERS)
@pytest.mark.parametrize("follow_up", FOLLOW_UPS.values(), ids=FOLLOW_UPS)
def test_what_dga_answers_a_cancellation_or_a_release_after_control_reads_to_the_trader_as_none(
    routing_table: RoutingTable,
    keys_dir: Path,
    follow_up: tuple[Stage, Outcome],
    answers: tuple[Verdict, Verdict],
) -> None:
    stage, outcome = follow_up
    dgal, dga = answers
    outcomes, seen = trader_reads(routing_table, keys_dir, (LICENCE,), stage, dgal, dga)
    assert outcomes == [Outcome.CONTROL_DOCUMENTARY, outcome]
    _, without = trader_reads(routing_table, keys_dir, (), stage, dgal, dga)
    assert decided(seen) == decided(without)
    assert seen == without
    # DGAL's own refusal of the operation stays the trader's.
    assert (dgal.value in decided(seen)[-1]) is (dgal is not Verdict.VALID)
