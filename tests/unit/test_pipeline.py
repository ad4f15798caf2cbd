"""Intake and correlation, driven directly (no Kafka): state in, records out."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gun_contract.dead_letter import HEADER_ERROR_KIND, SourcePosition, header_value
from gun_contract.effects import Effects, OutgoingRecord
from gun_contract.envelope import ContentType
from gun_contract.model.decision import Decision
from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import AuthorityRequest, AuthorityResponse
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.security.entitlements import CLEARANCE_PARTY, GATEWAY_PARTY, HUB_PARTY
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import PartyKeys
from gun_contract.security.state_cipher import StateCipher
from gun_contract.topics import topic_registry
from gun_hub.domain.risk import RiskRules
from gun_hub.domain.rollout import RolloutBoard
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusEvent, StatusKind
from gun_hub.pipeline.audit_keeper import AuditKeeper
from gun_hub.pipeline.correlation import Correlation
from gun_hub.pipeline.deadlines import Deadlines
from gun_hub.pipeline.decision_outbox import HEADER_VERSION, OUTBOX_STATE, outbox_record_key
from gun_hub.pipeline.hub_context import HubContext
from gun_hub.pipeline.intake import Intake
from gun_hub.runtime.app import _handled
from gun_hub.security.audit import AuditTrail
from gun_hub.xml.decision_codec import DecisionCodec
from gun_hub.xml.declaration_codec import DeclarationCodec, sniff_identity
from tests.builders import answer_to, declaration_xml, document, goods_item
from tests.conftest import envelope_of

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
SOURCE = SourcePosition("gun.declarations", 0, 0)


def keyed_by_reference(handle: Callable[..., Effects]) -> Callable[..., Effects]:
    """``handle`` of a plain declaration sent without a key, keyed by its reference as a
    clearance system keys it (contract section 2): most tests here are about something
    else than the key."""

    def keyed(data: bytes, source: SourcePosition, *rest: object) -> Effects:
        if source.key is None and (identity := sniff_identity(data)) is not None:
            source = dataclasses.replace(source, key=identity.reference.encode())
        return handle(data, source, *rest)

    return keyed


class Hub:
    """The two processing steps sharing one dict as their case store."""

    def __init__(
        self,
        routing: RoutingTable,
        keys_dir: Path,
        open_cases: dict[bytes, bytes] | None = None,
        risk_rules: RiskRules | None = None,
        cases: Any = None,
        *,
        seal_takeover_notices: bool = True,
    ) -> None:
        """``cases``: the case store, a dict unless given (the worker's sealed store in
        the tests of values that do not open)."""
        self.topics = topic_registry("gun", routing.authorities)
        self.keys_dir = keys_dir
        self.cases: Any = {} if cases is None else cases
        self.audit_heads: dict[bytes, bytes] = {}
        self.open_cases: dict[bytes, bytes] = {} if open_cases is None else open_cases
        self.now = NOW
        self.control_report_after_s = 3 * 24 * 3600.0
        # Whether the answers on the response partitions are all read (defect 10), and
        # the authorities whose responses partition has answers unread meanwhile (one
        # adapter flooding its own topic).
        self.answers_read = True
        self.unread_answers_of: set[str] = set()
        # What seals the decision outbox (the hub's state key), as the publisher opens it.
        self.outbox_cipher = StateCipher.load(keys_dir, HUB_PARTY)
        # The rollout modes in force (none set: every authority enforced).
        self.rollout = RolloutBoard()
        self.context = context = HubContext(
            topics=self.topics,
            routing=routing,
            envelope=envelope_of(HUB_PARTY, self.topics, keys_dir),
            audit=AuditTrail(self.audit_heads, PartyKeys.load(keys_dir, HUB_PARTY).signing_key),
            cases=self.cases,
            open_cases=self.open_cases,
            risk_rules=risk_rules or RiskRules(),
            request_deadline_s=30,
            clock=lambda: self.now,
            outbox_cipher=self.outbox_cipher,
            outbox_partitions=4,
            answers_read=self._answers_read,
            control_report_after_s=self.control_report_after_s,
            seal_takeover_notices=seal_takeover_notices,
            rollout=self.rollout,
        )
        # Plain XML, as in local development; sealing is tested on its own
        # (tests/unit/test_sealed_declarations.py).
        self.intake = Intake(context, DeclarationCodec(), self.cases, accept_plain=True)
        self.correlation = Correlation(context, self.cases)
        self.audit_keeper = AuditKeeper(context)
        self.deadlines = Deadlines(context, self.cases)
        # The broker acknowledges everything at once, unless a test plays a crash, or a
        # delivery that fails for good in a worker that goes on.
        self.broker_up = True
        self.broker_refusing = False
        # Deliveries on their way (neither acknowledged nor failed yet), when a test holds them.
        self.broker_slow = False
        self.on_their_way: list[Effects] = []
        # The record's key as given, a null one included (tests of the key itself).
        self.intake_as_keyed = self._delivered(self.intake.handle)
        self.intake.handle = keyed_by_reference(self.intake_as_keyed)  # type: ignore[method-assign]
        self.correlation.handle = self._delivered(self.correlation.handle)  # type: ignore[method-assign]
        self.deadlines.handle = self._delivered(self.deadlines.handle)  # type: ignore[method-assign]

    def _answers_read(self, partition: int, authorities: Collection[str] | None = None) -> bool:
        """As the deadline sweep answers (runtime/deadline_sweep.py): the declarations and
        the responses of ``authorities`` (None: every one) read through."""
        waited = set(self.topics.authorities if authorities is None else authorities)
        return self.answers_read and not waited & self.unread_answers_of

    def _delivered(self, handle: Callable[..., Effects]) -> Callable[..., Effects]:
        def handled(*args: object) -> Effects:
            outbox = handle(*args)
            if self.broker_slow:
                self.on_their_way.append(outbox)
            elif self.broker_refusing:
                for gone in outbox.if_undelivered:
                    gone()
            elif self.broker_up:
                for confirm in outbox.after_delivery:
                    confirm()
            else:
                # The worker dies with its deliveries: what it was announcing is forgotten
                # (a new process remembers nothing in flight).
                self.context.announcing.clear()
            return outbox

        return handled

    def answer(self, outbox: Effects, authority: str, verdict: Verdict) -> Effects:
        """What ``authority``'s adapter would reply to the last request in ``outbox`` (a
        decision announced again comes first, with its follow-ups)."""
        record = outbox.to(self.topics.requests(authority))[-1]
        adapter = envelope_of(authority, self.topics, self.keys_dir)
        request = AuthorityRequest.model_validate_json(
            adapter.open(record.value, topic=self.topics.requests(authority)).payload
        )
        return self.respond(answer_to(request, verdict))

    def respond(self, response: AuthorityResponse) -> Effects:
        """``response`` sealed by its authority's adapter and handled by the hub."""
        authority = response.authority
        adapter = envelope_of(authority, self.topics, self.keys_dir)
        sealed = adapter.seal(
            response.model_dump_json().encode(),
            recipient=HUB_PARTY,
            topic=self.topics.responses(authority),
            content_type=ContentType.JSON,
        )
        return self.correlation.handle(
            sealed,
            SourcePosition(self.topics.responses(authority), 0, 0, response.reference.encode()),
        )

    def decisions(self, outbox: Effects) -> list[tuple[str, int, Outcome]]:
        return [(d.reference, d.version, d.outcome) for d in self.decision_objects(outbox)]

    def decision_objects(self, outbox: Effects) -> list[Decision]:
        """Decisions in the outbox, sealed to the hub (the publisher seals them on)."""
        return [
            DecisionCodec().decode(self.outbox_document(r))
            for r in outbox.to(self.topics.decision_outbox)
        ]

    def outbox_document(self, record: OutgoingRecord) -> bytes:
        """The decision XML of an outbox record, opened as the publisher opens it."""
        version = next(v for k, v in record.headers if k == HEADER_VERSION)
        return self.outbox_cipher.open(
            OUTBOX_STATE, outbox_record_key(record.key or b"", version), record.value
        )

    def statuses(self, outbox: Effects) -> list[StatusEvent]:
        return [StatusEvent.model_validate_json(r.value) for r in outbox.to(self.topics.status)]

    def status_kinds(self, outbox: Effects) -> list[StatusKind]:
        return [status.kind for status in self.statuses(outbox)]

    def envelope(self, party: str) -> JoseEnvelope:
        return envelope_of(party, self.topics, self.keys_dir)

    def sealed_only(self) -> Hub:
        """This hub with its intake as in production: sealed declarations only, under the
        key they came with."""
        strict = Intake(self.intake._ctx, DeclarationCodec(), self.cases)
        self.intake.handle = self._delivered(strict.handle)  # type: ignore[method-assign]
        return self

    def sealed_by_clearance(self, xml: bytes) -> bytes:
        """``xml`` as the clearance system seals a declaration to the hub."""
        return self._declaration_sealed_by(CLEARANCE_PARTY, xml)

    def sealed_by_gateway(self, xml: bytes) -> bytes:
        """``xml`` as the intake gateway seals what a trader lodges."""
        return self._declaration_sealed_by(GATEWAY_PARTY, xml)

    def _declaration_sealed_by(self, party: str, xml: bytes) -> bytes:
        return self.envelope(party).seal(
            xml, recipient=HUB_PARTY, topic=self.topics.declarations, content_type=ContentType.XML
        )


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


