"""Issue 11, item 7: an answer is acted on only if the hub asked that authority that
operation about that version. Each test performs the attack and sees it fail."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gun_contract.dead_letter import HEADER_ERROR_CLASS, HEADER_ERROR_KIND, header_value
from gun_contract.effects import Effects
from gun_contract.model.exchange import (
    AuthorityResponse,
    DocumentAnswer,
    Operation,
    request_id_for,
)
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.pipeline.correlation import UNSOLICITED
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_pipeline import SOURCE, Hub

REF = "26FR000690I0000012"
LICENCE = declaration_xml(items=(goods_item(1, (document("LEMG", "LEMG-42", 1, "5", "NAR"),)),))


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


def answer(
    authority: str,
    operation: Operation,
    verdict: Verdict,
    *,
    version: int = 1,
    request_id: str | None = None,
    code: str = "N853",
    reference: str = "CHEDP.FR.2026.0001234",
) -> AuthorityResponse:
    return AuthorityResponse(
        request_id=request_id or request_id_for(REF, version, authority, operation),
        authority=authority,
        operation=operation,
        reference=REF,
        version=version,
        answers=(DocumentAnswer(goods_item=1, code=code, reference=reference, verdict=verdict),),
        answered_at=datetime.now(UTC),
    )


def refused_as_unsolicited(hub: Hub, out: Effects) -> bool:
    [dead] = out.to(hub.topics.dlq)
    return (
        header_value(dead.headers, HEADER_ERROR_KIND) == UNSOLICITED
        and header_value(dead.headers, HEADER_ERROR_CLASS) == "security"
        and out.to(hub.topics.status) == []
        and hub.decisions(out) == []
    )


def test_a_write_off_nobody_asked_for_changes_nothing(hub: Hub) -> None:
    hub.intake.handle(declaration_xml(), SOURCE)  # reserved, not decided: no write-off asked
    out = hub.respond(answer("dgal", Operation.WRITE_OFF, Verdict.VALID))
    assert refused_as_unsolicited(hub, out)


def test_a_deletion_for_a_declaration_the_hub_never_saw_changes_nothing(hub: Hub) -> None:
    out = hub.respond(answer("dgal", Operation.DELETE, Verdict.VALID))
    assert refused_as_unsolicited(hub, out)


def test_an_adapter_cannot_raise_a_post_release_alert_on_its_own(hub: Hub) -> None:
    sent = hub.intake.handle(LICENCE, SOURCE)
    hub.answer(sent, "dga", Verdict.VALID)  # reserved: the DGA is asked to reserve only...
    # ...and a negative "write-off" for version 2, never asked, must not raise an alert.
    forged = answer(
        "dga", Operation.WRITE_OFF, Verdict.MISMATCH, version=2, code="LEMG", reference="LEMG-42"
    )
    assert refused_as_unsolicited(hub, hub.respond(forged))


def test_an_answer_whose_request_id_does_not_match_its_fields_is_refused(hub: Hub) -> None:
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    assert len(sent.to(hub.topics.requests("dgal"))) == 1
    borrowed = request_id_for(REF, 1, "dgal", Operation.RESERVE)
    out = hub.respond(answer("dgal", Operation.WRITE_OFF, Verdict.VALID, request_id=borrowed))
    assert refused_as_unsolicited(hub, out)


def test_the_write_off_the_hub_asked_for_is_recorded(hub: Hub) -> None:
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    released = hub.answer(sent, "dgal", Verdict.VALID)
    assert hub.decisions(released) == [(REF, 1, Outcome.RELEASE)]
    written_off = hub.answer(released, "dgal", Verdict.VALID)
    assert hub.status_kinds(written_off) == [StatusKind.WRITTEN_OFF]
