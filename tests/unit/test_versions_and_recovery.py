"""Issue 10, defects 4, 5, 6, 9 and 13: versions racing a recovering worker, and a worker
that dies between updating its state and the broker acknowledging what it sent.

The harness (tests/unit/test_pipeline.py) plays the broker: ``broker_up = False`` is a
worker killed before the broker confirmed the records of an event, so its
``after_delivery`` callbacks never run; handling the same record again is the redelivery.
"""

from __future__ import annotations

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_pipeline import Hub

REF = "26FR000690I0000012"


def at(offset: int, partition: int = 0) -> SourcePosition:
    return SourcePosition("gun.declarations", partition, offset)


def unreadable(version: int) -> bytes:
    """A declaration whose identity can be read but which fails the schema."""
    return declaration_xml(version=version, items=(goods_item(1, (document(quantity="-5"),)),))


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: object) -> Hub:
    return Hub(routing_table, keys_dir)  # type: ignore[arg-type]


def requests(hub: Hub, outbox: Effects, authority: str = "dgal") -> list[AuthorityRequest]:
    envelope = hub.envelope(authority)
    return [
        AuthorityRequest.model_validate_json(envelope.open(r.value, topic=r.topic).payload)
        for r in outbox.to(hub.topics.requests(authority))
    ]


def test_a_newer_version_arriving_while_the_previous_decision_is_unconfirmed_is_processed(
    hub: Hub,
) -> None:
    """Defect 4: the previous decision is announced again AND the new version goes on."""
    first = hub.intake.handle(declaration_xml(version=1), at(0))
    hub.broker_up = False
    hub.answer(first, "dgal", Verdict.VALID)  # v1 decided; the worker dies before the ack
    hub.broker_up = True
    second = hub.intake.handle(declaration_xml(version=2), at(1))
    assert hub.decisions(second) == [(REF, 1, Outcome.RELEASE)]  # announced again
    assert sorted((r.version, r.operation) for r in requests(hub, second)) == [
        (1, Operation.WRITE_OFF),  # v1's follow-up, announced again with its decision
        (2, Operation.RESERVE),
    ]
    assert hub.decisions(hub.answer(second, "dgal", Verdict.VALID)) == [(REF, 2, Outcome.RELEASE)]


def test_a_previous_decision_still_unconfirmed_survives_a_crash_after_the_new_version(
    hub: Hub,
) -> None:
    """Defect 4: dying again after the newer version was stored must not lose v1's decision."""
    first = hub.intake.handle(declaration_xml(version=1), at(0))
    hub.broker_up = False
    hub.answer(first, "dgal", Verdict.VALID)
    hub.intake.handle(declaration_xml(version=2), at(1))  # dies again before the ack
    hub.broker_up = True
    again = hub.intake.handle(declaration_xml(version=2), at(1))  # redelivered
    assert (REF, 1, Outcome.RELEASE) in hub.decisions(again)


def test_an_answer_arriving_while_an_earlier_decision_is_unconfirmed_is_recorded(
    hub: Hub,
) -> None:
    """Found by the short chaos run (a v2 cancellation never decided, twice in CI): v2
    arrived while v1's decision was still unconfirmed (the broker slow to acknowledge),
    so v2's case carried it; v2's answer then announced v1 again and was thrown away,
    leaving v2 waiting for an answer already consumed."""
    first = hub.intake.handle(declaration_xml(version=1), at(0))
    hub.broker_up = False
    hub.answer(first, "dgal", Verdict.VALID)  # v1 decided, its acknowledgement pending
    second = hub.intake.handle(declaration_xml(version=2), at(1))  # still pending
    hub.broker_up = True
    answered = hub.answer(second, "dgal", Verdict.VALID)
    assert (REF, 1, Outcome.RELEASE) in hub.decisions(answered)  # announced again
    assert (REF, 2, Outcome.RELEASE) in hub.decisions(answered)  # and v2 decided


def test_the_refusal_of_an_unreadable_declaration_survives_a_crash(hub: Hub) -> None:
    """Defect 5: the refusal is announced again when its record is redelivered."""
    hub.broker_up = False
    lost = hub.intake.handle(unreadable(1), at(0))
    assert hub.decisions(lost) == [(REF, 1, Outcome.REFUSE)]
    hub.broker_up = True
    again = hub.intake.handle(unreadable(1), at(0))
    assert hub.decisions(again) == [(REF, 1, Outcome.REFUSE)]
    # Once confirmed, a further redelivery announces nothing.
    assert hub.decisions(hub.intake.handle(unreadable(1), at(0))) == []


def test_an_unreadable_newer_version_deletes_what_the_previous_one_reserved(hub: Hub) -> None:
    """Defect 6: no reservation leaks, and the previous version stops ticking."""
    hub.intake.handle(declaration_xml(version=1), at(0))
    assert REF.encode() in hub.open_cases
    refused = hub.intake.handle(unreadable(2), at(1))
    # Version 1, superseded undecided, gets its own REFUSE first (review stop 40, W4).
    assert hub.decisions(refused) == [(REF, 1, Outcome.REFUSE), (REF, 2, Outcome.REFUSE)]
    assert REF.encode() not in hub.open_cases
    [delete] = requests(hub, refused)
    assert (delete.operation, delete.version) == (Operation.DELETE, 2)
    assert [d.reference for item in delete.items for d in item.documents] == [
        "CHEDP.FR.2026.0001234"
    ]
    assert StatusKind.SUPERSEDED in hub.status_kinds(refused)


def test_an_unreadable_newer_version_after_a_release_deletes_nothing(hub: Hub) -> None:
    first = hub.intake.handle(declaration_xml(version=1), at(0))
    hub.answer(first, "dgal", Verdict.VALID)  # released: written off, nothing reserved
    refused = hub.intake.handle(unreadable(2), at(1))
    assert hub.decisions(refused) == [(REF, 2, Outcome.REFUSE)]
    assert requests(hub, refused) == []


def test_a_redelivered_declaration_sends_its_requests_again(hub: Hub) -> None:
    """Defect 9: the case may have reached the changelog while its requests did not."""
    hub.broker_up = False
    hub.intake.handle(declaration_xml(), at(5))
    hub.broker_up = True
    again = hub.intake.handle(declaration_xml(), at(5))
    [request] = requests(hub, again)
    assert (request.version, request.operation) == (1, Operation.RESERVE)
    assert hub.decisions(hub.answer(again, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]


def test_the_same_version_published_again_elsewhere_is_ignored_and_recorded(hub: Hub) -> None:
    hub.intake.handle(declaration_xml(), at(5))
    copy = hub.intake.handle(declaration_xml(), at(6))
    assert requests(hub, copy) == []
    assert hub.status_kinds(copy) == [StatusKind.IGNORED_STALE_VERSION]


def test_a_late_confirmation_never_writes_an_old_version_over_a_newer_one(hub: Hub) -> None:
    """Defect 13: the case captured before the await is not written back over v2."""
    first = hub.intake.handle(declaration_xml(version=1), at(0))
    hub.broker_up = False
    decided = hub.answer(first, "dgal", Verdict.VALID)
    hub.broker_up = True
    hub.intake.handle(declaration_xml(version=2), at(1))
    for confirm in decided.after_delivery:  # v1's acknowledgement arrives only now
        confirm()
    stored = hub.cases[REF.encode()]
    assert b'"version":2' in stored