def test_a_valid_answer_releases_the_declaration(hub: Hub) -> None:
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    assert hub.decisions(sent) == []
    assert len(sent.to(hub.topics.requests("dgal"))) == 1
    decided = hub.answer(sent, "dgal", Verdict.VALID)
    assert hub.decisions(decided) == [("26FR000690I0000012", 1, Outcome.RELEASE)]


def test_one_refusal_among_three_authorities_refuses(hub: Hub) -> None:
    xml = declaration_xml(
        items=(
            goods_item(1, (document("N853", "CHEDP-1"), document("C638", "CITES-1"))),
            goods_item(2, (document("LEMG", "LIC-1", 1, "2", "NAR"),)),
        )
    )
    sent = hub.intake.handle(xml, SOURCE)
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.VALID)) == []
    assert hub.decisions(hub.answer(sent, "dga", Verdict.VALID)) == []
    final = hub.answer(sent, "cites", Verdict.NOT_FOUND)
    assert hub.decisions(final) == [("26FR000690I0000012", 1, Outcome.REFUSE)]


def test_a_redelivered_answer_does_not_decide_twice(hub: Hub) -> None:
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    assert len(hub.decisions(hub.answer(sent, "dgal", Verdict.VALID))) == 1
    again = hub.answer(sent, "dgal", Verdict.VALID)
    assert hub.decisions(again) == []
    assert hub.status_kinds(again) == [StatusKind.LATE_ANSWER_IGNORED]


