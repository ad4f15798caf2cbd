"""Issue 13, item 2: the intake gateway refuses what the hub would refuse, for the same
reason, before publishing anything; what it lodges the hub decides like any declaration.

The gateway runs the hub's own codec and limits (gun_hub/gateway/lodging.py); these tests
drive the hub's intake and the gateway with the same bytes and compare their answers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gun_contract.dead_letter import HEADER_ERROR_KIND, HEADER_ERROR_REASON, header_value
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.security.entitlements import GATEWAY_PARTY
from gun_hub.domain.routing import RoutingTable
from gun_hub.gateway.lodging import (
    DECLARANT_MISMATCH,
    OVERSIZED,
    LodgementRefused,
    Lodger,
    PublishFailed,
)
from gun_hub.pipeline.intake import NOTHING_DECIDED
from tests.builders import EORI, declaration_xml
from tests.gateway_fixtures import RecordingSender, gateway_with
from tests.hostile_corpus import HostileCase, hostile_cases
from tests.unit.test_pipeline import Hub
from tests.unit.test_sealed_declarations import at

CASES = hostile_cases("26FRGATEWAY")
ANY = Lodger("this test")
THE_TRADER = Lodger("the portal token's trader", frozenset({EORI}))


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    """The hub's intake as in production: sealed declarations only."""
    return Hub(routing_table, keys_dir).sealed_only()


@pytest.fixture
def sender(hub: Hub) -> RecordingSender:
    """Seals with the gateway party's real keys, for the hub's declarations topic."""
    return RecordingSender(hub.envelope(GATEWAY_PARTY), hub.topics.declarations)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_what_the_hub_refuses_the_gateway_refuses_with_the_same_kind_and_reason(
    case: HostileCase, hub: Hub, sender: RecordingSender
) -> None:
    plain = Hub(hub.intake._ctx.routing, hub.keys_dir)  # local development: plain XML
    [dead] = plain.intake.handle(case.data, at(0)).to(plain.topics.dlq)
    gateway = gateway_with(sender)
    await gateway.start()
    try:
        with pytest.raises(LodgementRefused) as refused:
            await gateway.lodge(case.data, ANY, channel="test")
    finally:
        await gateway.stop()
    assert refused.value.kind == header_value(dead.headers, HEADER_ERROR_KIND)
    # The hub's dead letter of a declaration over the limit says, for operations, when
    # nothing was decided (its reference unread: redrive.py); the reason is the same.
    hubs = header_value(dead.headers, HEADER_ERROR_REASON) or ""
    assert refused.value.reason == hubs.removesuffix(f" {NOTHING_DECIDED}")
    assert refused.value.status == (413 if refused.value.kind == OVERSIZED else 400)
    assert sender.published == [], "nothing refused is published"


async def test_what_the_gateway_lodges_is_sealed_by_it_and_decided_by_the_hub(
    hub: Hub, sender: RecordingSender
) -> None:
    gateway = gateway_with(sender)
    await gateway.start()
    try:
        lodged = await gateway.lodge(
            declaration_xml(reference=f"{EORI}-INV-1"), THE_TRADER, channel="test"
        )
    finally:
        await gateway.stop()
    [(key, value)] = sender.published
    assert (lodged.reference, lodged.version, lodged.declarant) == (key, 1, EORI)
    assert hub.envelope("hub").open(value, topic=hub.topics.declarations).sender == GATEWAY_PARTY
    # Keyed by its reference, as the gateway publishes it.
    sent = hub.intake.handle(value, dataclasses.replace(at(0), key=key.encode()))
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.VALID)) == [(key, 1, Outcome.RELEASE)]


async def test_a_trader_may_not_lodge_a_declaration_of_another_declarant(
    sender: RecordingSender,
) -> None:
    gateway = gateway_with(sender)
    await gateway.start()
    try:
        with pytest.raises(LodgementRefused) as refused:
            await gateway.lodge(
                declaration_xml(),
                Lodger("the portal token's trader", frozenset({"DE999999999"})),
                channel="test",
            )
    finally:
        await gateway.stop()
    assert (refused.value.kind, refused.value.status) == (DECLARANT_MISMATCH, 403)
    assert EORI in refused.value.reason
    assert "DE999999999" in refused.value.reason
    assert sender.published == []


async def test_a_declaration_over_the_hub_s_size_limit_is_refused_413(
    sender: RecordingSender,
) -> None:
    data = declaration_xml()
    gateway = gateway_with(sender, max_bytes=len(data) - 1)
    await gateway.start()
    try:
        with pytest.raises(LodgementRefused) as refused:
            await gateway.lodge(data, ANY, channel="test")
    finally:
        await gateway.stop()
    assert (refused.value.kind, refused.value.status) == (OVERSIZED, 413)
    assert f"{len(data)} bytes, over the limit of {len(data) - 1}" in refused.value.reason


async def test_a_lodgement_the_broker_does_not_confirm_fails_without_being_refused(
    sender: RecordingSender,
) -> None:
    sender.confirm = False
    gateway = gateway_with(sender)
    await gateway.start()
    try:
        with pytest.raises(PublishFailed, match=f"did not confirm {EORI}-INV-1 v1"):
            await gateway.lodge(declaration_xml(reference=f"{EORI}-INV-1"), ANY, channel="test")
    finally:
        await gateway.stop()
