"""A redrive is handled as its original read again, once the log bears the claim out
(gun_hub/pipeline/redrive.py, ADR 0010): the intake and the replay memory then see a redelivery,
so redriving twice decides once, and nothing a redrive claims is taken on its word.

Driven as the hub's intake agent does (the gate, then the admission: the id claimed at
its owner, the verdict, the declaration decided) on the real intake, envelope and claims
judge; the log is a dict of the records the broker holds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gun_contract.dead_letter import HEADER_ERROR_KIND, SourcePosition, header_value
from gun_contract.effects import Effects, Headers
from gun_contract.envelope import LOG_APPEND_TIME, ContentType
from gun_contract.kafka.log_reader import LoggedRecord
from gun_contract.model.verdicts import Outcome
from gun_contract.security.entitlements import CLEARANCE_PARTY, HUB_PARTY
from gun_hub.domain.routing import RoutingTable
from gun_hub.ops.dead_letters import DeadLetterId
from gun_hub.pipeline.admission import Claim, read_claims_record
from gun_hub.pipeline.redrive import (
    REDRIVE_UNVERIFIED,
    RedriveGate,
    not_redrivable,
    redrive_headers,
)
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_declarations_admitted_once_claimed import Admission

REFERENCE = "26FRRDV00000000001"
DEAD_LETTER = DeadLetterId(0, 3)


class Log:
    """The records the broker holds, by position; counts what is read back."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, int, int], LoggedRecord] = {}
        self.reads = 0

    def put(
        self,
        position: SourcePosition,
        value: bytes,
        accepted_at: float | None = None,
        headers: Headers | None = None,
    ) -> SourcePosition:
        at = time.time() if accepted_at is None else accepted_at
        self.records[(position.topic, position.partition, position.offset)] = LoggedRecord(
            position.topic,
            position.partition,
            position.offset,
            position.key,
            value,
            tuple(headers or ()),
            int(at * 1000),
            LOG_APPEND_TIME,
        )
        return position

    async def read(self, topic: str, partition: int, offset: int) -> LoggedRecord | None:
        self.reads += 1
        return self.records.get((topic, partition, offset))


class Agent:
    """The intake agent: the redrive gate first, then the admission (a claim at the id's
    owner, its verdict, the declaration released and decided), records passed by hand."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.hub = admission.hub
        self.log = Log()
        self.gate = RedriveGate(self.log, self.hub.intake._ctx, retry_s=0)
        self.topic = self.hub.topics.declarations

    def at(self, offset: int, partition: int = 0) -> SourcePosition:
        return SourcePosition(self.topic, partition, offset, REFERENCE.encode())

    async def receive(
        self,
        value: bytes,
        position: SourcePosition,
        headers: Headers | None = None,
        accepted_at: float | None = None,
    ) -> tuple[Effects, list[Claim]]:
        """The record at ``position`` as the broker hands it to the hub: what it causes
        at once, and the claims it sends (their verdicts not back yet)."""
        at = time.time() if accepted_at is None else accepted_at
        self.log.put(position, value, at)
        arrival = await self.gate.arrival(headers or [], value, position, at)
        if not arrival.handle:
            return arrival.outbox, []
        caused, released = self.admission.gate.receive(
            value, position, arrival.accepted_at, read_as=arrival.source
        )
        assert released == []  # sealed: claimed first
        claims = [read_claims_record(r.value) for r in caused.to(self.hub.topics.claims)]
        return Effects(arrival.outbox.records + caused.records), [
            c for c in claims if isinstance(c, Claim)
        ]

    def settle(self, claims: list[Claim]) -> Effects:
        """Each claim judged at its owner, the verdict back, what it releases decided."""
        settled = Effects()
        for claim in claims:
            for admitted in self.admission.settle(self.admission.verdict(claim)):
                settled.records += admitted.records
        return settled

    async def read(
        self,
        value: bytes,
        position: SourcePosition,
        headers: Headers | None = None,
        accepted_at: float | None = None,
    ) -> Effects:
        caused, claims = await self.receive(value, position, headers, accepted_at)
        return Effects(caused.records + self.settle(claims).records)

    async def redrive(self, original: SourcePosition, offset: int) -> Effects:
        """The original's bytes and key again, at ``offset``, claiming to be it."""
        logged = self.log.records[(original.topic, original.partition, original.offset)]
        return await self.read(
            logged.value, self.at(offset), redrive_headers(original, DEAD_LETTER)
        )

    def sealed(self, xml: bytes, party: str = CLEARANCE_PARTY) -> bytes:
        return self.hub.envelope(party).seal(
            xml, recipient=HUB_PARTY, topic=self.topic, content_type=ContentType.XML
        )

    def audit(self, outbox: Effects) -> list[dict[str, object]]:
        return [json.loads(r.value) for r in outbox.to(self.hub.topics.audit)]

    def dead_letter_kinds(self, outbox: Effects) -> list[str | None]:
        return [header_value(r.headers, HEADER_ERROR_KIND) for r in outbox.to(self.hub.topics.dlq)]


