"""The gateway's size check is ``GUN_HUB_HUB__MAX_DECLARATION_BYTES`` (any positive
number: gun_contract/settings.py), but what it publishes is the declaration sealed, some
16/9 of it (gun_contract/limits.py), on a topic and through a producer that take 8 MiB
(``max_request_size``, gun_contract/kafka/client.py). With the limit raised past about
4.6 MB (4,711,680 bytes of payload: ``max_sealed_payload_bytes``), a declaration that
passes every check cannot be published: aiokafka's ``send`` raises
``MessageSizeTooLargeError`` at once, a ``KafkaError``, which the gateway takes for a
broker that did not confirm in time (gun_hub/gateway/lodging.py, ``_lodge``:
``PublishFailed``). The file drop then keeps the file in processing/ "to be lodged again"
and seals it again at every pass, for ever, with no receipt; over HTTP the trader is
answered 503 "send it again", for ever. A refusal that will never change must be said as
one: rejected with a receipt, its kind and reason.

The sender below is tests/gateway_fixtures.py's with the size check aiokafka's producer
makes before anything reaches a broker (aiokafka/producer/producer.py, ``send``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError

from gun_contract.security.entitlements import GATEWAY_PARTY
from gun_contract.topics import TOPIC_MAX_MESSAGE_BYTES, topic_registry
from gun_hub.gateway.file_drop import RECEIPT_SUFFIX, DropFolder, DropWatcher
from gun_hub.gateway.lodging import Gateway, Lodger
from tests.builders import declaration_xml
from tests.conftest import envelope_of
from tests.gateway_fixtures import RecordingSender, gateway_with

TOPICS = topic_registry("gun", ("dgal",))
RAISED_LIMIT = 6 * 1024 * 1024  # what an operator may set GUN_HUB_HUB__MAX_DECLARATION_BYTES to
REFERENCE = "FR12345678901234-FILE-0000000601"


class SizeCheckingSender(RecordingSender):
    """Refuses what aiokafka's producer refuses before sending: a record over
    ``max_request_size`` (the gateway's producer: TOPIC_MAX_MESSAGE_BYTES)."""

    async def publish(self, value: bytes, reference: str) -> asyncio.Future[Any]:
        if len(value) > TOPIC_MAX_MESSAGE_BYTES:
            raise MessageSizeTooLargeError(
                f"The message is {len(value)} bytes when serialized which is larger than "
                "the maximum request size you have configured with the max_request_size "
                "configuration"
            )
        return await super().publish(value, reference)


@pytest.fixture
def folder(tmp_path: Path) -> DropFolder:
    folder = DropFolder(tmp_path / "drop")
    folder.root.mkdir()
    folder.prepare()
    return folder


@pytest.fixture
def sender(keys_dir: Path) -> SizeCheckingSender:
    return SizeCheckingSender(envelope_of(GATEWAY_PARTY, TOPICS, keys_dir), TOPICS.declarations)


@pytest.fixture
async def gateway(sender: SizeCheckingSender) -> Any:
    gateway = gateway_with(sender, max_bytes=RAISED_LIMIT)
    await gateway.start()
    yield gateway
    await gateway.stop()


def five_mib_declaration() -> bytes:
    """Within the raised limit, valid: the hub's checks take it."""
    small = declaration_xml(reference=REFERENCE)
    return small.replace(b"</Declaration>", b" " * (5 * 1024 * 1024) + b"</Declaration>")


async def test_a_file_too_large_to_travel_sealed_is_rejected_with_a_receipt(
    folder: DropFolder, gateway: Gateway, sender: SizeCheckingSender
) -> None:
    data = five_mib_declaration()
    assert len(data) <= RAISED_LIMIT
    (folder.root / "big.xml").write_bytes(data)
    running = DropWatcher(
        folder, gateway, Lodger("this drop folder"), topic=TOPICS.declarations, settle_s=0
    )
    for _ in range(3):
        await running.pass_once()
    assert sender.published == []
    assert sorted(p.name for p in folder.processing.iterdir()) == [], (
        "kept in processing/ and sealed again at every pass, for ever, with no receipt"
    )
    [receipt] = [json.loads(p.read_text()) for p in folder.rejected.glob(f"*{RECEIPT_SUFFIX}")]
    assert receipt["result"] == "rejected"
    assert receipt["reference"] == REFERENCE
