"""A certificate line quoted twice on one goods item is counted, in the hub's account of
what was written off, as the partner draws it.

Nothing refuses a goods item quoting the same document line twice (``schemas/
declaration.xsd`` keys goods item numbers only; intake and routing check no duplicate):
the hub asks each quote, the adapter sends both claims in one position
(``adapters/base/certex.py``, ``answer``: grouped by document), and the partner adds
them up (``partner_sim/ledger.py``, ``requested_per_line``): 2 x 100 KGM reserved, then
written off. The write-off fact lists both quotes, but the operations view keeps one row
per (reference, version, authority, goods item, code, document, line)
(``gun_hub/ops/view.py``, ``_keep_lines``: ``INSERT OR REPLACE``): the second replaces
the first, and the hub's written-off account says 100 KGM where the partner wrote off
200. (``lifecycle.write_offs_known`` keys by the same line and keeps one of the two as
well.) Either the declaration is refused for its duplicate quote, or the hub counts what
the partner draws. Found by review (exactness of the quantity ledger).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from gun_hub.domain.routing import RoutingTable
from tests.builders import declaration_xml, document, goods_item
from tests.partner_fixtures import running_partner
from tests.unit.test_a_document_refused_on_restatement_in_advice_mode_keeps_no_reservation import (
    DOC,
    REF,
    settle,
)
from tests.unit.test_a_stage_whose_own_operation_is_a_follow_up_reports_it import Feeder, view_for
from tests.unit.test_pipeline import SOURCE, Hub


async def test_the_hubs_account_of_a_line_quoted_twice_is_the_partners(
    routing_table: RoutingTable, keys_dir: Path, samples: Path, tmp_path: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    view = view_for(hub, tmp_path)
    feed = Feeder(hub, view)
    twice = declaration_xml(
        items=(
            goods_item(
                1,
                (
                    document("N853", DOC, 1, "100", "KGM"),
                    document("N853", DOC, 1, "100", "KGM"),
                ),
            ),
        )
    )
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "ledger.db"
    ) as sim:
        feed(*await settle(hub, sim.url, hub.intake.handle(twice, SOURCE)))
        [partner_side] = [p for p in sim.store.positions(DOC) if p.declaration == REF]
    lines = [line for line in view.written_off(DOC) if line["line"] == 1]
    said = sum((Decimal(line["quantity"]) for line in lines), Decimal(0))
    assert partner_side.written_off == Decimal(200)  # the partner drew both quotes
    # Before: 100 in the hub's account.
    assert said == partner_side.written_off, lines
