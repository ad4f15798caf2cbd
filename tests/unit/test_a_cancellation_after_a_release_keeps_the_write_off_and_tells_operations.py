"""A cancellation read after a release keeps the write-off, and operations are told.

The clearance system cancels a declaration (CANCELLED, v2) after, or while, the hub
released v1: v1's write-off has gone through. The cancellation's own requests are
deletions (contract section 4: "CANCELLED: reservations of that declaration are
deleted"), and the partner answers a deletion of what is written off ``03`` ("already
written off"): ALREADY_USED, reported FOLLOW_UP_FAILED, and the hub decides CANCELLED.

Giving the write-off back instead was considered (a review of stop 56 asked for it: the
final decision says CANCELLED) and not done: a release reached the clearance system, the
goods may have left under it, and a give-back would then create quantity on the
certificate. The contract's act for "released, then annulled" is INVALIDATED, which gives
back; a cancellation after a release leaves the quantity written off, and operations,
told by FOLLOW_UP_FAILED, ask the clearance system for the invalidation if the goods did
not leave. Driven without Kafka: the hub's steps and the adapters' real partner client
against the partner simulator.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from tests.partner_fixtures import running_partner
from tests.unit.test_a_document_refused_on_restatement_in_advice_mode_keeps_no_reservation import (
    DOC,
    REF,
    lodged,
    settle,
)
from tests.unit.test_pipeline import SOURCE, Hub


async def test_a_cancellation_after_a_release_leaves_what_left_written_off_and_says_so(
    routing_table: RoutingTable, keys_dir: Path, samples: Path, tmp_path: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "ledger.db"
    ) as sim:
        released = await settle(hub, sim.url, hub.intake.handle(lodged(1, "100"), SOURCE))
        assert (REF, 1, Outcome.RELEASE) in [d for out in released for d in hub.decisions(out)]
        [written] = [p for p in sim.store.positions(DOC) if p.declaration == REF]
        assert written.written_off == Decimal(100)  # v1's write-off went through

        cancelled = await settle(
            hub,
            sim.url,
            hub.intake.handle(
                lodged(2, "100", Stage.CANCELLED), dataclasses.replace(SOURCE, offset=1)
            ),
        )
        decided = [d for out in cancelled for d in hub.decisions(out)]
        [position] = [p for p in sim.store.positions(DOC) if p.declaration == REF]

    assert (REF, 2, Outcome.CANCELLED) in decided, decided
    # Nothing created: what left under the release stays written off.
    assert (position.reserved, position.written_off) == (Decimal(0), Decimal(100)), position
    failed = [
        status
        for out in cancelled
        for status in hub.statuses(out)
        if status.kind is StatusKind.FOLLOW_UP_FAILED
    ]
    assert [(f.version, f.authority) for f in failed] == [(2, "dgal")], failed