@pytest.fixture
def agent(routing_table: RoutingTable, keys_dir: Path) -> Agent:
    return Agent(Admission(routing_table, keys_dir))


def exempt_declaration() -> bytes:
    """Decided at intake (nothing to ask anyone), so a decision shows at once."""
    return declaration_xml(
        reference=REFERENCE,
        items=(goods_item(1, (document("Y900", "EXEMPT-1", None, None),)),),
    )


async def test_a_record_without_the_claim_is_handled_where_it_was_read(agent: Agent) -> None:
    sent = await agent.read(agent.sealed(exempt_declaration()), agent.at(5))
    assert len(agent.hub.decisions(sent)) == 1
    assert agent.log.reads == 0  # nothing read back: the usual path costs nothing


async def test_a_declaration_never_acted_on_and_redriven_twice_is_decided_once(
    agent: Agent,
) -> None:
    """The original was refused before the envelope recorded its id (an unknown signing
    key, say): the first redrive is its first reading, the second a redelivery."""
    original = agent.log.put(agent.at(5), agent.sealed(exempt_declaration()))
    first = await agent.redrive(original, 9)
    second = await agent.redrive(original, 12)
    assert agent.hub.decisions(first) == [(REFERENCE, 1, Outcome.RELEASE)]
    assert agent.hub.decisions(second) == []
    assert agent.dead_letter_kinds(second) == []  # not a replay either
    audited = agent.audit(first) + agent.audit(second)
    redrives = [r for r in audited if r["kind"] == "REDRIVE"]
    assert [(r["origin"], r["redrive"]) for r in redrives] == [
        (f"{agent.topic}/0/5", f"{agent.topic}/0/9"),
        (f"{agent.topic}/0/5", f"{agent.topic}/0/12"),
    ]
    assert redrives[0]["dead_letter"] == f"{agent.hub.topics.dlq}/0/3"


async def test_two_redrives_in_flight_at_once_are_each_held_and_settled_as_themselves(
    agent: Agent,
) -> None:
    """Both read before either claim's verdict is back: each is held at its own place in
    the log (none replaces the other), both are claimed at the original's position, and
    the original is decided once."""
    original = agent.log.put(agent.at(5), agent.sealed(exempt_declaration()))
    logged = agent.log.records[(original.topic, 0, 5)].value
    claim = redrive_headers(original, DEAD_LETTER)
    first, first_claims = await agent.receive(logged, agent.at(9), claim)
    second, second_claims = await agent.receive(logged, agent.at(12), claim)
    assert [r["kind"] for r in agent.audit(first) + agent.audit(second)] == ["REDRIVE"] * 2
    held = agent.admission.admissions
    assert held.holds(0, 9)
    assert held.holds(0, 12)
    assert not held.holds(0, 5)
    assert [c.position for c in first_claims + second_claims] == [original.describe()] * 2
    settled = agent.settle(first_claims + second_claims)
    assert not held.holds(0, 9)
    assert not held.holds(0, 12)
    assert [d[:2] for d in agent.hub.decisions(settled)] == [(REFERENCE, 1)]
    assert agent.dead_letter_kinds(settled) == []


