"""A trader's version refused AMENDMENT_NOT_PERMITTED (customs decided the declaration for
a control or released it: UCC articles 173, 174) is not offered for a redrive.

The dead letter is the intake's, about ``gun.declarations``, class permanent: the desk's
rule (``pipeline/redrive.py``, ``not_redrivable``) offers it ("redrive possible") as it
offered XML refused as it is before review stop 39-O. Redriven, the intake reads the
version again against the case *as it is now*, not as it was when it was refused:

* the case unchanged, it is refused again: one more dead letter, one more
  ``IGNORED_STALE_VERSION`` shown to the trader, ``GunHubDeadLetters`` fired, for a redrive
  that can do nothing;
* the case retired meanwhile (a released case holds no reservation and leaves the cases
  table after ``case_retention_s``, 3 days, well within the 7 days the original stays in
  the log; its marker keeps no decision), the version the trader was told was ignored is
  taken as new and decided: a trader's CANCELLED of released goods becomes a CANCELLED
  decision at the clearance system, on an operator's click.

What is at fault is the version as it is (customs has acted), never a cause an operator can
fix: the desk should say so, as for the XML refused as it is.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gun_contract.dead_letter import HEADER_ERROR_KIND, HEADER_ERROR_REASON, header_value
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.intake import AMENDMENT_NOT_PERMITTED
from gun_hub.pipeline.redrive import not_redrivable
from tests.builders import declaration_xml
from tests.unit.test_a_trader_does_not_release_goods_held_for_a_control_by_lodging_them_again import (  # noqa: E501
    REFERENCE,
    TRADER,
    at,
)
from tests.unit.test_pipeline import Hub


@pytest.mark.parametrize("stage", [Stage.LODGED, Stage.CANCELLED])
def test_a_version_customs_no_longer_lets_its_trader_lodge_is_not_offered_for_a_redrive(
    routing_table: RoutingTable, keys_dir: Path, stage: Stage
) -> None:
    hub = Hub(routing_table, keys_dir)

    def through_the_gateway(version: int, stage: Stage) -> bytes:
        xml = declaration_xml(reference=REFERENCE, version=version, stage=stage, declarant=TRADER)
        return hub.sealed_by_gateway(xml)

    lodged = hub.intake.handle(through_the_gateway(1, Stage.LODGED), at(0))
    released = hub.answer(lodged, "dgal", Verdict.VALID)
    assert hub.decisions(released) == [(REFERENCE, 1, Outcome.RELEASE)]
    refused = hub.intake.handle(through_the_gateway(2, stage), at(1))
    [dead] = refused.to(hub.topics.dlq)
    kind = header_value(dead.headers, HEADER_ERROR_KIND)
    reason = header_value(dead.headers, HEADER_ERROR_REASON) or ""
    assert kind == AMENDMENT_NOT_PERMITTED

    why_not = not_redrivable("hub.intake", hub.topics.declarations, hub.topics, kind, reason)
    assert why_not is not None, (
        "the desk offers to redrive a version customs no longer lets its trader lodge: "
        "refused again at best, decided once the case has retired"
    )