def test_a_copy_of_a_known_version_is_ignored_and_recorded(hub: Hub) -> None:
    """A copy at another position; the same record read again is a redelivery
    (tests/unit/test_versions_and_recovery.py)."""
    hub.intake.handle(declaration_xml(), SOURCE)
    again = hub.intake.handle(declaration_xml(), SourcePosition("gun.declarations", 0, 1))
    assert again.to(hub.topics.requests("dgal")) == []
    assert hub.status_kinds(again) == [StatusKind.IGNORED_STALE_VERSION]


def test_a_lower_version_after_a_higher_one_is_ignored(hub: Hub) -> None:
    hub.intake.handle(declaration_xml(version=3), SOURCE)
    late = hub.intake.handle(declaration_xml(version=2), SOURCE)
    assert hub.status_kinds(late) == [StatusKind.IGNORED_STALE_VERSION]
    assert hub.decisions(late) == []


def test_a_higher_version_supersedes_a_pending_one(hub: Hub) -> None:
    first = hub.intake.handle(declaration_xml(version=1), SOURCE)
    second = hub.intake.handle(declaration_xml(version=2), SOURCE)
    assert StatusKind.SUPERSEDED in hub.status_kinds(second)
    # The answer for version 1 arrives late: it must not decide anything.
    assert hub.decisions(hub.answer(first, "dgal", Verdict.VALID)) == []
    assert hub.decisions(hub.answer(second, "dgal", Verdict.VALID)) == [
        ("26FR000690I0000012", 2, Outcome.RELEASE)
    ]


