"""A trader does not escape a control once a later version was refused unread.

8b4ad74 and 5030031 judge a trader's gateway version on the case's version alone
(domain/trader_stages.py ``customs_acted_on``: its decision or its stage). A version the
intake refuses unread (``Intake._reject``: a schema error, say) takes the case's place
with stage LODGED whatever it was and a REFUSE: the control decided for the version
before is forgotten. So: the trader's version 1, lodged through the gateway, is decided
for a documentary control; the office refuses the goods after its control, and the
clearance system's CANCELLED version 2 fails the schema (refused unread, the control's
reservations deleted with it). The trader lodges version 3, the same goods, through the
gateway: judged over a REFUSE of stage LODGED, it is decided from scratch (asked of DGAL,
released on VALID), the goods the office held and refused released, and the version
number the clearance system's corrected CANCELLED was to take is the trader's.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from gun_contract.dead_letter import HEADER_ERROR_KIND, SourcePosition, header_value
from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.intake import AMENDMENT_NOT_PERMITTED
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_pipeline import SOURCE, Hub

TRADER = "FR12345678901234"
REFERENCE = f"{TRADER}-INV-0001"


def at(offset: int) -> SourcePosition:
    return replace(SOURCE, key=REFERENCE.encode(), offset=SOURCE.offset + offset)


def through_the_gateway(hub: Hub, version: int, offset: int) -> Effects:
    xml = declaration_xml(reference=REFERENCE, version=version, declarant=TRADER)
    sealed = hub.sealed_by_gateway(xml)
    return hub.intake.handle(sealed, at(offset))


def test_a_control_is_not_escaped_after_the_offices_next_version_was_refused_unread(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    through_the_gateway(hub, 1, 0)
    hub.now += timedelta(seconds=31)  # DGAL silent: degraded mode, a documentary control
    held = hub.deadlines.handle(REFERENCE, 1, SourcePosition("gun.hub.deadlines", 0, 0))
    assert hub.decisions(held) == [(REFERENCE, 1, Outcome.CONTROL_DOCUMENTARY)]

    # The office refuses the goods: the clearance system's CANCELLED, which fails the schema.
    broken = declaration_xml(
        reference=REFERENCE,
        version=2,
        stage=Stage.CANCELLED,
        declarant=TRADER,
        items=(goods_item(1, (document(quantity="-5"),)),),
    )
    refused = hub.intake.handle(broken, at(1))
    assert hub.decisions(refused) == [(REFERENCE, 2, Outcome.REFUSE)]

    again = through_the_gateway(hub, 3, 2)
    kinds = [header_value(r.headers, HEADER_ERROR_KIND) for r in again.to(hub.topics.dlq)]
    assert again.to(hub.topics.requests("dgal")) == [], (
        f"version 3 was decided from scratch after version 1's control (dead letters: {kinds})"
    )
    assert kinds == [AMENDMENT_NOT_PERMITTED]
