"""Once customs acted, a trader's later version is refused on any layout of partitions.

The hub decides a declaration whatever partition each version arrives on (contract
section 2). The trader's version 1 (gateway) is decided for a control; the clearance
system sends version 2, an amendment, refused on its documents; the trader's version 3
through the gateway is refused AMENDMENT_NOT_PERMITTED: the declaration has been the
office's since the control (UCC articles 173, 174), whatever came after it.

A review of stop 56 found the two layouts disagreeing: on one partition version 3 was
judged over version 2's REFUSE and decided, while with version 2 read on another
partition it was refused. Customs' act is carried from version to version now
(``Case.customs_acted``): refused on both.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from gun_contract.dead_letter import HEADER_ERROR_KIND, SourcePosition, header_value
from gun_contract.effects import Effects
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.case import Case
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.intake import AMENDMENT_NOT_PERMITTED
from gun_hub.pipeline.takeover import Takeover
from tests.builders import declaration_xml
from tests.unit.test_a_trader_does_not_release_goods_held_for_a_control_by_lodging_them_again import (  # noqa: E501
    REFERENCE,
    TRADER,
    sampled_on_version_1_only,
)
from tests.unit.test_pipeline import SOURCE, Hub


def at(offset: int, partition: int) -> SourcePosition:
    return replace(SOURCE, partition=partition, offset=offset, key=REFERENCE.encode())


def through_the_gateway(hub: Hub, version: int, offset: int, partition: int) -> Effects:
    xml = declaration_xml(reference=REFERENCE, version=version, declarant=TRADER)
    sealed = hub.sealed_by_gateway(xml)
    return hub.intake.handle(sealed, at(offset, partition))


def told(to: Hub, outbox: Effects, partition: int) -> None:
    handle = to._delivered(Takeover(to.context, to.cases).handle)
    notices = [
        r.value
        for r in outbox.to(to.topics.deadlines)
        if r.partition == partition and r.key == REFERENCE.encode()
    ]
    assert notices, "no notice to the case's partition"
    for offset, value in enumerate(notices):
        handle(REFERENCE, value, SourcePosition("gun.hub.deadlines", partition, offset))


def test_a_correction_after_a_control_and_a_version_refused_on_another_partition_is_refused(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    first = Hub(routing_table, keys_dir, risk_rules=sampled_on_version_1_only())
    other = Hub(routing_table, keys_dir, risk_rules=sampled_on_version_1_only())

    held = first.answer(through_the_gateway(first, 1, 0, 0), "dgal", Verdict.VALID)
    assert first.decisions(held) == [(REFERENCE, 1, Outcome.CONTROL_DOCUMENTARY)]

    # The clearance system's version 2, on partition 1: refused on its documents.
    lodged = other.intake.handle(
        declaration_xml(reference=REFERENCE, version=2, declarant=TRADER), at(0, 1)
    )
    refused = other.answer(lodged, "dgal", Verdict.NOT_FOUND)
    assert other.decisions(refused) == [(REFERENCE, 2, Outcome.REFUSE)]
    told(first, lodged, 0)
    assert Case.from_bytes(first.cases[REFERENCE.encode()]).taken_over_by == 2

    # The trader corrects it: version 3 through the gateway, partition 0.
    corrected = through_the_gateway(first, 3, 1, 0)
    kinds = [header_value(r.headers, HEADER_ERROR_KIND) for r in corrected.to(first.topics.dlq)]
    assert kinds == [AMENDMENT_NOT_PERMITTED]
    assert corrected.to(first.topics.requests("dgal")) == []


def test_on_one_partition_the_same_correction_is_refused(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """The reference behaviour (passes today): the same versions read on one partition."""
    hub = Hub(routing_table, keys_dir, risk_rules=sampled_on_version_1_only())
    held = hub.answer(through_the_gateway(hub, 1, 0, 0), "dgal", Verdict.VALID)
    assert hub.decisions(held) == [(REFERENCE, 1, Outcome.CONTROL_DOCUMENTARY)]
    lodged = hub.intake.handle(
        declaration_xml(reference=REFERENCE, version=2, declarant=TRADER), at(1, 0)
    )
    assert hub.decisions(hub.answer(lodged, "dgal", Verdict.NOT_FOUND)) == [
        (REFERENCE, 2, Outcome.REFUSE)
    ]
    corrected = through_the_gateway(hub, 3, 2, 0)
    kinds = [header_value(d.headers, HEADER_ERROR_KIND) for d in corrected.to(hub.topics.dlq)]
    assert kinds == [AMENDMENT_NOT_PERMITTED]
    assert corrected.to(hub.topics.requests("dgal")) == []
