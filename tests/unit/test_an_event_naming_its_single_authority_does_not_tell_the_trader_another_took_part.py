"""An event that names the one authority it concerns does not tell the trader, by naming
none, that a second one took part.

Stop 56 has an event that exists only for what its case holds name the authority when
there is one (``lifecycle.only_authority``: the overdue control in deadlines.py, a
takeover's follow-ups and give-backs in takeover.py), so that the trader's redaction
drops one for DGA alone. But ``authority`` is a field the trader reads (web/redaction.py
``_FIELDS``): when DGAL alone holds something it says ``"dgal"``, and when DGAL *and* DGA
hold something it says nothing (two authorities: ``None``), and the redaction, which only
drops events of a hidden authority, leaves that ``None`` as it is. A trader whose
declaration quotes a CHED (it knows that, it lodged it) and reads an overdue control
naming no authority knows another authority holds a reservation of its declaration: the
licence, DGA. Before stop 56 the event named no authority in both cases.
(docs/security.md, "Who may see what": "what remains must read exactly as it would had the
confidential authority never taken part".)
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.declaration import DocumentRef
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.web.redaction import trader_history
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_pipeline import SOURCE, Hub

CONFIDENTIAL = frozenset({"dga"})
CHED = document("N853", "CHEDP.FR.2026.0001234", 1, "10")
LICENCE = document("LEMG", "LEMG-FR-2026-0042", 1, "5", "NAR")


def history(
    routing_table: RoutingTable, keys_dir: Path, licence: tuple[DocumentRef, ...]
) -> list[dict[str, Any]]:
    """A CHED, and maybe a licence (DGA answering VALID); DGAL does not answer in time, so
    a documentary control (degraded mode) keeps what was reserved; a week later, no
    control result."""
    hub = Hub(routing_table, keys_dir)
    item = goods_item(1, (CHED, *licence), commodity_code="9301100000")
    outboxes: list[Effects] = [hub.intake.handle(declaration_xml(items=(item,)), SOURCE)]
    if licence:
        outboxes.append(hub.answer(outboxes[0], "dga", Verdict.VALID))
    outboxes.append(hub.answer(outboxes[0], "dgal", Verdict.UNAVAILABLE))
    decided = [d for o in outboxes for d in hub.decisions(o)]
    assert [outcome for *_, outcome in decided] == [Outcome.CONTROL_DOCUMENTARY]
    hub.now += timedelta(seconds=hub.control_report_after_s + 60)
    [(reference, version, _)] = decided
    tick = SourcePosition(hub.topics.deadlines, SOURCE.partition, 1)
    outboxes.append(hub.deadlines.handle(reference, version, tick))
    return [s.model_dump(mode="json") for o in outboxes for s in hub.statuses(o)]


def overdue(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in history if e["kind"] == StatusKind.CONTROL_RESULT_OVERDUE.value]


def test_an_overdue_control_reads_the_same_to_the_trader_whether_a_licence_was_kept_too(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    with_licence = trader_history(history(routing_table, keys_dir, (LICENCE,)), CONFIDENTIAL)
    without = trader_history(history(routing_table, keys_dir, ()), CONFIDENTIAL)
    assert overdue(with_licence)  # the CHED's reservation is kept
    assert overdue(without)
    assert overdue(with_licence) == overdue(without), (
        "the overdue control names DGAL when DGAL alone holds a reservation, and no "
        "authority when DGA holds one too: the trader reads that a second authority took "
        f"part: {overdue(with_licence)} against {overdue(without)}"
    )
