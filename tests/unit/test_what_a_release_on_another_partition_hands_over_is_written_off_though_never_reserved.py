"""What a control kept that its release, read on another partition, does not quote is
written off at the partner, even when the control was decided in degraded mode and
nothing was ever reserved there.

Stop 52 made a release after a degraded control write the goods off: the partner,
holding nothing, answers ``02``, and the adapter reserves, then writes off, from the
write-off's quantities (``adapters/base/certex.py``, ``_write_off_what_was_never_reserved``;
docs/adapters.md, "Goods released with nothing reserved at the partner"). The release's
own write-off carries them (``gun_hub/pipeline/intake.py``, ``_ask``: ``quantities=True``).
The write-off a partition sends for what the control kept and the release read on
another partition does not quote (``gun_hub/pipeline/takeover.py``, ``_send``:
``quantities = operation is Operation.GIVE_BACK``) carries none: the partner answers
``02``, the adapter cannot reserve, the write-off ends MISMATCH (FOLLOW_UP_FAILED), and the
goods that left are written off nowhere, the certificate keeping their quantity for
another declaration.

Sequence: v1 quotes two DGAL certificates (CHED-P 100 KGM on item 1, CHED-A 5 NAR on
item 2), lodged on partition 0 while DGAL is down: CONTROL_DOCUMENTARY [DEGRADED_MODE],
nothing reserved. DGAL back; the office releases the goods: v2 RELEASED_AFTER_CONTROL,
read on partition 1, quotes item 1 only. Partition 1 writes the CHED-P off (reserved,
then written off); partition 0, told, writes off the CHED-A under v2: answered 02, 5 NAR
never written off.

Two hubs stand for the two partitions' workers (as in
``test_a_later_version_on_another_partition_takes_over_what_the_earlier_held.py``); the
adapters' real partner client against the partner simulator. Found by review (exactness
of the quantity ledger).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from tests.builders import declaration_xml, document, goods_item
from tests.partner_fixtures import running_partner, set_faults
from tests.unit.test_a_document_refused_on_restatement_in_advice_mode_keeps_no_reservation import (
    REF,
    settle,
)
from tests.unit.test_a_later_version_on_another_partition_takes_over_what_the_earlier_held import (
    notices_to,
    told,
)
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import at

CHEDP = "CHEDP.FR.2026.0001234"
CHEDA = "CHEDA.FR.2026.0000042"
SALMON = goods_item(1, (document("N853", CHEDP, 1, "100", "KGM"),))
CATTLE = goods_item(2, (document("C640", CHEDA, 1, "5", "NAR"),), commodity_code="0102290000")


async def test_the_certificate_the_release_does_not_quote_is_written_off_all_the_same(
    routing_table: RoutingTable, keys_dir: Path, samples: Path, tmp_path: Path
) -> None:
    first, other = Hub(routing_table, keys_dir), Hub(routing_table, keys_dir)
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "ledger.db"
    ) as sim:
        await set_faults(sim.url, outage=True)
        lodged = first.intake.handle(
            declaration_xml(version=1, items=(SALMON, CATTLE)), at(0, partition=0)
        )
        controlled = await settle(first, sim.url, lodged)
        assert (REF, 1, Outcome.CONTROL_DOCUMENTARY) in [
            d for out in controlled for d in first.decisions(out)
        ]
        await set_faults(sim.url, outage=False)

        released = other.intake.handle(
            declaration_xml(version=2, stage=Stage.RELEASED_AFTER_CONTROL, items=(SALMON,)),
            at(0, partition=1),
        )
        await settle(other, sim.url, released)
        handed_over = told(first, notices_to(other, released, 0))
        answered = await settle(first, sim.url, handed_over)
        failed = [
            s.detail
            for out in answered
            for s in first.statuses(out)
            if s.kind is StatusKind.FOLLOW_UP_FAILED
        ]
        salmon = [p for p in sim.store.positions(CHEDP) if p.declaration == REF]
        cattle = [p for p in sim.store.positions(CHEDA) if p.declaration == REF]

    assert [p.written_off for p in salmon] == [Decimal(100)]  # partition 1's own: written off
    # Before: "WRITE_OFF: C640 CHEDA.FR.2026.0000042: MISMATCH" (the partner's 02), and
    # no position at all on the CHED-A: 5 NAR released, written off nowhere.
    assert failed == [], failed
    assert [p.written_off for p in cattle] == [Decimal(5)], cattle
