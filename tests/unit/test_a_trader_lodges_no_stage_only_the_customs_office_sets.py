"""A trader lodging through the single window's gateway lodges declarations and their
amendments (PRELODGED, LODGED), never a stage only the customs office sets
(authorization sweep of stop 56; gun_hub/domain/trader_stages.py).

Contract section 4: RELEASED_AFTER_CONTROL is "a new version sent by the clearance system
when an office releases goods it had held for a control", and INVALIDATED is a
declaration invalidated by customs after release, whose written-off quantities are given
back at each partner. The gateway checks who lodges (the portal token's EORI, the
reference's namespace) but not the stage, and the hub believes the gateway as it believes
the clearance system (ADR 0011). So a trader with a lodging token, for its own
declaration:

* held for a control, lodges version 2 as RELEASED_AFTER_CONTROL: the hub writes off what
  the control kept and decides RELEASE, the office's control decided by the trader;
* released, lodges version 2 as INVALIDATED: the hub asks each partner to GIVE_BACK what
  was written off (a CHED's, a CITES permit's, a war-material licence's quantity) though
  the goods have left: the quantity can be used again for another shipment.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from gun_contract.dead_letter import (
    HEADER_ERROR_CLASS,
    HEADER_ERROR_KIND,
    SourcePosition,
    header_value,
)
from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.gateway.lodging import DeclarationCheck, LodgementRefused, Lodger
from gun_hub.pipeline.intake import STAGE_NOT_THE_DECLARANTS
from tests.builders import declaration_xml
from tests.unit.test_pipeline import SOURCE, Hub
from tests.unit.test_versions_and_recovery import requests

TRADER = "FR12345678901234"
REFERENCE = f"{TRADER}-INV-0001"  # the trader's own namespace: the gateway lodges it


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


def at(offset: int) -> SourcePosition:
    return replace(SOURCE, key=REFERENCE.encode(), offset=SOURCE.offset + offset)


def _lodged_by_the_trader(hub: Hub, version: int, stage: Stage, offset: int) -> Effects:
    """Sealed by the gateway party, as the gateway seals what a trader lodges: the hub
    refuses what the gateway should have (as it does REFERENCE_NOT_THE_DECLARANTS)."""
    xml = declaration_xml(reference=REFERENCE, version=version, stage=stage, declarant=TRADER)
    return hub.intake.handle(hub.sealed_by_gateway(xml), at(offset))


def _refused_as_a_customs_stage(hub: Hub, refused: Effects) -> None:
    """A security dead letter naming why, and nothing else: no decision, no status, no
    request to any partner."""
    [dead] = refused.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == STAGE_NOT_THE_DECLARANTS
    assert header_value(dead.headers, HEADER_ERROR_CLASS) == "security"
    assert hub.decisions(refused) == []
    assert requests(hub, refused) == []


@pytest.mark.parametrize("stage", [Stage.RELEASED_AFTER_CONTROL, Stage.INVALIDATED])
def test_the_gateway_refuses_a_stage_only_the_customs_office_sets(stage: Stage) -> None:
    check = DeclarationCheck(1_000_000)
    lodger = Lodger("the portal token's trader", frozenset({TRADER}))
    with pytest.raises(LodgementRefused) as refused:
        check.check(
            declaration_xml(reference=REFERENCE, version=2, stage=stage, declarant=TRADER),
            lodger,
        )
    assert refused.value.status == 403
    assert refused.value.kind == STAGE_NOT_THE_DECLARANTS
    assert "clearance system" in str(refused.value)


@pytest.mark.parametrize("stage", [Stage.PRELODGED, Stage.LODGED, Stage.CANCELLED])
def test_the_gateway_takes_the_stages_a_trader_lodges(stage: Stage) -> None:
    check = DeclarationCheck(1_000_000)
    lodger = Lodger("the portal token's trader", frozenset({TRADER}))
    xml = declaration_xml(reference=REFERENCE, version=2, stage=stage, declarant=TRADER)
    assert check.check(xml, lodger).stage is stage


def test_a_trader_cannot_release_its_own_goods_held_for_a_control(hub: Hub) -> None:
    """Version 1, lodged by the trader, is held for a documentary control (DGAL silent).
    Only the office releases goods held for a control; the trader's RELEASED_AFTER_CONTROL
    sealed by the gateway must write nothing off and be decided nothing."""
    first = hub.intake.handle(
        hub.sealed_by_gateway(declaration_xml(reference=REFERENCE, version=1, declarant=TRADER)),
        at(0),
    )
    assert first.to(hub.topics.dlq) == []
    hub.now += timedelta(seconds=31)
    ticked = hub.deadlines.handle(REFERENCE, 1, SourcePosition("gun.hub.deadlines", 0, 0))
    assert hub.decisions(ticked) == [(REFERENCE, 1, Outcome.CONTROL_DOCUMENTARY)]

    released = _lodged_by_the_trader(hub, 2, Stage.RELEASED_AFTER_CONTROL, 1)
    written_off = [r for r in requests(hub, released) if r.operation is Operation.WRITE_OFF]
    assert written_off == [], "the trader's own release wrote off what the control kept"
    decided = hub.answer(released, "dgal", Verdict.VALID) if written_off else released
    assert (REFERENCE, 2, Outcome.RELEASE) not in hub.decisions(decided)
    _refused_as_a_customs_stage(hub, released)

    # The case is as the control left it: the office's own release, version 2 from the
    # clearance system, is the one that writes off and releases.
    office = hub.intake.handle(
        hub.sealed_by_clearance(
            declaration_xml(
                reference=REFERENCE,
                version=2,
                stage=Stage.RELEASED_AFTER_CONTROL,
                declarant=TRADER,
            )
        ),
        at(2),
    )
    assert [r.operation for r in requests(hub, office)] == [Operation.WRITE_OFF]
    assert hub.decisions(hub.answer(office, "dgal", Verdict.VALID)) == [
        (REFERENCE, 2, Outcome.RELEASE)
    ]


def test_a_trader_cannot_invalidate_its_released_declaration_to_get_quantities_back(
    hub: Hub,
) -> None:
    """Version 1, lodged by the trader, is released: its CHED quantity is written off.
    Invalidation after release is customs' act; the trader's INVALIDATED sealed by the
    gateway must give nothing back at the partner."""
    first = hub.intake.handle(
        hub.sealed_by_gateway(declaration_xml(reference=REFERENCE, version=1, declarant=TRADER)),
        at(0),
    )
    released = hub.answer(first, "dgal", Verdict.VALID)
    assert hub.decisions(released) == [(REFERENCE, 1, Outcome.RELEASE)]
    assert [r.operation for r in requests(hub, released)] == [Operation.WRITE_OFF]

    invalidated = _lodged_by_the_trader(hub, 2, Stage.INVALIDATED, 1)
    given_back = [r for r in requests(hub, invalidated) if r.operation is Operation.GIVE_BACK]
    assert given_back == [], "the trader's own invalidation gave the written-off quantity back"
    _refused_as_a_customs_stage(hub, invalidated)


def test_a_trader_cannot_get_a_release_by_lodging_its_first_version_as_released(
    hub: Hub,
) -> None:
    """The shortest way round every check: version 1 lodged through the gateway as
    RELEASED_AFTER_CONTROL, quoting a certificate the partner does not know. The hub
    writes off what it quotes and decides RELEASE whatever the partner answers (the office
    released the goods, so risk rules and refusals no longer apply): the trader's goods
    released with no check, no control and no office."""
    lodged = _lodged_by_the_trader(hub, 1, Stage.RELEASED_AFTER_CONTROL, 0)
    answered = hub.answer(lodged, "dgal", Verdict.NOT_FOUND) if requests(hub, lodged) else lodged
    assert (REFERENCE, 1, Outcome.RELEASE) not in hub.decisions(lodged) + hub.decisions(answered)
    _refused_as_a_customs_stage(hub, lodged)
    assert hub.cases == {}
