"""The quantity the hub says a declaration wrote off (the facts, and the operations
view's ``written_off`` the trader's quantities and ``/stats/written-off`` read) is what
the partner wrote off, however many versions confirm the write-off.

A write-off the partner answers ``03`` ("already written off") is mapped VALID (a
redelivery finds the first one done: ``adapters/base/certex.py``, CLEARANCE_VERDICTS),
and the hub reports it WRITTEN_OFF with a write-off fact (``gun_hub/pipeline/
correlation.py``, ``_report_follow_up``) for the version that sent it. The view keeps
write-offs per version (``gun_hub/ops/view.py``, table ``write_offs``: its key holds
``version``) and sums them per declaration. So a second release notice of the same
control (v3 RELEASED_AFTER_CONTROL after v2's: the hub writes off what v3 quotes at the
authorities v2 reserved at, ``intake._modes``), whose write-off the partner answers
``03``, is counted again: 200 KGM written off in the hub's account, 100 at the partner;
and after the invalidation, 100 still written off in the hub's account, none at the
partner (each declaration's give-backs are capped by its own write-offs, not the
write-offs by what the partner took).

Driven without Kafka: the hub's steps, the adapters' real partner client against the
partner simulator, the operations view fed what the hub emitted. Found by review
(exactness of the quantity ledger).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from gun_contract.dead_letter import SourcePosition
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.routing import RoutingTable
from tests.partner_fixtures import partner_client, running_partner
from tests.unit.test_a_document_refused_on_restatement_in_advice_mode_keeps_no_reservation import (
    DOC,
    REF,
    lodged,
    requests_of,
    settle,
)
from tests.unit.test_a_stage_whose_own_operation_is_a_follow_up_reports_it import Feeder, view_for
from tests.unit.test_pipeline import SOURCE, Hub


async def test_a_second_release_notice_of_one_control_counts_the_write_off_once(
    routing_table: RoutingTable, keys_dir: Path, samples: Path, tmp_path: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    view = view_for(hub, tmp_path)
    feed = Feeder(hub, view)
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "ledger.db"
    ) as sim:
        # v1: the partner reserves 100 KGM, but slowly: the hub's deadline passes first
        # (a documentary control in degraded mode, the reservation kept).
        sent = hub.intake.handle(lodged(1, "100"), SOURCE)
        client = partner_client(sim.url, retry_attempts=1)
        try:
            [reserve] = requests_of(hub, sent)
            await client.answer(reserve)
        finally:
            await client.close()
        hub.now += timedelta(seconds=31)
        ticked = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 0))
        assert hub.decisions(ticked) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
        feed(sent, ticked)

        for version, offset in ((2, 1), (3, 2)):  # the office's release, told twice
            out = hub.intake.handle(
                lodged(version, "100", Stage.RELEASED_AFTER_CONTROL),
                dataclasses.replace(SOURCE, offset=offset),
            )
            feed(*await settle(hub, sim.url, out))
        [partner_side] = [p for p in sim.store.positions(DOC) if p.declaration == REF]
        [hub_side] = [line for line in view.written_off(DOC) if line["line"] == 1]
        assert partner_side.written_off == Decimal(100)
        # Before: "200" (v2's write-off and v3's, answered 03, each counted).
        assert Decimal(hub_side["quantity"]) == partner_side.written_off, hub_side

        out = hub.intake.handle(
            lodged(4, "100", Stage.INVALIDATED), dataclasses.replace(SOURCE, offset=3)
        )
        feed(*await settle(hub, sim.url, out))
        [partner_side] = [p for p in sim.store.positions(DOC) if p.declaration == REF]
        [hub_side] = [line for line in view.written_off(DOC) if line["line"] == 1]
    assert (partner_side.written_off, partner_side.given_back) == (Decimal(0), Decimal(100))
    assert Decimal(hub_side["quantity"]) == Decimal(0), hub_side
