"""A refusal decided at the deadline while DGA stayed silent reads to the trader as the
same refusal without the licence.

docs/security.md ("Who may see what") and web/redaction.py: what a trader reads "must read
exactly as it would had the confidential authority never taken part". DGAL refuses a
CHED (quantities insufficient); DGA, asked about the war-material licence on the same
declaration, does not answer. At the deadline (pipeline/deadlines.py) the silent
licence becomes UNAVAILABLE and the decision REFUSE, its reasons
``DEADLINE; <dgal's refusal>; UNAVAILABLE``. The DEADLINE_PASSED event ("no answer from
dga within 30s") is left out for the trader, but the DECIDED event's reason codes are
shown whole (redaction.py keeps "the document verdicts and degraded-mode codes"): the
trader reads DEADLINE and UNAVAILABLE on a refusal whose only visible authority answered,
which the same declaration without the licence never shows. The outcome is the same
either way (a refusal is certain, silence is not): only the codes tell DGA took part.
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


def trader_reads(
    routing_table: RoutingTable, keys_dir: Path, licence: tuple[DocumentRef, ...]
) -> tuple[list[Outcome], list[dict[str, Any]]]:
    """DGAL refuses the CHED; DGA (when the licence is quoted) stays silent until the
    deadline passes: the outcomes decided and what the trader reads."""
    hub = Hub(routing_table, keys_dir)
    item = goods_item(1, (CHED, *licence), commodity_code="9301100000")
    outboxes: list[Effects] = [hub.intake.handle(declaration_xml(items=(item,)), SOURCE)]
    outboxes.append(hub.answer(outboxes[0], "dgal", Verdict.QUANTITY_INSUFFICIENT))
    hub.now += timedelta(seconds=31)
    [received] = [s for s in hub.statuses(outboxes[0]) if s.kind is StatusKind.RECEIVED]
    tick = SourcePosition(hub.topics.deadlines, SOURCE.partition, 1)
    outboxes.append(hub.deadlines.handle(received.reference, received.version, tick))
    outcomes = [outcome for o in outboxes for *_, outcome in hub.decisions(o)]
    history = [s.model_dump(mode="json") for o in outboxes for s in hub.statuses(o)]
    return outcomes, trader_history(history, CONFIDENTIAL)


def decided_detail(seen: list[dict[str, Any]]) -> list[str]:
    return [e["detail"] for e in seen if e["kind"] == StatusKind.DECIDED.value]


def test_a_refusal_with_a_silent_licence_reads_to_the_trader_as_the_refusal_without_it(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    with_licence, seen_with = trader_reads(routing_table, keys_dir, (LICENCE,))
    without, seen_without = trader_reads(routing_table, keys_dir, ())
    assert with_licence == without == [Outcome.REFUSE]
    # Nothing the trader reads names DGA (the deadline's event is left out) ...
    assert StatusKind.DEADLINE_PASSED.value not in {e["kind"] for e in seen_with}
    # ... but the refusal's reasons must not tell that an authority it cannot see was
    # silent: the same codes as the refusal without the licence.
    assert decided_detail(seen_with) == decided_detail(seen_without)
