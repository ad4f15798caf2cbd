"""Every record of a declaration is keyed by its reference, UTF-8 (contract section 2).

Found by the outside acceptance test of stop 38 (D2, D3): a declaration sealed by the
clearance system under another reference's key, a null key or a key that is not UTF-8 was
decided, silently, on whatever partition that key led to (where its other versions are
not); and an authority's answer with a null key was acted on, though one under another
non-null key was refused as a forgery. Each is now refused with a precise reason that
says what the key was without quoting its bytes.

A declaration (or an answer) under a key that is not its reference gets a security dead
letter and nothing else (review stop 38-s, S1 and S2): it cannot be matched to the case
that owns its reference, and may be a copy of another's genuine declaration. So no REFUSE
decision (one for a version it does not own would hold back the real decisions at the
publisher), no case opened or superseded, no reservation deleted; and its key is checked
before its message id is claimed, so a copy read first never makes the genuine record a
replay.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY

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
from gun_contract.security.entitlements import HUB_PARTY
from gun_hub.domain.case import Case
from gun_hub.domain.reasons import CATALOGUE
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.pipeline.audit_keeper import SECURITY_REJECTION_KINDS
from gun_hub.pipeline.decision_outbox import HEADER_VERSION
from gun_hub.pipeline.intake import RECORD_KEY_NOT_REFERENCE
from gun_hub.runtime.published_memory import SUPERSEDED, PublishedMemory
from tests.builders import EORI, answer_to, declaration_xml
from tests.conftest import envelope_of
from tests.unit.test_a_sealed_message_is_read_only_as_the_type_it_was_sealed_as import (
    dga_adapter,
    sealed_by_the_hub,
)
from tests.unit.test_declarations_admitted_once_claimed import Admission
from tests.unit.test_pipeline import Hub
from tests.unit.test_state_pending_queue import TOPICS, dga

REF = "26FR000690I0000012"
ANOTHER = b"26FRSOMEBODYELSE01"
OTHER_DECLARANT = "DE999999999999999"
WRONG_KEYS = {
    "another reference": ANOTHER,
    "null": None,
    "empty": b"",
    "not UTF-8": b"\xff\xfe\x00",
}


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    """The pipeline with a production intake: sealed declarations only."""
    return Hub(routing_table, keys_dir).sealed_only()


def _declarations(offset: int, key: bytes | None) -> SourcePosition:
    return SourcePosition("gun.declarations", 0, offset, key)


def _dead_letters(kind: str) -> float:
    return REGISTRY.get_sample_value("gun_hub_dead_letters_total", {"kind": kind}) or 0.0


@pytest.mark.parametrize("key", list(WRONG_KEYS.values()), ids=list(WRONG_KEYS))
def test_a_declaration_under_a_key_that_is_not_its_reference_is_dead_lettered_only(
    hub: Hub, key: bytes | None
) -> None:
    counted = _dead_letters(RECORD_KEY_NOT_REFERENCE)
    out = hub.intake.handle(
        hub.sealed_by_clearance(declaration_xml(reference=REF)), _declarations(0, key)
    )

    [dead] = out.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == RECORD_KEY_NOT_REFERENCE
    # A security rejection, audited like the envelope's.
    assert header_value(dead.headers, HEADER_ERROR_CLASS) == "security"
    assert RECORD_KEY_NOT_REFERENCE in SECURITY_REJECTION_KINDS
    assert header_value(dead.headers, HEADER_REFERENCE) == REF
    reason = header_value(dead.headers, HEADER_ERROR_REASON) or ""
    assert describe_key(key) in reason  # what the key was
    assert f"must be its declaration reference, {len(REF)} bytes of UTF-8" in reason
    if key:
        assert key.decode("utf-8", "replace") not in reason  # never the key's bytes
    assert _dead_letters(RECORD_KEY_NOT_REFERENCE) == counted + 1
    # Nothing else: no decision, no status, no case, nothing asked of anyone.
    assert out.to(hub.topics.decision_outbox) == []
    assert out.to(hub.topics.status) == []
    assert out.to(hub.topics.requests("dgal")) == []
    assert hub.cases == {}
    # No longer a reason a decision can give.
    assert RECORD_KEY_NOT_REFERENCE not in CATALOGUE


def test_a_declaration_whose_reference_cannot_be_sniffed_is_still_dead_lettered_only(
    hub: Hub,
) -> None:
    """The key is checked on the sniffed reference before the claim; past the sniff's
    window, the full parse finds the reference, and the refusal is the same."""
    xml = declaration_xml(reference=REF).replace(b"?>\n", b"?>\n" + b" " * 5000, 1)
    out = hub.intake.handle(hub.sealed_by_clearance(xml), _declarations(0, ANOTHER))

    [dead] = out.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == RECORD_KEY_NOT_REFERENCE
    assert header_value(dead.headers, HEADER_ERROR_CLASS) == "security"
    assert out.to(hub.topics.decision_outbox) == []
    assert out.to(hub.topics.status) == []
    assert hub.cases == {}


def test_a_wrong_keyed_version_of_another_declarant_leaves_the_case_as_it_was(hub: Hub) -> None:
    """Review stop 38-s, S1: refused for its key, a version 99 naming another declarant
    went around the declarant check: it superseded the case, deleted its reservations
    and got a REFUSE at version 99."""
    first = hub.intake.handle(
        hub.sealed_by_clearance(declaration_xml(reference=REF, version=1)),
        _declarations(0, REF.encode()),
    )
    assert len(first.to(hub.topics.requests("dgal"))) == 1

    forged = hub.intake.handle(
        hub.sealed_by_clearance(
            declaration_xml(reference=REF, version=99, declarant=OTHER_DECLARANT)
        ),
        SourcePosition("gun.declarations", 1, 0, ANOTHER),
    )

    [dead] = forged.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == RECORD_KEY_NOT_REFERENCE
    assert hub.decisions(forged) == []
    assert StatusKind.SUPERSEDED not in hub.status_kinds(forged)
    assert forged.to(hub.topics.requests("dgal")) == []  # no deletion of its reservations
    case = Case.from_bytes(hub.cases[REF.encode()])
    assert (case.version, case.declarant_eori) == (1, EORI)
    # The case goes on: its genuine answer decides it.
    assert hub.decisions(hub.answer(first, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]


def test_a_wrong_keyed_forgery_never_makes_the_publisher_withhold_the_real_decision(
    hub: Hub,
) -> None:
    """Review stop 38-s, S1: where the reference's case is not known (another worker's
    partition), a REFUSE of version 99 reached the reference's publisher lane, which then
    withheld the real version 1's decision as superseded."""
    forged = hub.intake.handle(
        hub.sealed_by_clearance(
            declaration_xml(reference=REF, version=99, declarant=OTHER_DECLARANT)
        ),
        SourcePosition("gun.declarations", 1, 0, None),
    )
    memory = PublishedMemory(100)
    for record in forged.to(hub.topics.decision_outbox):
        version = next(v for k, v in record.headers if k == HEADER_VERSION)
        memory.add((record.key or b"", version))
    assert hub.decisions(forged) == []
    assert memory.refusal((REF.encode(), b"1")) != SUPERSEDED


