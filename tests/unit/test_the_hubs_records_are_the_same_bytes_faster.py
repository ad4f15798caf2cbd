"""Issue 12 (CPU per declaration): the records and state the hub writes come out byte for
byte as before the shortcuts that made them cheaper. A case, a status event, a fact and a
request are pydantic's JSON without the detour through a str; audit records use one
encoder for all; a version's trace id is hashed once and remembered.

Stop 39: a case marked announced once the broker has its decision is written from the
bytes the handling made when it stored the case (``HubContext.store_case``), not read back
into a model and written out again; what the mark writes is what reading it back wrote,
and a worker dying between the decision and the mark still announces it again."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.model.encoding import json_bytes
from gun_contract.model.verdicts import Verdict
from gun_contract.trace import trace_id_for
from gun_hub.domain.case import Case
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusEvent, StatusKind
from gun_hub.ops.facts import DocumentUse, ReceivedFact, WriteOffFact, WrittenOff, fact_bytes
from gun_hub.pipeline.hub_context import HubContext
from gun_hub.security.audit import canonical
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_pipeline import NOW, SOURCE, Hub

AT = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


def test_a_decided_case_is_stored_as_pydantic_wrote_it(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    hub.answer(sent, "dgal", Verdict.VALID)
    [stored] = hub.cases.values()
    case = Case.from_bytes(stored)
    assert case.decision is not None  # a case with everything a decision adds
    assert case.to_bytes() == stored == case.model_dump_json().encode()


def test_text_outside_ascii_and_decimals_come_out_as_model_dump_json() -> None:
    written_off = WriteOffFact(
        reference="26FR000000000001",
        version=2,
        authority="dgal",
        at=AT,
        documents=[
            WrittenOff(
                goods_item=1,
                code="N853",
                reference="CHED.P-é€😀",
                line=3,
                quantity=Decimal("10.500"),
                unit="kg",
            )
        ],
    )
    assert fact_bytes(written_off) == written_off.model_dump_json().encode()
    received = ReceivedFact(
        reference="26FR000000000001", version=1, declarant_eori="FR123", received_at=AT
    )
    assert fact_bytes(received) == received.model_dump_json().encode()
    use = DocumentUse(goods_item=1, code="N853", reference=None, authority=None, verdict="VALID")
    assert json_bytes(use) == use.model_dump_json().encode()


def test_a_status_event_still_leaves_out_what_it_does_not_say() -> None:
    event = StatusEvent(
        reference="26FR000000000001",
        version=1,
        kind=StatusKind.ANSWER_RECEIVED,
        at=AT,
        detail="VALID; « contrôle »",
        authority="dgal",
    )
    assert event.to_bytes() == event.model_dump_json(exclude_none=True).encode()
    assert b"outcome" not in event.to_bytes()
    assert json.loads(event.to_bytes())["detail"] == "VALID; « contrôle »"


def test_an_audit_record_is_canonical_json_as_before() -> None:
    body = {"z": [1, 2.5, None], "a": {"é": "€", "b": True}, "m": "line\nbreak"}
    assert canonical(body) == (
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )


def test_a_trace_id_remembered_is_the_one_hashed() -> None:
    fresh = trace_id_for.__wrapped__  # the hash itself, not remembered
    assert trace_id_for("26FR000000000001", 1) == fresh("26FR000000000001", 1)
    assert trace_id_for("26FR000000000001", 1) == fresh("26FR000000000001", 1)
    assert trace_id_for("26FR000000000001", 2) != trace_id_for("26FR000000000001", 1)
    # A version is an int: True is not version 1 (the text hashed differs).
    assert trace_id_for("26FR000000000001", True) == fresh("26FR000000000001", True)


# -- a case marked announced (stop 39) ------------------------------------------------------

REF = "26FR000690I0000012"


def marked_as_before(stored: bytes, version: int) -> bytes:
    """What the mark wrote until stop 39: the case as stored, read back, marked, written
    out (or left as it was when there was nothing to mark)."""
    case = Case.from_bytes(stored)
    if case.version == version and case.decided:
        if case.announced:
            return stored
        case.announced = True
    else:
        pending = [p for p in case.pending_announcements if p.version != version]
        if pending == case.pending_announcements:
            return stored
        case.pending_announcements = pending
    return case.to_bytes()


class Mark:
    """One mark as it happened: the case stored before and after, and how many cases it
    read back into a model."""

    def __init__(self, version: int, before: bytes, after: bytes, parsed: int) -> None:
        self.version, self.before, self.after, self.parsed = version, before, after, parsed


@pytest.fixture
def marks(monkeypatch: pytest.MonkeyPatch) -> list[Mark]:
    """Every mark the hub makes, watched."""
    seen: list[Mark] = []
    parsed: list[bytes] = []
    reading = Case.from_bytes.__func__  # type: ignore[attr-defined]

    def counted(cls: type[Case], data: bytes) -> Case:
        parsed.append(data)
        return reading(cls, data)  # type: ignore[no-any-return]

    monkeypatch.setattr(Case, "from_bytes", classmethod(counted))
    marking = HubContext._mark_announced

    def watched(context: HubContext, reference: str, version: int, on_its_way: object) -> None:
        before, parsed_before = context.cases.get(reference.encode()), len(parsed)
        marking(context, reference, version, on_its_way)  # type: ignore[arg-type]
        after = context.cases.get(reference.encode())
        assert before is not None
        assert after is not None
        seen.append(Mark(version, before, after, len(parsed) - parsed_before))

    monkeypatch.setattr(HubContext, "_mark_announced", watched)
    return seen


def delivered(hub: Hub) -> None:
    """The broker acknowledges what is on its way, in order."""
    outboxes, hub.on_their_way = hub.on_their_way, []
    for outbox in outboxes:
        for confirm in outbox.after_delivery:
            confirm()


def answered_in_time(hub: Hub) -> None:
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    hub.broker_slow = True
    hub.answer(sent, "dgal", Verdict.VALID)


def timed_out(hub: Hub) -> None:
    hub.intake.handle(declaration_xml(), SOURCE)
    hub.broker_slow = True
    hub.now = NOW + timedelta(seconds=31)
    hub.deadlines.handle(REF, 1, SourcePosition(hub.topics.deadlines, 0, 0))


def refused_unreadable(hub: Hub) -> None:
    hub.broker_slow = True
    # Readable enough to name its reference; a negative quantity fails the schema.
    hub.intake.handle(declaration_xml(items=(goods_item(1, (document(quantity="-5"),)),)), SOURCE)


def decided_at_intake(hub: Hub) -> None:
    hub.broker_slow = True
    # Nothing to ask anyone: decided as the declaration is read.
    hub.intake.handle(declaration_xml(items=(goods_item(1, ()),)), SOURCE)


@pytest.mark.parametrize(
    "decide",
    [answered_in_time, timed_out, refused_unreadable, decided_at_intake],
    ids=["by an answer", "by its deadline", "refused unreadable", "at intake"],
)
def test_a_case_marked_announced_is_written_as_reading_it_back_wrote_it_without_reading_it(
    routing_table: RoutingTable, keys_dir: Path, marks: list[Mark], decide: Callable[[Hub], None]
) -> None:
    hub = Hub(routing_table, keys_dir)
    decide(hub)
    delivered(hub)
    [mark] = marks
    assert not Case.from_bytes(mark.before).announced
    assert mark.after == marked_as_before(mark.before, mark.version) != mark.before
    assert Case.from_bytes(mark.after).announced
    assert mark.parsed == 0  # written from what the handling made, not read back


def test_an_earlier_version_marked_under_a_newer_one_is_written_as_before(
    routing_table: RoutingTable, keys_dir: Path, marks: list[Mark]
) -> None:
    """Defect 13: v2 stored before v1's decision is acknowledged: v1's mark takes it off
    v2's pending announcements (read back, as before), and v2's own mark is written from
    what its handling made."""
    hub = Hub(routing_table, keys_dir)
    first = hub.intake.handle(declaration_xml(version=1), SOURCE)
    hub.broker_slow = True
    hub.answer(first, "dgal", Verdict.VALID)  # v1 decided, on its way
    v1_on_its_way = hub.on_their_way
    hub.on_their_way = []
    hub.broker_slow = False
    second = hub.intake.handle(declaration_xml(version=2), SourcePosition("gun.declarations", 0, 1))
    assert [p.version for p in Case.from_bytes(hub.cases[REF.encode()]).pending_announcements] == [
        1
    ]
    hub.on_their_way = v1_on_its_way
    delivered(hub)  # v1's acknowledgement comes only now
    hub.broker_slow = True
    hub.answer(second, "dgal", Verdict.VALID)
    delivered(hub)
    v1, v2 = marks
    assert (v1.version, v2.version) == (1, 2)
    assert v1.after == marked_as_before(v1.before, 1) != v1.before
    assert Case.from_bytes(v1.after).pending_announcements == []
    assert v2.after == marked_as_before(v2.before, 2) != v2.before
    assert v2.parsed == 0


def test_a_case_written_over_after_its_decision_is_read_back_to_be_marked(
    routing_table: RoutingTable, keys_dir: Path, marks: list[Mark]
) -> None:
    """What the handling stored is only a shortcut while it is what is stored: a case
    written over since (by anything) is read back and marked, as before."""
    hub = Hub(routing_table, keys_dir)
    answered_in_time(hub)
    stored = Case.from_bytes(hub.cases[REF.encode()])
    hub.cases[REF.encode()] = stored.model_copy(update={"office": "FR000700"}).to_bytes()
    delivered(hub)
    [mark] = marks
    assert mark.parsed == 1
    assert mark.after == marked_as_before(mark.before, 1) != mark.before
    assert Case.from_bytes(mark.after).office == "FR000700"


def test_a_worker_dying_after_its_decision_left_and_before_the_mark_announces_it_again(
    routing_table: RoutingTable, keys_dir: Path, marks: list[Mark]
) -> None:
    """ADR 0013 (second addendum): the broker has the decision, the worker dies before it
    marks the case; what it kept to write the mark dies with it. The worker that restores
    the case finds it decided, unannounced, and announces the same decision again when
    the answer is read again; then marks it, as reading it back would have."""
    hub = Hub(routing_table, keys_dir)
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    hub.broker_slow = True
    first = hub.answer(sent, "dgal", Verdict.VALID)
    [decision] = hub.decision_objects(first)
    hub.on_their_way = []  # delivered, but the worker is gone before it marks the case
    assert marks == []
    assert not Case.from_bytes(hub.cases[REF.encode()]).announced

    restarted = Hub(routing_table, keys_dir)  # what the changelog restores
    restarted.cases.update(hub.cases)
    restarted.open_cases.update(hub.open_cases)
    restarted.audit_heads.update(hub.audit_heads)
    restarted.broker_slow = True
    again = restarted.answer(sent, "dgal", Verdict.VALID)
    assert restarted.decision_objects(again) == [decision]  # the same, decided_at included
    delivered(restarted)
    [mark] = marks
    assert mark.after == marked_as_before(mark.before, 1) != mark.before
    assert Case.from_bytes(restarted.cases[REF.encode()]).announced
    restarted.broker_slow = False
    assert restarted.decisions(restarted.answer(sent, "dgal", Verdict.VALID)) == []
