"""Contract section 4: exactly one decision per (Reference, Version); only a lower or equal
version arriving *after* a higher one is ignored. A version a higher one supersedes before
it is decided is owed a decision too (review stop 40, W4: v1..v25 sent back to back got
decisions for v1 and v25 only): REFUSE, reason SUPERSEDED, announced when the higher
version arrives, so it precedes the higher version's decision on the reference's outbox
partition. The ledger is as before: the superseded version's reservations are restated by
the newer version's RESERVE, never deleted for it.

Driven through the harness of tests/unit/test_pipeline.py (no Kafka).
"""

from __future__ import annotations

import json

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.topics import reference_partition
from gun_hub.domain.decide import SUPERSEDED
from gun_hub.domain.reasons import CATALOGUE
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.web.redaction import trader_status
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_pipeline import Hub

REF = "26FR000690I0000012"


def at(offset: int, partition: int = 0) -> SourcePosition:
    return SourcePosition("gun.declarations", partition, offset)


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: object) -> Hub:
    return Hub(routing_table, keys_dir)  # type: ignore[arg-type]


def requests(hub: Hub, outbox: Effects, authority: str = "dgal") -> list[AuthorityRequest]:
    envelope = hub.envelope(authority)
    return [
        AuthorityRequest.model_validate_json(envelope.open(r.value, topic=r.topic).payload)
        for r in outbox.to(hub.topics.requests(authority))
    ]


def operations(hub: Hub, outbox: Effects) -> list[tuple[int, Operation]]:
    return [(r.version, r.operation) for r in requests(hub, outbox)]


def test_each_version_sent_back_to_back_gets_one_decision_in_version_order(hub: Hub) -> None:
    first = hub.intake.handle(declaration_xml(version=1), at(0))
    second = hub.intake.handle(declaration_xml(version=2), at(1))
    third = hub.intake.handle(declaration_xml(version=3), at(2))
    assert hub.decisions(first) == []
    assert hub.decisions(second) == [(REF, 1, Outcome.REFUSE)]
    assert hub.decisions(third) == [(REF, 2, Outcome.REFUSE)]
    # A late answer to a superseded version decides nothing more.
    assert hub.decisions(hub.answer(first, "dgal", Verdict.VALID)) == []
    assert hub.decisions(hub.answer(second, "dgal", Verdict.VALID)) == []
    assert hub.decisions(hub.answer(third, "dgal", Verdict.VALID)) == [(REF, 3, Outcome.RELEASE)]


def test_the_superseded_decision_names_the_version_that_governs(hub: Hub) -> None:
    hub.intake.handle(declaration_xml(version=1), at(0))
    second = hub.intake.handle(declaration_xml(version=2), at(1))
    [decision] = hub.decision_objects(second)
    assert decision.outcome is Outcome.REFUSE
    assert [(r.code, r.text) for r in decision.reasons] == [
        (SUPERSEDED, "superseded by version 2 before it was decided: version 2's decision governs")
    ]
    # Not decided on its documents: no result is claimed for any of them.
    assert decision.documents == ()
    assert decision.decided_at == hub.now


def test_the_superseded_decision_goes_where_the_higher_versions_goes_before_it(
    hub: Hub,
) -> None:
    """Same outbox partition (the reference's), earlier in the same handling: the
    publisher's lane publishes it before the higher version's decision."""
    exempt = goods_item(1, (document("Y900", "EXEMPT-1", None, None),))
    hub.intake.handle(declaration_xml(version=1), at(0))
    # Version 2 quotes nothing any authority checks: decided in the same handling.
    second = hub.intake.handle(declaration_xml(version=2, items=(exempt,)), at(1))
    records = second.to(hub.topics.decision_outbox)
    assert hub.decisions(second) == [(REF, 1, Outcome.REFUSE), (REF, 2, Outcome.RELEASE)]
    assert {r.partition for r in records} == {reference_partition(REF, 4)}


def test_the_superseded_version_gets_no_deletion_its_reservations_are_restated(
    hub: Hub,
) -> None:
    """The ledger as before the fix: v2's RESERVE restates what v1 reserved."""
    hub.intake.handle(declaration_xml(version=1), at(0))
    second = hub.intake.handle(declaration_xml(version=2), at(1))
    assert operations(hub, second) == [(2, Operation.RESERVE)]


