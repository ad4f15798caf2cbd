"""A trader does not release its goods held for a control by lodging them again.

Stop 56 (gun_hub/domain/trader_stages.py) refuses a trader's RELEASED_AFTER_CONTROL
through the gateway: "Believed from a trader, [it] released its goods held for a
control". The same release is one LODGED amendment away. A version held for a control is
ended only by the office's act (contract section 4: RELEASED_AFTER_CONTROL "sent by the
clearance system when an office releases goods it had held for a control"; "A control
refused by the office is sent as CANCELLED"); a trader's next LODGED version restates
the reservations and is decided from scratch, risk targeting included. Random sampling
draws per version (risk.py ``sampling_draw(seed, reference, version, authority)``), so a
trader whose version 1 was drawn for a documentary check lodges version 2, the same
goods, through the gateway, and is released with a 98 % chance (DGAL's 2 % rate), or
after a few tries: the control the draw asked for never happens, and version 1's
reservation is handed to version 2's release and written off.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gun_contract.dead_letter import (
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    SourcePosition,
    header_value,
)
from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.case import Case
from gun_hub.domain.risk import RiskRules, Sampling, sampling_draw
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.pipeline.intake import AMENDMENT_NOT_PERMITTED
from tests.builders import declaration_xml
from tests.unit.test_pipeline import SOURCE, Hub

TRADER = "FR12345678901234"
REFERENCE = f"{TRADER}-INV-0001"  # the trader's own namespace: the gateway lodges it


def at(offset: int) -> SourcePosition:
    return replace(SOURCE, key=REFERENCE.encode(), offset=SOURCE.offset + offset)


def lodged_by_the_trader(
    hub: Hub, version: int, offset: int, stage: Stage = Stage.LODGED
) -> Effects:
    """The trader's ``version`` of REFERENCE, sealed by the gateway, read at ``offset``."""
    xml = declaration_xml(reference=REFERENCE, version=version, stage=stage, declarant=TRADER)
    return hub.intake.handle(hub.sealed_by_gateway(xml), at(offset))


def sampled_on_version_1_only() -> RiskRules:
    """DGAL's sampling with a seed and rate that draw version 1 for a control and not
    version 2 (as the configured 2 % does for 98 of 100 second versions)."""
    for n in range(1000):
        seed = f"seed-{n}"
        first = sampling_draw(seed, REFERENCE, 1, "dgal")
        second = sampling_draw(seed, REFERENCE, 2, "dgal")
        if first < 0.02 and second >= 0.02:
            return RiskRules(sampling=Sampling(seed=seed, rates={"dgal": 0.02}))
    raise AssertionError("no seed found")  # pragma: no cover


def test_a_sampled_control_is_not_escaped_by_an_amendment_through_the_gateway(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = Hub(routing_table, keys_dir, risk_rules=sampled_on_version_1_only())

    first = lodged_by_the_trader(hub, 1, 0)
    held = hub.answer(first, "dgal", Verdict.VALID)
    assert hub.decisions(held) == [(REFERENCE, 1, Outcome.CONTROL_DOCUMENTARY)]

    # The same goods, lodged again by the trader as version 2 (nothing else changed).
    again = lodged_by_the_trader(hub, 2, 1)
    assert again.to(hub.topics.requests("dgal")) == [], "version 2 was asked of DGAL"
    assert hub.decisions(again) == []
    [dead] = again.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == AMENDMENT_NOT_PERMITTED
    [ignored] = hub.statuses(again)
    assert (ignored.version, ignored.kind) == (2, StatusKind.IGNORED_STALE_VERSION)
    assert ignored.detail.startswith(f"{AMENDMENT_NOT_PERMITTED}: version 1 was decided ")
    assert Case.from_bytes(hub.cases[REFERENCE.encode()]).version == 1  # still controlled


@pytest.mark.parametrize("stage", [Stage.LODGED, Stage.CANCELLED])
def test_a_released_declaration_is_not_the_traders_to_amend_or_withdraw(
    routing_table: RoutingTable, keys_dir: Path, stage: Stage
) -> None:
    hub = Hub(routing_table, keys_dir)
    released = hub.answer(lodged_by_the_trader(hub, 1, 0), "dgal", Verdict.VALID)
    assert hub.decisions(released) == [(REFERENCE, 1, Outcome.RELEASE)]
    refused = lodged_by_the_trader(hub, 2, 1, stage)
    [dead] = refused.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == AMENDMENT_NOT_PERMITTED
    assert "version 1 was released" in (header_value(dead.headers, HEADER_ERROR_REASON) or "")
    assert hub.decisions(refused) == []
    assert refused.to(hub.topics.requests("dgal")) == []


def test_an_undecided_declaration_is_the_traders_to_amend(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """Before customs acted, a trader's amendment supersedes its version as ever."""
    hub = Hub(routing_table, keys_dir)

    lodged_by_the_trader(hub, 1, 0)
    second = lodged_by_the_trader(hub, 2, 1)
    assert second.to(hub.topics.dlq) == []
    assert hub.decisions(hub.answer(second, "dgal", Verdict.VALID)) == [
        (REFERENCE, 2, Outcome.RELEASE)
    ]
