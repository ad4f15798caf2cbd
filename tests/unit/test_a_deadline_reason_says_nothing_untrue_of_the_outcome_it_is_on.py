"""What the trader reads of a ``DEADLINE`` reason is true of every outcome it is on.

An enforced authority silent past the deadline (pipeline/deadlines.py) gives the decision a
``DEADLINE`` reason whatever its outcome: a documentary control (with ``DEGRADED_MODE``), a
refusal when another authority refused (a refusal is certain, silence is not), a
pre-lodged declaration's advice, a cancellation whose deletion went unanswered. Its text
(reasons.py) said on all of them "the documents are checked at the customs office
instead" ("les documents sont contrôlés au bureau de douane"): true of the control only.
A refused declaration is not checked at the office (it is corrected and lodged again), a
pre-lodged one is not lodged yet, a cancelled one is not checked at all. The review of
degraded mode, advice, made ``UNAVAILABLE``'s text true of every outcome ("the other
reasons say whether the goods are held") and left ``DEADLINE``'s beside it (a review of
stop 58, second round).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.reasons import explain
from gun_hub.domain.routing import RoutingTable
from gun_hub.web.redaction import trader_status
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_pipeline import SOURCE, Hub
from tests.unit.test_the_deadline_reasons_text_is_true_of_every_outcome_it_is_given_on import tick

REF = "26FR000690I0000012"
ITEM = goods_item(1, (document("N853", "CHEDP-1"), document("C638", "CITES-1")))
# What only a documentary control makes true, in either language.
HELD = ("checked at the customs office", "documentary control", "go to")
HELD_FR = ("contrôlés au bureau", "contrôle documentaire", "passent en")


def read_by_the_trader(hub: Hub, outboxes: list[Effects]) -> dict[str, Any]:
    history = [s.model_dump(mode="json") for o in outboxes for s in hub.statuses(o)]
    return trader_status(REF, history, frozenset({"dga"}))


def refused_beside_a_silence(hub: Hub) -> list[Effects]:
    """DGAL refuses its CHED; CITES (enforced) stays silent."""
    outboxes = [hub.intake.handle(declaration_xml(items=(ITEM,)), SOURCE)]
    outboxes.append(hub.answer(outboxes[0], "dgal", Verdict.QUANTITY_INSUFFICIENT))
    outboxes.append(tick(hub, 1))
    return outboxes


def advised_over_a_silence(hub: Hub) -> list[Effects]:
    """A pre-lodged declaration; CITES stays silent."""
    lodged = declaration_xml(items=(ITEM,), stage=Stage.PRELODGED)
    outboxes = [hub.intake.handle(lodged, SOURCE)]
    outboxes.append(hub.answer(outboxes[0], "dgal", Verdict.VALID))
    outboxes.append(tick(hub, 1))
    return outboxes


def cancelled_unanswered(hub: Hub) -> list[Effects]:
    """Released on both answers; version 2 cancels it, and neither partner answers the
    deletion."""
    outboxes = [hub.intake.handle(declaration_xml(items=(ITEM,)), SOURCE)]
    outboxes.append(hub.answer(outboxes[0], "dgal", Verdict.VALID))
    outboxes.append(hub.answer(outboxes[0], "cites", Verdict.VALID))
    cancelled = declaration_xml(items=(ITEM,), version=2, stage=Stage.CANCELLED)
    outboxes.append(hub.intake.handle(cancelled, SourcePosition(SOURCE.topic, 0, 5)))
    outboxes.append(tick(hub, 2))
    return outboxes


@pytest.mark.parametrize(
    ("decided", "outcome"),
    [
        (refused_beside_a_silence, Outcome.REFUSE),
        (advised_over_a_silence, Outcome.ADVICE),
        (cancelled_unanswered, Outcome.CANCELLED),
    ],
)
def test_a_deadline_reason_says_nothing_untrue_of_the_outcome_it_is_on(
    routing_table: RoutingTable, keys_dir: Path, decided: Any, outcome: Outcome
) -> None:
    hub = Hub(routing_table, keys_dir)
    seen = read_by_the_trader(hub, decided(hub))
    assert seen["outcome"] == outcome.value
    [deadline] = [r for r in seen["reasons"] if r["code"] == "DEADLINE"]
    assert not any(words in deadline["en"] for words in HELD), deadline["en"]
    assert not any(words in deadline["fr"] for words in HELD_FR), deadline["fr"]


def test_the_control_a_deadline_makes_still_tells_the_trader_to_present_the_documents(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """Both silent: the documentary control's reasons still say what to do at the office
    (DEGRADED_MODE), in either language."""
    hub = Hub(routing_table, keys_dir)
    outboxes = [hub.intake.handle(declaration_xml(items=(ITEM,)), SOURCE)]
    outboxes.append(tick(hub, 1))
    seen = read_by_the_trader(hub, outboxes)
    assert seen["outcome"] == Outcome.CONTROL_DOCUMENTARY.value
    codes = [r["code"] for r in seen["reasons"]]
    assert codes[:2] == ["DEGRADED_MODE", "DEADLINE"]
    assert "documentary control" in explain("DEGRADED_MODE").en
    assert "contrôle documentaire" in explain("DEGRADED_MODE").fr