async def test_a_declaration_already_decided_is_not_decided_again_by_a_redrive(
    agent: Agent,
) -> None:
    original = agent.at(5)
    assert (
        len(agent.hub.decisions(await agent.read(agent.sealed(exempt_declaration()), original)))
        == 1
    )
    again = await agent.redrive(original, 9)
    assert agent.hub.decisions(again) == []
    assert agent.dead_letter_kinds(again) == []


async def test_the_same_bytes_without_the_claim_are_still_a_replay(agent: Agent) -> None:
    sealed = agent.sealed(exempt_declaration())
    await agent.read(sealed, agent.at(5))
    copy = await agent.read(sealed, agent.at(9))
    assert agent.dead_letter_kinds(copy) == ["ENVELOPE_REPLAY"]
    assert agent.hub.decisions(copy) == []


async def test_a_redriven_copy_of_a_replay_is_refused_again_as_a_replay(agent: Agent) -> None:
    """The dead letter of a copy names the copy's position: redriven, it is the copy read
    again, and the replay memory knows the message id from elsewhere."""
    sealed = agent.sealed(exempt_declaration())
    await agent.read(sealed, agent.at(5))
    copy = agent.at(9)
    assert agent.dead_letter_kinds(await agent.read(sealed, copy)) == ["ENVELOPE_REPLAY"]
    again = await agent.redrive(copy, 14)
    assert agent.dead_letter_kinds(again) == ["ENVELOPE_REPLAY"]
    assert agent.hub.decisions(again) == []


async def test_freshness_is_judged_when_the_broker_first_took_the_original(
    agent: Agent,
) -> None:
    """Redriven two hours later, past the envelope's lifetime: the broker accepted the
    original in time, and that is when freshness is judged, as the first time."""
    original = agent.log.put(agent.at(5), agent.sealed(exempt_declaration()))
    later = time.time() + 2 * 3600
    logged = agent.log.records[(original.topic, 0, 5)]
    late = await agent.read(
        logged.value, agent.at(9), redrive_headers(original, DEAD_LETTER), accepted_at=later
    )
    assert len(agent.hub.decisions(late)) == 1
    # The same bytes accepted that late without the claim: expired.
    other = agent.sealed(exempt_declaration())
    expired = await agent.read(other, agent.at(10), accepted_at=later)
    assert agent.dead_letter_kinds(expired) == ["ENVELOPE_EXPIRED"]


@pytest.mark.parametrize(
    ("claim", "offset", "why"),
    [
        ("{topic}/0/5", 3, "not an earlier record"),
        ("{topic}/0/5", 5, "not an earlier record"),
        ("{topic}/1/5", 9, "another topic or partition"),
        ("gun.responses.dgal/0/5", 9, "another topic or partition"),
        ("{topic}/0/7", 9, "no longer in the log"),
        ("{topic}/0/6", 9, "bytes differ"),
        ("{topic}/0/8", 9, "key differs"),
        ("somewhere", 9, "is not a topic/partition/offset"),
    ],
)
async def test_a_claim_the_log_does_not_bear_out_is_a_security_dead_letter(
    agent: Agent, claim: str, offset: int, why: str
) -> None:
    sealed = agent.sealed(exempt_declaration())
    agent.log.put(agent.at(5), sealed)
    agent.log.put(agent.at(6), agent.sealed(exempt_declaration()))
    agent.log.put(SourcePosition(agent.topic, 0, 8, b"ANOTHER-KEY"), sealed)
    headers = [("gun.redrive.of", claim.format(topic=agent.topic).encode())]
    refused = await agent.read(sealed, agent.at(offset), headers)
    [letter] = refused.to(agent.hub.topics.dlq)
    assert header_value(letter.headers, HEADER_ERROR_KIND) == REDRIVE_UNVERIFIED
    assert header_value(letter.headers, "gun.error.class") == "security"
    assert why in (header_value(letter.headers, "gun.error.reason") or "")
    assert agent.hub.decisions(refused) == []
    assert agent.audit(refused) == []  # the keeper audits the dead letter, not a redrive
    # Nothing was handled: the genuine original is still decided by its own redrive.
    assert len(agent.hub.decisions(await agent.redrive(agent.at(5), 20))) == 1


