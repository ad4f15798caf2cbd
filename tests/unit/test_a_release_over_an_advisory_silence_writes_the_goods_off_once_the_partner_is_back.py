"""A declaration released over an authority's silence in advice mode has its goods
written off at the partner once it is back.

In advice mode (``gun_hub/domain/rollout.py``) an authority's silence only warns: a
lodged declaration whose reservation met a partner outage (a 503: "not taken", nothing
reserved) is RELEASED, not held for a documentary control, and its write-off is sent
(``gun_hub/domain/lifecycle.py``, ``_followed_up`` leaves out refusals, not the
UNAVAILABLE documents). The partner, holding nothing, answers ``02``. The adapter's
answer to that case (reserve, then write off: ``adapters/base/certex.py``,
``_write_off_what_was_never_reserved``) needs the write-off's quantities, and the
decision's follow-up carries none (``follow_up_requests`` builds it with
``requests_for(..., quantities=False)``; only a release after control's own write-off
has them, intake.py ``_ask``). So the write-off ends MISMATCH 02 (FOLLOW_UP_FAILED) and
the goods the hub released are written off nowhere: the certificate keeps their
quantity, free for another declaration (stop 52's defect, for a direct release).

Driven without Kafka: the hub's steps and the adapters' real partner client against the
partner simulator. Found by review (exactness of the quantity ledger).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.rollout import RolloutMode
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from tests.partner_fixtures import running_partner, set_faults
from tests.unit.test_a_document_refused_on_restatement_in_advice_mode_keeps_no_reservation import (
    DOC,
    REF,
    lodged,
    requests_of,
    settle,
)
from tests.unit.test_a_release_after_a_degraded_control_writes_the_goods_off import (
    through_the_adapter,
)
from tests.unit.test_pipeline import SOURCE, Hub
from tests.unit.test_rollout_modes import OFFICE, setting


async def test_the_goods_released_over_an_advisory_silence_are_written_off(
    routing_table: RoutingTable, keys_dir: Path, samples: Path, tmp_path: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    hub.rollout.apply(setting("dgal", RolloutMode.ADVICE, OFFICE))
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "ledger.db"
    ) as sim:
        await set_faults(sim.url, outage=True)
        sent = hub.intake.handle(lodged(1, "100"), SOURCE)
        [decided] = await through_the_adapter(hub, sim.url, sent)
        [decision] = hub.decision_objects(decided)
        assert decision.outcome is Outcome.RELEASE
        assert [d.verdict for d in decision.documents] == [Verdict.UNAVAILABLE]
        assert [r.operation for r in requests_of(hub, decided)] == [Operation.WRITE_OFF]

        await set_faults(sim.url, outage=False)  # the write-off, replayed once it is back
        handled = await settle(hub, sim.url, decided)
        positions = [p for p in sim.store.positions(DOC) if p.declaration == REF]
        position = positions[0] if positions else None

    failed = [
        s.detail
        for out in handled
        for s in hub.statuses(out)
        if s.kind is StatusKind.FOLLOW_UP_FAILED
    ]
    # Before: "WRITE_OFF: N853 CHEDP.FR.2026.0001234: MISMATCH" (the partner's 02).
    assert failed == [], failed
    # Before: nothing reserved nor written off (no position at all) for 100 KGM released.
    assert position is not None, "no position at all for the 100 KGM released"
    assert position.written_off == Decimal(100), position
