"""A control kept only for a war-material licence, taken over by a later version read on
another partition, reads to the trader as a control that kept nothing.

Stop 56 made the events that exist only for what one authority holds name that authority
(``lifecycle.only_authority``): the overdue control (deadlines.py), a takeover's
follow-ups and give-backs (takeover.py ``_send``, ``_invalidated``), so that the trader's
redaction (web/redaction.py) leaves out one for DGA alone. One was left:
``Takeover._end_control`` writes ``TAKEN_OVER_BY_LATER_VERSION`` ("what the
CONTROL_DOCUMENTARY kept is followed up by version 2, read at ...") with no authority, and
only when the control keeps something (``kept_for_control``). With DGAL in its shadow pilot
at the office (its CHED checked, nothing reserved) and DGA enforced, the one thing kept is
the licence: the same declaration without the licence holds nothing, its case is not
taken over, and the event never exists. The trader reads that its declaration had a
reservation at an authority that is not DGAL: DGA took part (docs/security.md, "Who may
see what": "what remains must read exactly as it would had the confidential authority
never taken part").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.declaration import DocumentRef, Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.rollout import RolloutMode, RolloutSetting
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.pipeline.takeover import Takeover
from gun_hub.web.redaction import trader_history
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_pipeline import NOW, SOURCE, Hub

CONFIDENTIAL = frozenset({"dga"})
CHED = document("N853", "CHEDP.FR.2026.0001234", 1, "10")
LICENCE = document("LEMG", "LEMG-FR-2026-0042", 1, "5", "NAR")


def history(
    routing_table: RoutingTable, keys_dir: Path, licence: tuple[DocumentRef, ...]
) -> list[dict[str, Any]]:
    """A CHED (DGAL in shadow at the office) and maybe a licence (DGA enforced, answering
    VALID), decided for a documentary control on partition 0; then the office releases
    the goods, and the clearance system's RELEASED_AFTER_CONTROL version 2, quoting the
    same documents, lands on partition 1 (contract section 2: the producer chooses)."""
    pilot = {"officer": "amelie", "reason": "pilot", "at": NOW}
    item = goods_item(1, (CHED, *licence), commodity_code="9301100000")
    hub = Hub(routing_table, keys_dir)
    hub.rollout.apply(RolloutSetting(authority="dgal", mode=RolloutMode.SHADOW, **pilot))
    outboxes: list[Effects] = [hub.intake.handle(declaration_xml(items=(item,)), SOURCE)]
    outboxes.append(hub.answer(outboxes[0], "dgal", Verdict.VALID))
    if licence:
        outboxes.append(hub.answer(outboxes[0], "dga", Verdict.VALID))
    decided = [d for o in outboxes for d in hub.decisions(o)]
    assert [outcome for *_, outcome in decided] == [Outcome.CONTROL_DOCUMENTARY]
    [(reference, _, _)] = decided

    other = Hub(routing_table, keys_dir)  # the worker of partition 1
    other.rollout.apply(RolloutSetting(authority="dgal", mode=RolloutMode.SHADOW, **pilot))
    released = declaration_xml(version=2, stage=Stage.RELEASED_AFTER_CONTROL, items=(item,))
    told = other.intake.handle(released, SourcePosition("gun.declarations", 1, 0))
    [notice] = [r.value for r in told.to(other.topics.deadlines) if r.partition == 0]
    assert notice is not None
    where = SourcePosition(hub.topics.deadlines, 0, 3, reference.encode())
    outboxes.append(Takeover(hub.context, hub.cases).handle(reference, notice, where))
    return [s.model_dump(mode="json") for o in outboxes for s in hub.statuses(o)]


def test_a_control_kept_for_the_licence_alone_and_taken_over_is_not_told_to_the_trader(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    with_licence = history(routing_table, keys_dir, (LICENCE,))
    without = history(routing_table, keys_dir, ())
    taken = StatusKind.TAKEN_OVER_BY_LATER_VERSION.value
    assert taken in {e["kind"] for e in with_licence}  # DGA's reservation was kept
    assert taken not in {e["kind"] for e in without}  # nothing kept, nothing taken over
    seen = trader_history(with_licence, CONFIDENTIAL)
    assert seen == trader_history(without, CONFIDENTIAL), (
        "the trader reads an event a declaration without the licence never has: "
        f"{[e for e in seen if e['kind'] == taken]}"
    )
