"""The office's release after control, refused over a case that did not open, keeps the
declaration the office's.

b7b66ca made a version refused over a case that did not open "no act of customs"
(``trader_stages.customs_acted_on``: a decided case is judged on its decision alone, and
``Intake._refuse_over_unreadable`` stores a REFUSE with no ``customs_acted``), so that a
trader's own withdrawal refused so leaves its declaration its own. But RELEASED_AFTER_CONTROL
(and INVALIDATED) is a stage only the office sends, through the clearance system
(contract section 4; the gateway refuses it from a trader): whatever the hub could do
with it, the office released the goods it had held for its control. Before b7b66ca that
stage alone kept a trader's later version out (5030031, "decided or not"). Now: the
trader's version 1 is decided for a control, its stored case no longer opens, the
office's RELEASED_AFTER_CONTROL version 2 is refused STATE_UNREADABLE, and the trader's
version 3 of the same goods, through the gateway, is taken and decided from scratch, the
declaration in the office's hands given back to its trader.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from gun_contract.dead_letter import HEADER_ERROR_KIND, SourcePosition, header_value
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import SealedStore, StateCipher
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.intake import AMENDMENT_NOT_PERMITTED
from gun_hub.pipeline.retention import RetainedCases
from gun_hub.pipeline.unreadable_state import STATE_UNREADABLE
from tests.builders import declaration_xml
from tests.unit.test_a_case_that_does_not_open_is_refused_and_forgotten import SealedHub
from tests.unit.test_a_traders_withdrawal_refused_over_a_case_that_did_not_open_leaves_its_declaration_its_own import (  # noqa: E501
    KEY,
    REFERENCE,
    TRADER,
    at,
    lodged,
)
from tests.unit.test_pipeline import Hub


async def test_a_traders_version_after_the_offices_release_refused_unreadable_is_refused(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    below: dict[bytes, bytes] = {}
    cipher = StateCipher.load(keys_dir, HUB_PARTY)
    store = RetainedCases(SealedStore(below, cipher, "cases"), dict[bytes, bytes](), cipher)
    sealed = SealedHub(Hub(routing_table, keys_dir, cases=store), below, store)
    hub = sealed.hub

    first = await lodged(sealed, 1, Stage.LODGED, 0)
    hub.now += timedelta(seconds=31)  # DGAL silent: degraded
    held = hub.deadlines.handle(REFERENCE, 1, SourcePosition("gun.hub.deadlines", 0, 0))
    assert first.to(hub.topics.requests("dgal"))
    assert hub.decisions(held) == [(REFERENCE, 1, Outcome.CONTROL_DOCUMENTARY)]
    value = sealed.below[KEY]
    sealed.below[KEY] = value[:-1] + bytes([value[-1] ^ 1])  # no longer opens

    # The office releases the goods after its control: the clearance system's version 2.
    xml = declaration_xml(
        reference=REFERENCE, version=2, stage=Stage.RELEASED_AFTER_CONTROL, declarant=TRADER
    )
    released = await sealed.handled(lambda: hub.intake.handle(xml, at(1)), xml, at(1), "intake")
    kinds = [header_value(r.headers, HEADER_ERROR_KIND) for r in released.to(hub.topics.dlq)]
    assert kinds == [STATE_UNREADABLE]

    again = await lodged(sealed, 3, Stage.LODGED, 2)
    kinds = [header_value(r.headers, HEADER_ERROR_KIND) for r in again.to(hub.topics.dlq)]
    assert again.to(hub.topics.requests("dgal")) == [], (
        "the trader's version 3 after the office's release after control was taken and "
        f"asked of DGAL afresh (dead letters: {kinds}); decided: "
        f"{hub.decisions(hub.answer(again, 'dgal', Verdict.VALID))}"
    )
    assert kinds == [AMENDMENT_NOT_PERMITTED]
