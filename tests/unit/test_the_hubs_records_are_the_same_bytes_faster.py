"""Issue 12 (CPU per declaration): the records and state the hub writes come out byte for
byte as before the shortcuts that made them cheaper. A case, a status event, a fact and a
request are pydantic's JSON without the detour through a str; audit records use one
encoder for all; a version's trace id is hashed once and remembered."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from gun_contract.model.encoding import json_bytes
from gun_contract.model.verdicts import Verdict
from gun_contract.trace import trace_id_for
from gun_hub.domain.case import Case
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusEvent, StatusKind
from gun_hub.ops.facts import DocumentUse, ReceivedFact, WriteOffFact, WrittenOff, fact_bytes
from gun_hub.security.audit import canonical
from tests.builders import declaration_xml
from tests.unit.test_pipeline import SOURCE, Hub

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