def test_prelodged_asks_for_a_check_and_gives_advice(hub: Hub) -> None:
    sent = hub.intake.handle(declaration_xml(stage=Stage.PRELODGED), SOURCE)
    [record] = sent.to(hub.topics.requests("dgal"))
    request = AuthorityRequest.model_validate_json(
        envelope_of("dgal", hub.topics, hub.keys_dir).open(record.value, topic=record.topic).payload
    )
    assert request.operation.value == "CHECK"
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.QUANTITY_INSUFFICIENT)) == [
        ("26FR000690I0000012", 1, Outcome.ADVICE)
    ]


def test_a_malformed_declaration_is_refused_and_dead_lettered(hub: Hub) -> None:
    broken = declaration_xml(items=(goods_item(1, (document(quantity="-5"),)),))
    out = hub.intake.handle(broken, SOURCE)
    assert hub.decisions(out) == [("26FR000690I0000012", 1, Outcome.REFUSE)]
    [dead] = out.to(hub.topics.dlq)
    assert dead.value == broken
    assert header_value(dead.headers, HEADER_ERROR_KIND) == "XML_SCHEMA"


def test_a_tampered_response_is_dead_lettered_not_acted_on(hub: Hub) -> None:
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    out = hub.correlation.handle(b"not-an-envelope", SourcePosition("gun.responses.dgal", 0, 0))
    assert hub.decisions(out) == []
    [dead] = out.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == "ENVELOPE_MALFORMED"
    assert dead.value == b"not-an-envelope"
    assert len(hub.decisions(hub.answer(sent, "dgal", Verdict.VALID))) == 1


def test_every_decision_is_appended_to_the_audit_chain_of_its_partition(hub: Hub) -> None:
    sent = hub.intake.handle(declaration_xml(), SourcePosition("gun.declarations", 2, 40))
    decided = hub.answer(sent, "dgal", Verdict.VALID)
    [audit] = decided.to(hub.topics.audit)
    record = json.loads(audit.value)
    assert audit.partition == 0  # the answer's partition in Hub.answer
    assert (record["kind"], record["reference"], record["outcome"]) == (
        "DECISION",
        "26FR000690I0000012",
        "RELEASE",
    )
    [sealed] = decided.to(hub.topics.decision_outbox)
    assert record["decision_sha256"] == hashlib.sha256(hub.outbox_document(sealed)).hexdigest()


def test_a_decision_lost_with_a_dying_worker_is_announced_again_never_lost(hub: Hub) -> None:
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    hub.broker_up = False  # the worker dies before the broker confirms the decision
    first = hub.answer(sent, "dgal", Verdict.VALID)
    assert hub.decisions(first) == [("26FR000690I0000012", 1, Outcome.RELEASE)]
    hub.broker_up = True  # restarted: the answer is redelivered
    again = hub.answer(sent, "dgal", Verdict.VALID)
    assert hub.decisions(again) == [("26FR000690I0000012", 1, Outcome.RELEASE)]
    assert hub.decision_objects(again)[0].decided_at == hub.decision_objects(first)[0].decided_at
    # Once confirmed, a further redelivery decides nothing.
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.VALID)) == []


def test_a_decision_whose_delivery_failed_for_good_is_announced_again_by_the_same_worker(
    hub: Hub,
) -> None:
    """A delivery that fails for good stops the agent, and faust's supervisor starts it
    again in the same process: the decision was still counted as on its way, so the
    answer read again announced nothing until the worker restarted (found by review in
    stop 32)."""
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    hub.broker_refusing = True
    first = hub.answer(sent, "dgal", Verdict.VALID)
    assert hub.decisions(first) == [("26FR000690I0000012", 1, Outcome.RELEASE)]
    hub.broker_refusing = False  # the agent started again; the answer is read again
    again = hub.answer(sent, "dgal", Verdict.VALID)
    assert hub.decisions(again) == [("26FR000690I0000012", 1, Outcome.RELEASE)]


