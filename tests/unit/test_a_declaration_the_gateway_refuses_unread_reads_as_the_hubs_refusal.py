"""A declaration the gateway refuses unread reads as the hub's refusal.

Issue 13, item 2 (tests/unit/test_gateway_checks_like_the_hub.py): the gateway runs the
hub's codec and limits and refuses what the hub would refuse "for the same reason", so
the trader's 400 (or its file drop's receipt) says what the operator reads in the hub's
dead letter. db8d002 heads the hub's reason of every declaration refused before its
reference could be read with ``NOTHING_DECIDED`` ("its reference could not be read, so
nothing was decided: "), which the gateway's refusal does not carry: for an empty
message, a UTF-16 file, JSON, an external DTD ... the two texts part (17 of that test's
hostile cases fail since). Here the plainest: an empty message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gun_contract.dead_letter import HEADER_ERROR_KIND, HEADER_ERROR_REASON, header_value
from gun_contract.security.entitlements import GATEWAY_PARTY
from gun_hub.domain.routing import RoutingTable
from gun_hub.gateway.lodging import LodgementRefused, Lodger
from tests.gateway_fixtures import RecordingSender, gateway_with
from tests.unit.test_pipeline import Hub
from tests.unit.test_sealed_declarations import at


async def test_an_empty_message_is_refused_by_the_gateway_in_the_hubs_words(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = Hub(routing_table, keys_dir)  # local development: plain XML
    [dead] = hub.intake.handle(b"", at(0)).to(hub.topics.dlq)
    sealed = Hub(routing_table, keys_dir).sealed_only()
    sender = RecordingSender(sealed.envelope(GATEWAY_PARTY), sealed.topics.declarations)
    gateway = gateway_with(sender)
    await gateway.start()
    try:
        with pytest.raises(LodgementRefused) as refused:
            await gateway.lodge(b"", Lodger("this test"), channel="test")
    finally:
        await gateway.stop()
    assert refused.value.kind == header_value(dead.headers, HEADER_ERROR_KIND)
    assert refused.value.reason == header_value(dead.headers, HEADER_ERROR_REASON), (
        f"the trader reads {refused.value.reason!r}, the operator "
        f"{header_value(dead.headers, HEADER_ERROR_REASON)!r}"
    )
