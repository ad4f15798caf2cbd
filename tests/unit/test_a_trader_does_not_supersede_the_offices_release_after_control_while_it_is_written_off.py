"""A trader's version through the gateway does not supersede the office's release after
control while its write-offs are under way.

8b4ad74: "The office's own act comes through the clearance system"; a trader's later
version of a declaration customs decided for a control or released is refused
AMENDMENT_NOT_PERMITTED. The check reads the known case's *decision*
(``trader_stages.customs_acted_on``). The office's RELEASED_AFTER_CONTROL version is
decided only once the partners answer its write-offs: until then the known case is the
office's version, undecided, and the trader's next LODGED version through the gateway is
taken. It supersedes the office's act — the clearance system is sent REFUSE, SUPERSEDED
for the office's own release — and is decided from scratch, a random draw included.
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


def test_the_offices_release_after_control_is_not_superseded_by_the_traders_next_version(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = Hub(routing_table, keys_dir, risk_rules=sampled_on_version_1_only())

    held = hub.answer(lodged_by_the_trader(hub, 1, 0), "dgal", Verdict.VALID)
    assert hub.decisions(held) == [(REFERENCE, 1, Outcome.CONTROL_DOCUMENTARY)]

    # The office releases the goods after its control: its write-offs sent, not answered.
    released = hub.intake.handle(
        declaration_xml(
            reference=REFERENCE, version=2, stage=Stage.RELEASED_AFTER_CONTROL, declarant=TRADER
        ),
        at(1),
    )
    assert released.to(hub.topics.requests("dgal")), "no write-off asked"
    assert hub.decisions(released) == []  # waits for the partner's answer

    again = lodged_by_the_trader(hub, 3, 2)
    kinds = [header_value(d.headers, HEADER_ERROR_KIND) for d in again.to(hub.topics.dlq)]
    assert kinds == [AMENDMENT_NOT_PERMITTED]
    assert hub.decisions(again) == [], (
        "the trader's version 3 was taken over the office's release after control: "
        f"decisions {hub.decisions(again)}, dead letters {kinds}"
    )
