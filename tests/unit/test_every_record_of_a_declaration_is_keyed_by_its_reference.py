"""Every record of a declaration is keyed by its reference, UTF-8 (contract section 2).

Found by the outside acceptance test of stop 38 (D2, D3): a declaration sealed by the
clearance system under another reference's key, a null key or a key that is not UTF-8 was
decided, silently, on whatever partition that key led to (where its other versions are
not); and an authority's answer with a null key was acted on, though one under another
non-null key was refused as a forgery. Each is now refused with a precise reason that
says what the key was without quoting its bytes; the declaration gets a REFUSE decision,
since its sender is verified and its reference readable.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY

from adapters.base import load_adapter
from adapters.base.runner import AdapterRunner
from gun_contract.dead_letter import (
    HEADER_ERROR_CLASS,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    HEADER_REFERENCE,
    SourcePosition,
    header_value,
)
from gun_contract.effects import Effects
from gun_contract.envelope import ContentType
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.record_keys import describe_key
from gun_contract.security.entitlements import CLEARANCE_PARTY, HUB_PARTY
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import SecuritySettings, Settings
from gun_hub.domain.reasons import CATALOGUE
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.intake import RECORD_KEY_NOT_REFERENCE, Intake
from gun_hub.xml.declaration_codec import DeclarationCodec
from tests.builders import answer_to, declaration_xml
from tests.conftest import envelope_of
from tests.unit.test_adapter_pending_replay import FakePartner
from tests.unit.test_pipeline import Hub
from tests.unit.test_state_pending_queue import TOPICS, dga

REF = "26FR000690I0000012"
ANOTHER = b"26FRSOMEBODYELSE01"
WRONG_KEYS = {
    "another reference": ANOTHER,
    "null": None,
    "empty": b"",
    "not UTF-8": b"\xff\xfe\x00",
}


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    """The pipeline with a production intake: sealed declarations only."""
    hub = Hub(routing_table, keys_dir)
    strict = Intake(hub.intake._ctx, DeclarationCodec(), hub.cases)
    hub.intake.handle = hub._delivered(strict.handle)  # type: ignore[method-assign]
    return hub


def _sealed(hub: Hub, xml: bytes) -> bytes:
    return hub.envelope(CLEARANCE_PARTY).seal(
        xml, recipient=HUB_PARTY, topic=hub.topics.declarations, content_type=ContentType.XML
    )


def _declarations(offset: int, key: bytes | None) -> SourcePosition:
    return SourcePosition("gun.declarations", 0, offset, key)


def _dead_letters(kind: str) -> float:
    return REGISTRY.get_sample_value("gun_hub_dead_letters_total", {"kind": kind}) or 0.0


@pytest.mark.parametrize("key", list(WRONG_KEYS.values()), ids=list(WRONG_KEYS))
def test_a_declaration_under_a_key_that_is_not_its_reference_is_refused(
    hub: Hub, key: bytes | None
) -> None:
    counted = _dead_letters(RECORD_KEY_NOT_REFERENCE)
    out = hub.intake.handle(_sealed(hub, declaration_xml(reference=REF)), _declarations(0, key))

    [dead] = out.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == RECORD_KEY_NOT_REFERENCE
    assert header_value(dead.headers, HEADER_REFERENCE) == REF
    reason = header_value(dead.headers, HEADER_ERROR_REASON) or ""
    assert describe_key(key) in reason  # what the key was
    assert f"must be its declaration reference, {len(REF)} bytes of UTF-8" in reason
    if key:
        assert key.decode("utf-8", "replace") not in reason  # never the key's bytes
    assert _dead_letters(RECORD_KEY_NOT_REFERENCE) == counted + 1
    # Refused, with a reason the trader's lookup explains; nothing asked of anyone.
    [decision] = hub.decision_objects(out)
    assert (decision.reference, decision.version, decision.outcome) == (REF, 1, Outcome.REFUSE)
    assert [r.code for r in decision.reasons] == [RECORD_KEY_NOT_REFERENCE]
    assert out.to(hub.topics.requests("dgal")) == []
    assert RECORD_KEY_NOT_REFERENCE in CATALOGUE


def test_a_key_is_described_by_its_length_and_the_hex_of_its_head_only() -> None:
    assert describe_key(None) == "no record key (null)"
    assert describe_key(b"") == "an empty record key"
    assert describe_key(b"\xff\xfe\x00") == "a record key of 3 bytes (not UTF-8, hex fffe00)"
    assert describe_key(ANOTHER) == "a record key of 18 bytes (UTF-8, hex 32364652534f4d45...)"


def test_a_declaration_keyed_by_its_reference_is_decided(hub: Hub) -> None:
    out = hub.intake.handle(
        _sealed(hub, declaration_xml(reference=REF)), _declarations(0, REF.encode())
    )
    assert out.to(hub.topics.dlq) == []
    assert hub.decisions(hub.answer(out, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]


def _pending(hub: Hub) -> AuthorityRequest:
    """A declaration waiting for DGAL's answer: the request DGAL was sent."""
    sent = hub.intake.handle(
        _sealed(hub, declaration_xml(reference=REF)), _declarations(0, REF.encode())
    )
    [record] = sent.to(hub.topics.requests("dgal"))
    return AuthorityRequest.model_validate_json(
        envelope_of("dgal", hub.topics, hub.keys_dir).open(record.value, topic=record.topic).payload
    )


