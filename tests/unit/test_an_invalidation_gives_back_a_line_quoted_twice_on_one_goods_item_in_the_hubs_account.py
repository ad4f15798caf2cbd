"""An invalidation gives back, in the hub's account, both quotes of a line quoted twice on
one goods item, as the partner gives them back.

Stop 56 has the operations view count a line quoted twice on one goods item twice, as the
partner draws on it (view.py ``_keep_lines`` sums the two quotes). What the hub asks to
give back at an invalidation, and so the give-back fact the view takes off, is
``lifecycle.write_offs_known``, keyed by (authority, goods item, code, document, line):
the two quotes are one key there, and the later one replaces the earlier (the review's
own test says so and leaves it). The partner gives back the whole write-off (200); the
view takes off one quote (100) and keeps 100 written off on the line for a declaration
the partner holds nothing of. Before stop 56 the view's account was wrong the other way
round before the invalidation (100 for 200) and, by the same collapse, right after it;
now it is right before and wrong after, for good.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from gun_contract.model.declaration import Stage
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
from tests.unit.test_versions_and_recovery import at

TWICE = (
    goods_item(
        1,
        (
            document("N853", DOC, 1, "100", "KGM"),
            document("N853", DOC, 1, "100", "KGM"),
        ),
    ),
)


async def test_an_invalidation_leaves_nothing_written_off_of_a_line_quoted_twice(
    routing_table: RoutingTable, keys_dir: Path, samples: Path, tmp_path: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    view = view_for(hub, tmp_path)
    feed = Feeder(hub, view)
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "ledger.db"
    ) as sim:
        feed(*await settle(hub, sim.url, hub.intake.handle(declaration_xml(items=TWICE), SOURCE)))
        [released] = [p for p in sim.store.positions(DOC) if p.declaration == REF]
        assert released.written_off == Decimal(200)  # the partner drew both quotes
        invalidated = declaration_xml(version=2, stage=Stage.INVALIDATED, items=TWICE)
        feed(*await settle(hub, sim.url, hub.intake.handle(invalidated, at(1))))
        [partner_side] = [p for p in sim.store.positions(DOC) if p.declaration == REF]
    assert partner_side.given_back == Decimal(200)  # the partner gave both back
    net_at_the_partner = partner_side.written_off  # what is still written off there
    assert net_at_the_partner == Decimal(0)
    lines = [line for line in view.written_off(DOC) if line["line"] == 1]
    said = sum((Decimal(line["quantity"]) for line in lines), Decimal(0))
    assert said == net_at_the_partner, (
        f"the hub's account keeps {said} KGM written off on line 1 of {DOC} where the "
        f"partner, after the invalidation, holds {net_at_the_partner}: {lines}"
    )
