"""A partner's answer speaks only of the documents the hub asked that partner about.

An answer must answer a request the hub sent (tests/unit/test_unsolicited_answers.py);
within it, each document answer must name a (goods item, code, reference) the hub sent
that authority about the declaration. Any other (another authority's document, a document
of nobody, free text) is left out of everything the answer does (the decision, the status
history the trader reads, the write-off facts) and dead-lettered, security class, as
``RESPONSE_UNASKED_DOCUMENT``.

Found by review, stop 37 (i, 3): DGAL's adapter, answering its own WRITE_OFF, wrote
"C638 CITES-PERMIT-666 call +33 1 23: VALID" into the declaration's history and a
write-off of it into the statistics.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from gun_contract.dead_letter import (
    HEADER_ERROR_CLASS,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    SourcePosition,
    header_value,
)
from gun_contract.effects import Effects
from gun_contract.envelope import ContentType
from gun_contract.model.exchange import (
    AuthorityResponse,
    DocumentAnswer,
    Operation,
    request_id_for,
)
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.security.entitlements import HUB_PARTY
from gun_hub.domain.case import Case
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.facts import FACT, WriteOffFact
from gun_hub.pipeline.audit_keeper import SECURITY_REJECTION_KINDS
from gun_hub.pipeline.correlation import UNASKED_DOCUMENT, UNSOLICITED
from gun_hub.pipeline.redrive import not_redrivable
from tests.builders import declaration_xml, document, goods_item
from tests.conftest import REPO, envelope_of
from tests.unit.test_pipeline import SOURCE, Hub
from tests.unit.test_versions_and_recovery import at, requests

REF = "26FR000690I0000012"
CHED = DocumentAnswer(
    goods_item=1, code="N853", reference="CHEDP.FR.2026.0001234", verdict=Verdict.VALID
)
# Never asked of DGAL, nor quoted by the declaration: a CITES permit (another authority's code).
FORGED = DocumentAnswer(
    goods_item=7, code="C638", reference="CITES-PERMIT-666", verdict=Verdict.VALID
)
# A CITES permit the declaration does quote, on goods item 2: asked of the CITES
# authority, never of DGAL.
PERMIT = document("C638", "FR26-CITES-0042", 1, "3", "NAR")
BOTH = declaration_xml(items=(goods_item(1), goods_item(2, (PERMIT,))))


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


def response(
    authority: str, operation: Operation, *answers: DocumentAnswer, version: int = 1
) -> AuthorityResponse:
    return AuthorityResponse(
        request_id=request_id_for(REF, version, authority, operation),
        authority=authority,
        operation=operation,
        reference=REF,
        version=version,
        answers=answers,
        answered_at=datetime.now(UTC),
    )


def unasked_dead_letters(hub: Hub, out: Effects) -> list[str]:
    """The reasons of the RESPONSE_UNASKED_DOCUMENT dead letters in ``out`` (security)."""
    reasons = []
    for dead in out.to(hub.topics.dlq):
        if header_value(dead.headers, HEADER_ERROR_KIND) == UNASKED_DOCUMENT:
            assert header_value(dead.headers, HEADER_ERROR_CLASS) == "security"
            reasons.append(header_value(dead.headers, HEADER_ERROR_REASON) or "")
    return reasons


def write_offs(hub: Hub, out: Effects) -> list[WriteOffFact]:
    facts = [FACT.validate_json(r.value) for r in out.to(hub.topics.facts)]
    return [f for f in facts if isinstance(f, WriteOffFact)]


def counted() -> float:
    return (
        REGISTRY.get_sample_value("gun_hub_dead_letters_total", {"kind": UNASKED_DOCUMENT}) or 0.0
    )


def test_a_follow_up_answer_about_a_document_never_asked_changes_nothing_of_it(
    hub: Hub,
) -> None:
    released = hub.answer(hub.intake.handle(declaration_xml(), SOURCE), "dgal", Verdict.VALID)
    assert hub.decisions(released) == [(REF, 1, Outcome.RELEASE)]  # WRITE_OFF asked of dgal
    before = counted()
    out = hub.respond(response("dgal", Operation.WRITE_OFF, CHED, FORGED))
    texts = [r.value.decode() for r in [*out.to(hub.topics.status), *out.to(hub.topics.facts)]]
    assert [t for t in texts if "CITES-PERMIT-666" in t or "C638" in t] == []
    # What was asked is still reported and counted.
    [status] = hub.statuses(out)
    assert status.kind is StatusKind.WRITTEN_OFF
    assert status.detail == "WRITE_OFF: N853 CHEDP.FR.2026.0001234: VALID"
    [fact] = write_offs(hub, out)
    assert [(d.code, d.reference, d.quantity) for d in fact.documents] == [
        ("N853", "CHEDP.FR.2026.0001234", Decimal("1200.5"))
    ]
    # What was not is dead-lettered and counted, without repeating the partner's text.
    [reason] = unasked_dead_letters(hub, out)
    assert "dgal" in reason
    assert "1 document" in reason
    assert "CITES" not in reason
    assert "C638" not in reason
    assert counted() == before + 1


def test_an_answer_about_another_authority_s_document_of_the_same_declaration_is_left_out(
    hub: Hub,
) -> None:
    """The permit is quoted, and asked, but of the CITES authority: DGAL cannot answer for
    it (the hub asked per authority, so it checks per authority)."""
    sent = hub.intake.handle(BOTH, SOURCE)
    hub.answer(sent, "cites", Verdict.VALID)
    released = hub.answer(sent, "dgal", Verdict.VALID)
    assert hub.decisions(released) == [(REF, 1, Outcome.RELEASE)]
    borrowed = DocumentAnswer(
        goods_item=2, code="C638", reference="FR26-CITES-0042", verdict=Verdict.MISMATCH
    )
    out = hub.respond(response("dgal", Operation.WRITE_OFF, CHED, borrowed))
    assert hub.status_kinds(out) == [StatusKind.WRITTEN_OFF]  # not FOLLOW_UP_FAILED
    assert all("FR26-CITES-0042" not in s.detail for s in hub.statuses(out))
    [fact] = write_offs(hub, out)
    assert [d.reference for d in fact.documents] == ["CHEDP.FR.2026.0001234"]
    assert len(unasked_dead_letters(hub, out)) == 1
    # The CITES authority's own answer about it is taken.
    cites = hub.answer(released, "cites", Verdict.VALID)
    assert hub.status_kinds(cites) == [StatusKind.WRITTEN_OFF]
    assert unasked_dead_letters(hub, cites) == []


def test_an_answer_naming_only_unasked_documents_does_nothing_but_a_dead_letter(
    hub: Hub,
) -> None:
    hub.answer(hub.intake.handle(declaration_xml(), SOURCE), "dgal", Verdict.VALID)
    out = hub.respond(response("dgal", Operation.WRITE_OFF, FORGED))
    assert out.to(hub.topics.status) == []
    assert out.to(hub.topics.facts) == []
    assert len(unasked_dead_letters(hub, out)) == 1


def test_a_decision_is_taken_on_the_asked_documents_only(hub: Hub) -> None:
    """The decision path: an unasked refusal (and its partner code) neither refuses the
    declaration nor shows in the answer's status."""
    hub.intake.handle(declaration_xml(), SOURCE)
    refusal = FORGED.model_copy(update={"verdict": Verdict.NOT_FOUND, "partner_code": "LOOK-HERE"})
    out = hub.respond(response("dgal", Operation.RESERVE, CHED, refusal))
    assert hub.decisions(out) == [(REF, 1, Outcome.RELEASE)]
    [decision] = hub.decision_objects(out)
    assert [d.reference for d in decision.documents] == ["CHEDP.FR.2026.0001234"]
    [received] = [s for s in hub.statuses(out) if s.kind is StatusKind.ANSWER_RECEIVED]
    assert received.detail == "VALID"
    assert "LOOK-HERE" not in out.to(hub.topics.status)[0].value.decode()
    assert len(unasked_dead_letters(hub, out)) == 1