@pytest.mark.parametrize("key", [None, b"", ANOTHER], ids=["null", "empty", "another reference"])
def test_an_answer_not_keyed_by_its_reference_is_refused_as_a_forgery(
    hub: Hub, key: bytes | None
) -> None:
    request = _pending(hub)
    responses = hub.topics.responses("dgal")
    sealed = envelope_of("dgal", hub.topics, hub.keys_dir).seal(
        answer_to(request, Verdict.NOT_FOUND).model_dump_json().encode(),
        recipient=HUB_PARTY,
        topic=responses,
        content_type=ContentType.JSON,
    )
    out = hub.correlation.handle(sealed, SourcePosition(responses, 0, 1, key))

    [dead] = out.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == "RESPONSE_KEY_MISMATCH"
    assert header_value(dead.headers, HEADER_ERROR_CLASS) == "security"
    assert describe_key(key) in (header_value(dead.headers, HEADER_ERROR_REASON) or "")
    assert hub.decisions(out) == []
    # The case still waits: the genuine answer, keyed by the reference, decides it.
    genuine = hub.respond(answer_to(request, Verdict.VALID))
    assert hub.decisions(genuine) == [(REF, 1, Outcome.RELEASE)]


@pytest.mark.parametrize("key", [None, b"\xff"], ids=["null", "not UTF-8"])
async def test_a_request_not_keyed_by_its_reference_is_refused_at_the_adapter(
    tmp_path: Path, key: bytes | None
) -> None:
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    settings = Settings(security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / "state"))
    partner = FakePartner()
    runner = AdapterRunner(
        load_adapter("dga"), settings, TOPICS, envelope_of("dga", TOPICS, keys), partner
    )
    request = dga(Operation.RESERVE)
    sealed = envelope_of(HUB_PARTY, TOPICS, keys).seal(
        request.model_dump_json().encode(),
        recipient="dga",
        topic=TOPICS.requests("dga"),
        content_type=ContentType.JSON,
    )
    record = ConsumerRecord(TOPICS.requests("dga"), 0, 7, 0, 0, key, sealed, None, 0, 0, [])
    outbox = Effects()
    await runner._handle(record, outbox)

    [dead] = outbox.to(TOPICS.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == "REQUEST_KEY_MISMATCH"
    assert describe_key(key) in (header_value(dead.headers, HEADER_ERROR_REASON) or "")
    assert outbox.to(TOPICS.responses("dga")) == []
    assert partner.asked == []  # nothing asked of the partner


def test_a_record_read_again_that_opened_its_case_before_keys_were_checked_is_no_refusal(
    hub: Hub,
) -> None:
    """An older worker (before keys were checked) decided a declaration sealed under
    another key and died before committing it; the upgraded worker reads it again. It
    opened the case on this partition, and its decision stands: read again, it is a
    redelivery, not a record to refuse (no RECORD_KEY_NOT_REFERENCE dead letter and page
    after the upgrade; review stop 38-g, S4)."""
    sealed = _sealed(hub, declaration_xml(reference=REF))
    # The older worker's handling: no key check, the case opened from offset 0.
    opened = hub.intake.handle(sealed, _declarations(0, REF.encode()))
    assert hub.decisions(hub.answer(opened, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]
    counted = _dead_letters(RECORD_KEY_NOT_REFERENCE)

    again = hub.intake.handle(sealed, _declarations(0, ANOTHER))

    assert again.to(hub.topics.dlq) == []
    assert _dead_letters(RECORD_KEY_NOT_REFERENCE) == counted
    assert [d.outcome for d in hub.decision_objects(again)] in ([], [Outcome.RELEASE])
    # The same declaration under a wrong key at another offset is still refused.
    resent = _sealed(hub, declaration_xml(reference=REF))  # a fresh seal: no replay
    other = hub.intake.handle(resent, _declarations(1, ANOTHER))
    [dead] = other.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == RECORD_KEY_NOT_REFERENCE