def test_a_lodged_version_then_its_cancellation_back_to_back(hub: Hub) -> None:
    hub.intake.handle(declaration_xml(version=1), at(0))
    cancelled = hub.intake.handle(declaration_xml(version=2, stage=Stage.CANCELLED), at(1))
    assert hub.decisions(cancelled) == [(REF, 1, Outcome.REFUSE)]
    assert operations(hub, cancelled) == [(2, Operation.DELETE)]  # the cancellation's own
    assert hub.decisions(hub.answer(cancelled, "dgal", Verdict.VALID)) == [
        (REF, 2, Outcome.CANCELLED)
    ]


def test_a_decided_version_gets_no_second_decision_when_superseded(hub: Hub) -> None:
    first = hub.intake.handle(declaration_xml(version=1), at(0))
    assert hub.decisions(hub.answer(first, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]
    second = hub.intake.handle(declaration_xml(version=2), at(1))
    assert hub.decisions(second) == []
    assert StatusKind.SUPERSEDED not in hub.status_kinds(second)


def test_the_status_history_says_superseded_then_refused(hub: Hub) -> None:
    hub.intake.handle(declaration_xml(version=1), at(0))
    second = hub.intake.handle(declaration_xml(version=2), at(1))
    about_v1 = [s for s in hub.statuses(second) if s.version == 1]
    assert [(s.kind, s.outcome, s.detail) for s in about_v1] == [
        (StatusKind.SUPERSEDED, None, "superseded by version 2 before a decision"),
        (StatusKind.DECIDED, Outcome.REFUSE.value, SUPERSEDED),
    ]
    # The trader's lookup explains the code (reasons.py), in both languages.
    assert "version" in CATALOGUE[SUPERSEDED].en
    assert CATALOGUE[SUPERSEDED].fr


def test_the_trader_lookup_shows_the_superseded_version_refused(hub: Hub) -> None:
    outboxes = [
        hub.intake.handle(declaration_xml(version=1), at(0)),
        hub.intake.handle(declaration_xml(version=2), at(1)),
    ]
    history = [
        status.model_dump(mode="json", exclude_none=True)
        for outbox in outboxes
        for status in hub.statuses(outbox)
    ]
    shown = trader_status(REF, history, confidential={"dga"})
    assert (shown["version"], shown["state"]) == (2, "CHECKING")
    assert [
        (e["kind"], e.get("outcome"), e["detail"]) for e in shown["history"] if e["version"] == 1
    ][-1] == ("DECIDED", "REFUSE", SUPERSEDED)


def test_the_superseded_decision_counts_no_document_override_or_rollout(hub: Hub) -> None:
    """It was taken on no document: the statistics get no document use for it."""
    override = goods_item(1, mentions=("73000",))
    hub.intake.handle(declaration_xml(version=1, items=(override,)), at(0))
    second = hub.intake.handle(declaration_xml(version=2, items=(override,)), at(1))
    facts = [json.loads(r.value) for r in second.to(hub.topics.facts)]
    [decided] = [f for f in facts if f["kind"] == "DECIDED"]
    assert (decided["version"], decided["outcome"]) == (1, "REFUSE")
    assert decided["documents"] == []
    assert decided.get("override") is None
    assert decided.get("rollout", []) == []


def test_an_unconfirmed_superseded_decision_is_announced_again_on_redelivery(hub: Hub) -> None:
    hub.intake.handle(declaration_xml(version=1), at(0))
    hub.broker_up = False
    hub.intake.handle(declaration_xml(version=2), at(1))  # dies before the broker has it
    hub.broker_up = True
    again = hub.intake.handle(declaration_xml(version=2), at(1))  # redelivered
    assert (REF, 1, Outcome.REFUSE) in hub.decisions(again)


def test_a_confirmed_superseded_decision_is_not_announced_again(hub: Hub) -> None:
    hub.intake.handle(declaration_xml(version=1), at(0))
    hub.intake.handle(declaration_xml(version=2), at(1))
    third = hub.intake.handle(declaration_xml(version=3), at(2))
    assert hub.decisions(third) == [(REF, 2, Outcome.REFUSE)]


def test_an_unreadable_version_supersedes_a_pending_one_which_gets_its_decision(
    hub: Hub,
) -> None:
    """As before, what the pending version held is deleted with the refusal."""
    hub.intake.handle(declaration_xml(version=1), at(0))
    broken = declaration_xml(version=2, items=(goods_item(1, (document(quantity="-5"),)),))
    refused = hub.intake.handle(broken, at(1))
    assert hub.decisions(refused) == [(REF, 1, Outcome.REFUSE), (REF, 2, Outcome.REFUSE)]
    assert [r.reasons[0].code for r in hub.decision_objects(refused)] == [
        SUPERSEDED,
        "XML_SCHEMA",
    ]
    assert operations(hub, refused) == [(2, Operation.DELETE)]
