"""A sealed message is read only as the content type its signed header names (contract
section 5: ``cty`` is application/xml or application/json, naming the payload).

The hub refused a declaration sealed as application/json, but acted on an answer sealed
as application/xml that carried JSON (outside acceptance test, stop 38, D4); the adapters
had the same gap for requests. Each reader now holds its input to its one type.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord

from adapters.base.runner import REQUEST_NOT_JSON, AdapterRunner
from gun_contract.dead_letter import (
    HEADER_ERROR_CLASS,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    SourcePosition,
    header_value,
)
from gun_contract.effects import Effects
from gun_contract.envelope import ContentType
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import SecuritySettings, Settings
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.audit_keeper import SECURITY_REJECTION_KINDS
from gun_hub.pipeline.correlation import NOT_JSON
from tests.adapter_fixtures import PartnerAnsweringByRule, adapter_runner
from tests.builders import answer_to, declaration_xml
from tests.conftest import envelope_of
from tests.unit.test_pipeline import SOURCE, Hub
from tests.unit.test_state_pending_queue import TOPICS, dga


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


def test_an_answer_sealed_as_xml_is_refused_whatever_it_carries(hub: Hub) -> None:
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    [record] = sent.to(hub.topics.requests("dgal"))
    request = AuthorityRequest.model_validate_json(
        envelope_of("dgal", hub.topics, hub.keys_dir).open(record.value, topic=record.topic).payload
    )
    responses = hub.topics.responses("dgal")
    sealed = envelope_of("dgal", hub.topics, hub.keys_dir).seal(
        answer_to(request, Verdict.NOT_FOUND).model_dump_json().encode(),  # JSON, as ever
        recipient=HUB_PARTY,
        topic=responses,
        content_type=ContentType.XML,
    )
    out = hub.correlation.handle(
        sealed, SourcePosition(responses, 0, 1, request.reference.encode())
    )

    [dead] = out.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == NOT_JSON
    assert header_value(dead.headers, HEADER_ERROR_CLASS) == "security"
    assert NOT_JSON in SECURITY_REJECTION_KINDS  # audited like the other forgeries
    assert "content type is application/xml" in (
        header_value(dead.headers, HEADER_ERROR_REASON) or ""
    )
    assert hub.decisions(out) == []
    assert out.to(hub.topics.status) == []
    # The case still waits: the answer sealed as JSON decides it.
    assert hub.decisions(hub.respond(answer_to(request, Verdict.VALID))) == [
        (request.reference, 1, Outcome.RELEASE)
    ]


def dga_adapter(tmp_path: Path) -> tuple[AdapterRunner, PartnerAnsweringByRule, Path]:
    """The DGA adapter's runner before a stand-in partner system, with keys of its own."""
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    settings = Settings(security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / "state"))
    partner = PartnerAnsweringByRule()
    runner = adapter_runner("dga", settings, TOPICS, partner)
    return runner, partner, keys


def sealed_by_the_hub(request: AuthorityRequest, keys: Path, content_type: ContentType) -> bytes:
    """``request`` as the hub seals it to DGA, saying ``content_type``."""
    return envelope_of(HUB_PARTY, TOPICS, keys).seal(
        request.model_dump_json().encode(),
        recipient="dga",
        topic=TOPICS.requests("dga"),
        content_type=content_type,
    )


async def test_a_request_sealed_as_xml_is_refused_at_the_adapter(tmp_path: Path) -> None:
    runner, partner, keys = dga_adapter(tmp_path)
    request = dga(Operation.RESERVE)
    sealed = sealed_by_the_hub(request, keys, ContentType.XML)
    record = ConsumerRecord(
        TOPICS.requests("dga"), 0, 7, 0, 0, request.reference.encode(), sealed, None, 0, 0, []
    )
    outbox = Effects()
    await runner._handle_survivably(record, outbox)

    [dead] = outbox.to(TOPICS.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == REQUEST_NOT_JSON
    assert REQUEST_NOT_JSON in SECURITY_REJECTION_KINDS
    assert partner.asked == []
    assert outbox.to(TOPICS.responses("dga")) == []