def test_a_decision_answer_naming_only_unasked_documents_leaves_the_case_waiting(
    hub: Hub,
) -> None:
    hub.intake.handle(declaration_xml(), SOURCE)
    out = hub.respond(response("dgal", Operation.RESERVE, FORGED))
    assert hub.decisions(out) == []
    assert out.to(hub.topics.status) == []
    assert len(unasked_dead_letters(hub, out)) == 1
    case = Case.from_bytes(hub.cases[REF.encode()])
    assert case.awaiting == ["dgal"]
    # The real answer still decides.
    assert hub.decisions(hub.respond(response("dgal", Operation.RESERVE, CHED))) == [
        (REF, 1, Outcome.RELEASE)
    ]


def test_a_late_follow_up_of_an_earlier_version_still_speaks_of_what_it_was_asked(
    hub: Hub,
) -> None:
    """v1 is refused (DELETE of its document), v2 quotes another document: v1's deletion,
    answered after v2 opened, is about a document v2 no longer knows, but the hub asked
    it: reported, not dead-lettered."""
    first = hub.intake.handle(declaration_xml(version=1), at(0))
    refused = hub.answer(first, "dgal", Verdict.QUANTITY_INSUFFICIENT)
    assert hub.decisions(refused) == [(REF, 1, Outcome.REFUSE)]
    [deletion] = requests(hub, refused)
    other = goods_item(1, (document(reference="CHEDP.FR.2026.0009999"),))
    hub.intake.handle(declaration_xml(version=2, items=(other,)), at(1))
    out = hub.answer(refused, "dgal", Verdict.VALID)
    assert deletion.operation is Operation.DELETE
    assert hub.status_kinds(out) == [StatusKind.RESERVATION_DELETED]
    assert "CHEDP.FR.2026.0001234" in hub.statuses(out)[0].detail
    assert unasked_dead_letters(hub, out) == []