async def test_a_redrive_of_a_redrive_is_refused_naming_the_first_original(
    agent: Agent,
) -> None:
    """A dead letter about a redrive's own position (the intake's UNHANDLED_ERROR names
    the record it read), redriven: the claimed original is itself a redrive. Read as that
    copy, it would be judged at the copy's position and broker time, not the first
    original's (an expired envelope revived, a replay laundered): refused, naming the
    first original, whose own dead letter is the one to redrive."""
    sealed = agent.sealed(exempt_declaration())
    original = agent.log.put(agent.at(5), sealed)
    copy = agent.log.put(agent.at(9), sealed, headers=redrive_headers(original, DEAD_LETTER))
    refused = await agent.read(sealed, agent.at(12), redrive_headers(copy, DEAD_LETTER))
    [letter] = refused.to(agent.hub.topics.dlq)
    assert header_value(letter.headers, HEADER_ERROR_KIND) == REDRIVE_UNVERIFIED
    reason = header_value(letter.headers, "gun.error.reason") or ""
    assert f"itself a redrive of '{agent.topic}/0/5'" in reason
    assert agent.hub.decisions(refused) == []
    # The first original's own redrive is decided.
    assert len(agent.hub.decisions(await agent.redrive(original, 20))) == 1


def test_only_what_a_reader_refused_reading_its_own_inputs_can_be_redriven(
    agent: Agent,
) -> None:
    topics = agent.hub.topics
    assert not_redrivable("hub.intake", topics.declarations, topics) is None
    assert not_redrivable("hub.correlation", topics.responses("dgal"), topics) is None
    # An adapter honours a redrive of its requests (ADR 0010, addendum).
    assert not_redrivable("adapter.dgal", topics.requests("dgal"), topics) is None
    other = not_redrivable("adapter.dgal", topics.requests("dga"), topics)
    assert other is not None
    assert "reads" in other
    clearance = not_redrivable("clearance.reader", topics.decisions, topics, "UNHANDLED_ERROR")
    assert clearance is not None
    assert "do not honour a redrive" in clearance
    # The delivery's dead letters hold a record the hub produced, not the one it read.
    assert not_redrivable("hub.delivery", topics.declarations, topics) is not None
    assert not_redrivable("clearance.reader", topics.decisions, topics) is not None
    crossed = not_redrivable("hub.intake", topics.responses("dgal"), topics)
    assert crossed is not None
    assert "reads" in crossed
    # A replay is a copy of a message acted on already (review, stop 35).
    replay = not_redrivable("hub.intake", topics.declarations, topics, "ENVELOPE_REPLAY")
    assert replay is not None
    assert "already acted on" in replay
    assert not_redrivable("hub.intake", topics.declarations, topics, "XML_INVALID") is None


def test_a_claim_says_where_it_is_claimed_and_one_that_does_not_is_claimed_where_read() -> None:
    """Claims written before redrives (no ``read_as``) read as they did."""
    read = SourcePosition("gun.declarations", 0, 9)
    redriven = Claim("jti-1", 100, read, 1.5, "gun.declarations/0/5")
    again = read_claims_record(redriven.to_bytes())
    assert isinstance(again, Claim)
    assert (again.position, again.source.offset) == ("gun.declarations/0/5", 9)
    plain = read_claims_record(Claim("jti-2", 100, read, None).to_bytes())
    assert isinstance(plain, Claim)
    assert plain.position == "gun.declarations/0/9"
    assert b"read_as" not in Claim("jti-2", 100, read, None).to_bytes()