@pytest.mark.parametrize("key", [None, ANOTHER], ids=["null", "another reference"])
def test_a_wrong_keyed_copy_read_first_leaves_the_genuine_declaration_to_be_decided(
    hub: Hub, key: bytes | None
) -> None:
    """Review stop 38-s, S2: the copy's message id was recorded before its key was
    checked; the genuine record, read after, was then a replay, never decided."""
    sealed = hub.sealed_by_clearance(declaration_xml(reference=REF))
    copy = hub.intake.handle(sealed, SourcePosition("gun.declarations", 1, 0, key))
    [dead] = copy.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == RECORD_KEY_NOT_REFERENCE
    assert hub.decisions(copy) == []

    genuine = hub.intake.handle(sealed, _declarations(0, REF.encode()))
    assert genuine.to(hub.topics.dlq) == []
    assert hub.decisions(hub.answer(genuine, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]


@pytest.mark.parametrize("key", [None, ANOTHER], ids=["null", "another reference"])
def test_a_wrong_keyed_copy_claims_no_message_id_in_the_worker(
    routing_table: RoutingTable, keys_dir: Path, key: bytes | None
) -> None:
    """The worker's two steps (pipeline/admission.py): the copy is dead-lettered before
    its id is claimed, and the genuine record's claim is a first sighting."""
    admission = Admission(routing_table, keys_dir)
    sealed = admission.seal(declaration_xml(reference=REF))
    copy, released = admission.gate.receive(
        sealed, SourcePosition("gun.declarations", 1, 0, key), accepted_at=None
    )
    assert released == []
    assert copy.to(admission.topics.claims) == []
    [dead] = copy.to(admission.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == RECORD_KEY_NOT_REFERENCE
    assert header_value(dead.headers, HEADER_ERROR_CLASS) == "security"
    assert not admission.admissions.holds(1, 0)

    [genuine] = admission.through(sealed, _declarations(0, REF.encode()))
    assert genuine.to(admission.topics.dlq) == []
    assert len(genuine.to(admission.topics.requests("dgal"))) == 1


def test_a_key_is_described_by_its_length_and_the_hex_of_its_head_only() -> None:
    assert describe_key(None) == "no record key (null)"
    assert describe_key(b"") == "an empty record key"
    assert describe_key(b"\xff\xfe\x00") == "a record key of 3 bytes (not UTF-8, hex fffe00)"
    assert describe_key(ANOTHER) == "a record key of 18 bytes (UTF-8, hex 32364652534f4d45...)"


def test_a_declaration_keyed_by_its_reference_is_decided(hub: Hub) -> None:
    out = hub.intake.handle(
        hub.sealed_by_clearance(declaration_xml(reference=REF)), _declarations(0, REF.encode())
    )
    assert out.to(hub.topics.dlq) == []
    assert hub.decisions(hub.answer(out, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]


def _pending(hub: Hub) -> AuthorityRequest:
    """A declaration waiting for DGAL's answer: the request DGAL was sent."""
    sent = hub.intake.handle(
        hub.sealed_by_clearance(declaration_xml(reference=REF)), _declarations(0, REF.encode())
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


@pytest.mark.parametrize("key", [None, ANOTHER], ids=["null", "another reference"])
def test_a_wrong_keyed_copy_of_an_answer_read_first_leaves_the_genuine_to_decide(
    hub: Hub, key: bytes | None
) -> None:
    """Review stop 38-s, S2: the copy's id was recorded before its key was checked, so
    the genuine answer was a replay and the case waited for its deadline."""
    request = _pending(hub)
    responses = hub.topics.responses("dgal")
    sealed = envelope_of("dgal", hub.topics, hub.keys_dir).seal(
        answer_to(request).model_dump_json().encode(),
        recipient=HUB_PARTY,
        topic=responses,
        content_type=ContentType.JSON,
    )
    copy = hub.correlation.handle(sealed, SourcePosition(responses, 1, 0, key))
    [dead] = copy.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == "RESPONSE_KEY_MISMATCH"

    genuine = hub.correlation.handle(sealed, SourcePosition(responses, 0, 0, REF.encode()))
    assert genuine.to(hub.topics.dlq) == []
    assert hub.decisions(genuine) == [(REF, 1, Outcome.RELEASE)]


@pytest.mark.parametrize("key", [None, b"\xff"], ids=["null", "not UTF-8"])
async def test_a_request_not_keyed_by_its_reference_is_refused_at_the_adapter(
    tmp_path: Path, key: bytes | None
) -> None:
    runner, partner, keys = dga_adapter(tmp_path)
    sealed = sealed_by_the_hub(dga(Operation.RESERVE), keys, ContentType.JSON)
    record = ConsumerRecord(TOPICS.requests("dga"), 0, 7, 0, 0, key, sealed, None, 0, 0, [])
    outbox = Effects()
    await runner._handle_survivably(record, outbox)

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
    sealed = hub.sealed_by_clearance(declaration_xml(reference=REF))
    # The older worker's handling: no key check, the case opened from offset 0.
    opened = hub.intake.handle(sealed, _declarations(0, REF.encode()))
    assert hub.decisions(hub.answer(opened, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]
    counted = _dead_letters(RECORD_KEY_NOT_REFERENCE)

    again = hub.intake.handle(sealed, _declarations(0, ANOTHER))

    assert again.to(hub.topics.dlq) == []
    assert _dead_letters(RECORD_KEY_NOT_REFERENCE) == counted
    assert [d.outcome for d in hub.decision_objects(again)] in ([], [Outcome.RELEASE])
    # The same declaration under a wrong key at another offset is still refused.
    resent = hub.sealed_by_clearance(declaration_xml(reference=REF))  # a fresh seal: no replay
    other = hub.intake.handle(resent, _declarations(1, ANOTHER))
    [dead] = other.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == RECORD_KEY_NOT_REFERENCE
