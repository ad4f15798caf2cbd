"""A trader does not revive, through the gateway, a declaration the office ended after
its control.

8b4ad74 refuses a trader's later version of a declaration customs decided for a control
or released (AMENDMENT_NOT_PERMITTED): "decided from scratch, a random draw included, it
escaped the control drawn for the version before". The check reads the outcome of the
case's *latest* version only (``trader_stages.customs_acted_on``: CONTROL_* or RELEASE).
When the office ends the control by refusing the goods — contract section 4: "A control
refused by the office is sent as CANCELLED", by the clearance system — the case's
decision is CANCELLED, which is not in ``ACTED_ON``: the trader's next LODGED version,
through the gateway, the same goods, is taken, asked of DGAL afresh and decided from
scratch (a release when the draw spares it). The office's refusal after its control is
escaped exactly as the control was before 8b4ad74 (likewise an INVALIDATED by the
office, a stage only customs sets, reopens the declaration to the trader).
"""

from __future__ import annotations

from pathlib import Path

from gun_contract.dead_letter import HEADER_ERROR_KIND, header_value
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.intake import AMENDMENT_NOT_PERMITTED
from tests.builders import declaration_xml
from tests.unit.test_a_trader_does_not_release_goods_held_for_a_control_by_lodging_them_again import (  # noqa: E501
    REFERENCE,
    TRADER,
    at,
    lodged_by_the_trader,
    sampled_on_version_1_only,
)
from tests.unit.test_pipeline import Hub


def test_the_offices_cancellation_after_a_control_is_not_undone_by_a_traders_next_version(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = Hub(routing_table, keys_dir, risk_rules=sampled_on_version_1_only())

    first = lodged_by_the_trader(hub, 1, 0)
    held = hub.answer(first, "dgal", Verdict.VALID)
    assert hub.decisions(held) == [(REFERENCE, 1, Outcome.CONTROL_DOCUMENTARY)]

    # The office refuses the goods at the control: CANCELLED, sent by the clearance system.
    cancelled = hub.intake.handle(
        declaration_xml(reference=REFERENCE, version=2, stage=Stage.CANCELLED, declarant=TRADER),
        at(1),
    )
    deleted = hub.answer(cancelled, "dgal", Verdict.VALID)
    assert [outcome for *_, outcome in hub.decisions(cancelled) + hub.decisions(deleted)] == [
        Outcome.CANCELLED
    ]

    # The same goods lodged again by the trader, through the gateway.
    again = lodged_by_the_trader(hub, 3, 2)
    kinds = [header_value(d.headers, HEADER_ERROR_KIND) for d in again.to(hub.topics.dlq)]
    assert kinds == [AMENDMENT_NOT_PERMITTED]
    assert again.to(hub.topics.requests("dgal")) == [], (
        "the trader's version 3 of a declaration the office refused after its control was "
        f"taken and asked of DGAL afresh (dead letters: {kinds}); decided: "
        f"{hub.decisions(hub.answer(again, 'dgal', Verdict.VALID))}"
    )