def test_a_decision_on_its_way_when_its_partition_was_revoked_is_announced_again(
    hub: Hub,
) -> None:
    """An eager rebalance revokes the partition and a sticky assignor gives it back: the
    answer is read again from the committed offset while the decision's delivery is still
    on its way. Remembered as being announced, it was skipped, the answer committed past,
    and when the delivery then failed for good nothing announced it again: the decision
    never reached gun.decisions (found by the scale-out review)."""
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    hub.broker_slow = True
    first = hub.answer(sent, "dgal", Verdict.VALID)
    assert hub.decisions(first) == [("26FR000690I0000012", 1, Outcome.RELEASE)]
    hub.context.give_up({0})  # the partition revoked (and assigned back)
    again = hub.answer(sent, "dgal", Verdict.VALID)
    assert hub.decisions(again) == [("26FR000690I0000012", 1, Outcome.RELEASE)]


def test_an_announcement_let_go_after_it_was_made_again_does_not_forget_the_new_one(
    hub: Hub,
) -> None:
    """The first settling, its partition gone, ends with its ``if_undelivered`` after the
    answer read again announced the decision anew: the new announcement is still on its
    way, and is not made a third time."""
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    hub.broker_slow = True
    hub.answer(sent, "dgal", Verdict.VALID)
    hub.context.give_up({0})
    hub.answer(sent, "dgal", Verdict.VALID)
    first, _second = hub.on_their_way
    for gone in first.if_undelivered:
        gone()
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.VALID)) == []


def test_a_revocation_forgets_only_the_announcements_of_the_partitions_revoked(
    hub: Hub,
) -> None:
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    hub.broker_slow = True
    hub.answer(sent, "dgal", Verdict.VALID)
    hub.context.give_up({1, 2})
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.VALID)) == []


@pytest.mark.parametrize(
    "stage", [Stage.CANCELLED, Stage.RELEASED_AFTER_CONTROL], ids=["cancelled", "released"]
)
def test_a_follow_up_stage_decision_lost_with_a_dying_worker_is_announced_again(
    hub: Hub, stage: Stage
) -> None:
    """Found by the chaos suite with two hub workers: a cancellation decided on its DELETE
    answers, the worker killed before the broker had the decision (the case's changelog
    did have it); the answer read again was taken for a late follow-up answer and the
    decision was never announced (7 lost of 8,812)."""
    lodged = hub.intake.handle(declaration_xml(), SOURCE)
    assert hub.decisions(hub.answer(lodged, "dgal", Verdict.UNAVAILABLE)) == [
        ("26FR000690I0000012", 1, Outcome.CONTROL_DOCUMENTARY)
    ]
    later = hub.intake.handle(
        declaration_xml(version=2, stage=stage), SourcePosition("gun.declarations", 0, 1)
    )
    hub.broker_up = False  # the worker dies before the broker confirms the decision
    first = hub.answer(later, "dgal", Verdict.VALID)
    [(_, version, outcome)] = hub.decisions(first)
    assert version == 2
    hub.broker_up = True  # restarted: the answer is redelivered
    again = hub.answer(later, "dgal", Verdict.VALID)
    assert hub.decisions(again) == [("26FR000690I0000012", 2, outcome)]
    assert hub.decisions(hub.answer(later, "dgal", Verdict.VALID)) == []


async def test_a_decision_announced_by_a_handling_that_failed_is_announced_again(
    hub: Hub,
) -> None:
    """A handler that announced a decision and then failed is dead-lettered, its outbox
    discarded: the decision never left. Remembered as on its way, it was skipped by every
    later reading of its case until the worker restarted (found by the review of stop 35;
    older than it)."""
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    hub.broker_slow = True  # the discarded outbox is never delivered

    def fails_after_announcing() -> Effects:
        hub.answer(sent, "dgal", Verdict.VALID)
        raise ValueError("a fault after the decision was announced")

    answer_at = SourcePosition(hub.topics.responses("dgal"), 0, 0)
    dead = await _handled(
        fails_after_announcing, b"answer", answer_at, hub.topics.dlq, "correlation",
        rollback=hub.context,
    )  # fmt: skip
    assert len(dead.to(hub.topics.dlq)) == 1
    again = hub.answer(sent, "dgal", Verdict.VALID)  # the next reading of the case
    assert hub.decisions(again) == [("26FR000690I0000012", 1, Outcome.RELEASE)]
