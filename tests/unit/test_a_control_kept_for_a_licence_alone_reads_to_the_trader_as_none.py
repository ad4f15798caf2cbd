"""A control kept only for a war-material licence's reservation reads to the trader as
one that kept nothing.

A lodged declaration decided for a control keeps what it reserved for the control's
result; once ``control_report_after_s`` passes with no result, the hub says so on
``gun.status``: ``CONTROL_RESULT_OVERDUE``, "reservations kept for a CONTROL_DOCUMENTARY
have had no result for N days" (deadlines.py ``_report_overdue_control``). The event names
no authority, so the trader's redaction (web/redaction.py) shows it as is; but it is
written only when something is kept (``lifecycle.kept_for_control``). When the one
reservation kept is DGA's (DGAL in its shadow pilot at the office, so its CHED is checked
and reserves nothing; DGA enforced), the trader reads an event that the same declaration
without the licence never gets: its licence was reserved at an authority, DGA took part
(docs/security.md, "Who may see what": "what remains must read exactly as it would had the
confidential authority never taken part"; threat "a trader learns who exports arms").
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.declaration import DocumentRef
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.rollout import RolloutMode, RolloutSetting
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
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
    VALID): decided for a documentary control, then a week with no control result."""
    hub = Hub(routing_table, keys_dir)
    pilot = {"officer": "amelie", "reason": "pilot", "at": NOW}
    hub.rollout.apply(RolloutSetting(authority="dgal", mode=RolloutMode.SHADOW, **pilot))
    item = goods_item(1, (CHED, *licence), commodity_code="9301100000")
    outboxes: list[Effects] = [hub.intake.handle(declaration_xml(items=(item,)), SOURCE)]
    outboxes.append(hub.answer(outboxes[0], "dgal", Verdict.VALID))
    if licence:
        outboxes.append(hub.answer(outboxes[0], "dga", Verdict.VALID))
    decided = [d for o in outboxes for d in hub.decisions(o)]
    assert [outcome for *_, outcome in decided] == [Outcome.CONTROL_DOCUMENTARY]
    hub.now += timedelta(seconds=hub.control_report_after_s + 60)
    [(reference, version, _)] = decided
    tick = SourcePosition(hub.topics.deadlines, SOURCE.partition, 1)
    outboxes.append(hub.deadlines.handle(reference, version, tick))
    return [s.model_dump(mode="json") for o in outboxes for s in hub.statuses(o)]


def test_an_overdue_control_kept_for_the_licence_alone_is_not_told_to_the_trader(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    with_licence = history(routing_table, keys_dir, (LICENCE,))
    without = history(routing_table, keys_dir, ())
    overdue = StatusKind.CONTROL_RESULT_OVERDUE.value
    assert overdue in {e["kind"] for e in with_licence}  # DGA's reservation was kept
    assert overdue not in {e["kind"] for e in without}  # nothing kept, nothing overdue
    seen = trader_history(with_licence, CONFIDENTIAL)
    assert seen == trader_history(without, CONFIDENTIAL), (
        "the trader reads an event a declaration without the licence never has: "
        f"{[e for e in seen if e['kind'] == overdue]}"
    )