def test_a_case_stored_before_the_hub_kept_what_it_asked_takes_every_answer_as_then(
    hub: Hub,
) -> None:
    """A case written by an earlier hub (no ``asked``) cannot know what it asked: what it
    knows of its documents is not that (a marker of then keeps none; review of stop 37's
    change, G2). Its answers are taken whole, as that hub took them, until the
    declaration's cases age out; a new version carries the not knowing on."""
    released = hub.answer(hub.intake.handle(declaration_xml(), SOURCE), "dgal", Verdict.VALID)
    assert hub.decisions(released) == [(REF, 1, Outcome.RELEASE)]
    stored = Case.from_bytes(hub.cases[REF.encode()]).model_dump(mode="json")
    del stored["asked"]
    hub.cases[REF.encode()] = Case.model_validate(stored).to_bytes()
    out = hub.respond(response("dgal", Operation.WRITE_OFF, CHED))
    assert hub.status_kinds(out) == [StatusKind.WRITTEN_OFF]
    assert unasked_dead_letters(hub, out) == []
    assert Case.from_bytes(hub.cases[REF.encode()]).asked is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("code", "C638 call +33 1 23"),
        ("code", "n853"),
        ("reference", "CITES-PERMIT-666 call +33 1 23"),
        ("reference", "X" * 71),
        ("reference", "CHEDP.FR.2026.0001234\n"),
        ("goods_item", 0),
        ("goods_item", 1000),
    ],
)
def test_an_answer_with_a_document_outside_the_contract_is_dead_lettered_as_invalid(
    hub: Hub, keys_dir: Path, field: str, value: object
) -> None:
    """Refused at parsing, as any malformed answer is, naming the field, not its value."""
    hub.answer(hub.intake.handle(declaration_xml(), SOURCE), "dgal", Verdict.VALID)
    valid = response("dgal", Operation.WRITE_OFF, CHED).model_dump(mode="json")
    valid["answers"][0][field] = value
    topic = hub.topics.responses("dgal")
    sealed = envelope_of("dgal", hub.topics, keys_dir).seal(
        json.dumps(valid).encode(),
        recipient=HUB_PARTY,
        topic=topic,
        content_type=ContentType.JSON,
    )
    out = hub.correlation.handle(sealed, SourcePosition(topic, 0, 1, REF.encode()))
    [dead] = out.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == "RESPONSE_INVALID"
    reason = header_value(dead.headers, HEADER_ERROR_REASON) or ""
    assert field in reason
    assert "call" not in reason
    assert "XXXX" not in reason
    assert out.to(hub.topics.status) == []
    assert out.to(hub.topics.facts) == []


def _xsd_pattern(type_name: str) -> str:
    xsd = (REPO / "schemas" / "common-types.xsd").read_text()
    block = xsd.split(f'name="{type_name}"', 1)[1].split("</xs:simpleType>", 1)[0]
    found = re.search(r'<xs:pattern value="([^"]+)"', block)
    assert found is not None
    return found.group(1)


def test_a_document_answer_s_code_and_reference_take_the_contract_s_patterns() -> None:
    properties = DocumentAnswer.model_json_schema()["properties"]
    assert properties["code"]["pattern"] == f"^{_xsd_pattern('DocumentCodeType')}$"
    assert properties["reference"]["pattern"] == f"^{_xsd_pattern('DocumentReferenceType')}$"
    assert (properties["goods_item"]["minimum"], properties["goods_item"]["maximum"]) == (1, 999)


def test_requests_are_what_the_asked_documents_are_built_from(hub: Hub) -> None:
    """The case keeps, per authority, the documents of every request it sent."""
    sent = hub.intake.handle(BOTH, SOURCE)
    case = Case.from_bytes(hub.cases[REF.encode()])
    by_authority: dict[str, set[tuple[int, str, str]]] = {}
    for authority in ("dgal", "cites"):
        for request in requests(hub, sent, authority):
            by_authority.setdefault(authority, set()).update(
                (item.number, d.code, d.reference) for item in request.items for d in item.documents
            )
    asked = {a: frozenset(documents) for a, documents in by_authority.items()}
    assert {a: case.asked_of(a) for a in by_authority} == asked
    assert case.asked_of("dga") == frozenset()


def test_such_a_dead_letter_is_audited_by_kind_and_cannot_be_redriven(hub: Hub) -> None:
    """Its asked part was acted on: a redrive would report it (and count its write-offs)
    a second time."""
    topics = hub.topics
    assert UNASKED_DOCUMENT in SECURITY_REJECTION_KINDS
    assert UNSOLICITED in SECURITY_REJECTION_KINDS
    why_not = not_redrivable("hub.correlation", topics.responses("dgal"), topics, UNASKED_DOCUMENT)
    assert why_not is not None
    assert "twice" in why_not
