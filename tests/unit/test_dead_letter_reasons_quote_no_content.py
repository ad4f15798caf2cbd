"""A dead letter's reason says where and how a sealed message is invalid, never what it
holds (gun_contract/validation.py).

The reason travels in a clear header of ``gun.dlq``, which every officer reads in the
dead-letter desk; the message itself stays sealed in the dead letter. Found by review in
stop 30 (this test written before the fix): pydantic's own error text quotes the input,
so a war-material request that opened but did not validate put its licence number in the
clear, for officers who never see a DGA licence (docs/security.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from aiokafka.structs import ConsumerRecord

from adapters.base.runner import AdapterRunner
from gun_contract.consume import unhandled_dead_letter
from gun_contract.dead_letter import (
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    SourcePosition,
    header_value,
)
from gun_contract.effects import Effects
from gun_contract.envelope import ContentType
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import SecuritySettings, Settings
from gun_hub.domain.routing import RoutingTable
from gun_hub.runtime.app import _unhandled
from tests.adapter_fixtures import PartnerAnsweringByRule, adapter_runner
from tests.builders import answer_to
from tests.conftest import envelope_of
from tests.unit.test_pipeline import Hub
from tests.unit.test_state_pending_queue import LICENCE, TOPICS, dga


def _without_a_code(payload: bytes) -> bytes:
    """A request with its document's code left out: it opens, it does not validate, and
    the document around the missing field holds the licence number."""
    request = json.loads(payload)
    del request["items"][0]["documents"][0]["code"]
    return json.dumps(request).encode()


def _licence_as_goods_item(payload: bytes) -> bytes:
    """An answer whose goods item number is the licence number (fields swapped by an
    adapter of another release): invalid, and pydantic quotes the value."""
    answer = json.loads(payload)
    answer["answers"][0]["goods_item"] = answer["answers"][0]["reference"]
    return json.dumps(answer).encode()


def _reason(outbox: Effects, dlq: str) -> tuple[str | None, str]:
    [letter] = outbox.to(dlq)
    return header_value(letter.headers, HEADER_ERROR_KIND), str(
        header_value(letter.headers, HEADER_ERROR_REASON)
    )


def _dga_adapter_and_request(
    tmp_path: Path, partner: PartnerAnsweringByRule, altered: Callable[[bytes], bytes]
) -> tuple[AdapterRunner, ConsumerRecord[bytes, bytes]]:
    """The DGA adapter over ``partner``, and a reservation request the hub sealed to it
    (its JSON ``altered`` first), read at offset 7."""
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    settings = Settings(security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / "state"))
    runner = adapter_runner("dga", settings, TOPICS, partner)
    request = dga(Operation.RESERVE)
    sealed = envelope_of(HUB_PARTY, TOPICS, keys).seal(
        altered(request.model_dump_json().encode()),
        recipient="dga",
        topic=TOPICS.requests("dga"),
        content_type=ContentType.JSON,
    )
    record = ConsumerRecord(
        TOPICS.requests("dga"), 0, 7, 0, 0, request.reference.encode(), sealed, None, 0, 0, []
    )
    return runner, record


async def test_an_invalid_request_s_dead_letter_names_the_field_not_the_licence(
    tmp_path: Path,
) -> None:
    runner, record = _dga_adapter_and_request(tmp_path, PartnerAnsweringByRule(), _without_a_code)
    outbox = Effects()
    await runner._handle_survivably(record, outbox)
    kind, reason = _reason(outbox, TOPICS.dlq)
    assert kind == "REQUEST_INVALID"
    assert "code" in reason  # where it is invalid
    assert LICENCE not in reason
    assert LICENCE[:10] not in reason


def test_an_invalid_answer_s_dead_letter_names_the_field_not_the_document(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    answer = answer_to(dga(Operation.RESERVE), authority="dga")
    sealed = envelope_of("dga", hub.topics, keys_dir).seal(
        _licence_as_goods_item(answer.model_dump_json().encode()),
        recipient=HUB_PARTY,
        topic=hub.topics.responses("dga"),
        content_type=ContentType.JSON,
    )
    outbox = hub.correlation.handle(
        sealed, SourcePosition(hub.topics.responses("dga"), 0, 0, answer.reference.encode())
    )
    kind, reason = _reason(outbox, hub.topics.dlq)
    assert kind == "RESPONSE_INVALID"
    assert "goods_item" in reason, reason
    assert LICENCE[:10] not in reason


class _PartnerThatTrips(PartnerAnsweringByRule):
    """A partner client with a bug that puts what it was handling in its error."""

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        raise ValueError(f"cannot handle {request.items[0].documents[0].reference}")


def _trip() -> None:
    raise ValueError(f"cannot handle {LICENCE}")


def _raised_with_the_licence() -> ValueError:
    try:
        _trip()
    except ValueError as error:
        return error
    raise AssertionError("_trip raises")


async def test_an_adapter_s_unhandled_error_names_its_type_and_place_not_its_text(
    tmp_path: Path,
) -> None:
    """An error nobody foresaw says whatever its author put in it, often the value at
    hand: the reason names the error's type and where it was raised; its text goes to the
    worker's log only (found by review in stop 30, this test written before the fix)."""
    runner, record = _dga_adapter_and_request(tmp_path, _PartnerThatTrips(), lambda p: p)
    outbox = Effects()
    await runner._handle_survivably(record, outbox)
    kind, reason = _reason(outbox, TOPICS.dlq)
    assert kind == "UNHANDLED_ERROR"
    assert reason.startswith("ValueError raised at "), reason
    assert "test_dead_letter_reasons_quote_no_content:" in reason  # where
    assert LICENCE[:10] not in reason


def test_the_hub_s_unhandled_error_names_its_type_and_place_not_its_text() -> None:
    outbox = _unhandled(
        "gun.dlq",
        b"sealed",
        SourcePosition("gun.responses.dga", 0, 3),
        "correlation",
        _raised_with_the_licence(),
    )
    kind, reason = _reason(outbox, "gun.dlq")
    assert kind == "UNHANDLED_ERROR"
    assert reason.startswith("ValueError raised at "), reason
    assert LICENCE[:10] not in reason


def test_a_consumer_s_unhandled_error_names_its_type_and_place_not_its_text() -> None:
    record = ConsumerRecord("gun.decisions", 0, 3, 0, 0, b"k", b"sealed", None, 0, 0, [])
    letter = unhandled_dead_letter("gun.dlq", "clearance", record, _raised_with_the_licence())
    reason = str(header_value(letter.headers, HEADER_ERROR_REASON))
    assert reason.startswith("ValueError raised at "), reason
    assert LICENCE[:10] not in reason
