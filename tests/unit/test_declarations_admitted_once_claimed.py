"""Issue 11, item 8: a declaration's message id is claimed at one owner partition before
the hub acts on it, so a copy written to another partition of ``gun.declarations`` is a
replay there too (pipeline/admission.py, ADR 0008). The claim exchange is driven here
record by record, as the hub's agents pass it through Kafka; the real broker runs it in
tests/e2e/test_replay_across_partitions.py."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from gun_contract.dead_letter import (
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    SourcePosition,
    header_value,
)
from gun_contract.effects import Effects
from gun_contract.envelope import ContentType
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.security.entitlements import CLEARANCE_PARTY, HUB_PARTY
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.admission import (
    AdmissionGate,
    Admissions,
    Claim,
    ClaimJudge,
    ClaimVerdict,
    Waiting,
    claim_partition,
    claims_memory,
    read_claims_record,
)
from gun_hub.pipeline.intake import Intake
from gun_hub.xml.declaration_codec import DeclarationCodec
from tests.builders import declaration_xml
from tests.unit.test_pipeline import Hub

REF = "26FR000690I0000012"
PARTITIONS = 4


class Admission:
    """The hub's intake, claims judge and admissions, records passed by hand."""

    def __init__(
        self,
        routing: RoutingTable,
        keys_dir: Path,
        read_from: Callable[[int], int | None] | None = None,
        committed: Callable[[int], int | None] | None = None,
    ) -> None:
        self.hub = Hub(routing, keys_dir)
        self.intake = Intake(self.hub.intake._ctx, DeclarationCodec(), self.hub.cases)
        self.topics = self.hub.topics
        self._read_from, self._committed = read_from, committed
        self.restart()
        self.claimed_ids: dict[bytes, bytes] = {}
        self.judge = ClaimJudge(
            claims_memory(
                self.claimed_ids,
                PARTITIONS,
                keep_after_expiry_s=300,
                readable_s=14 * 24 * 3600,
            ),
            self.topics.claims,
        )

    def restart(self) -> None:
        """A crash or a reassignment: what the worker held in memory is gone (the cases
        and the claimed ids are tables, kept)."""
        self.admissions = Admissions(self._read_from, self._committed)
        self.gate = AdmissionGate(self.intake, self.admissions, self.topics.claims, PARTITIONS)

    def seal(self, xml: bytes) -> bytes:
        return self.hub.envelope(CLEARANCE_PARTY).seal(
            xml, recipient=HUB_PARTY, topic=self.topics.declarations, content_type=ContentType.XML
        )

    def receive(self, data: bytes, source: SourcePosition) -> tuple[Effects, Claim]:
        outbox, released = self.gate.receive(data, source, accepted_at=None)
        assert released == []
        [record] = outbox.to(self.topics.claims)
        claim = read_claims_record(record.value)
        assert isinstance(claim, Claim)
        assert record.partition == claim_partition(claim.message_id, PARTITIONS)
        return outbox, claim

    def verdict(self, claim: Claim) -> ClaimVerdict:
        [record] = self.judge.judge(claim).to(self.topics.claims)
        verdict = read_claims_record(record.value)
        assert isinstance(verdict, ClaimVerdict)
        assert record.partition == claim.source.partition  # back where the case lives
        return verdict

    def settle(self, verdict: ClaimVerdict) -> list[Effects]:
        admitted = []
        for waiting in self.gate.settle(verdict):
            outbox = self.gate.admit(waiting)
            for confirm in outbox.after_delivery:
                confirm()
            admitted.append(outbox)
        return admitted

    def through(self, data: bytes, source: SourcePosition) -> list[Effects]:
        _, claim = self.receive(data, source)
        return self.settle(self.verdict(claim))


@pytest.fixture
def admission(routing_table: RoutingTable, keys_dir: Path) -> Admission:
    return Admission(routing_table, keys_dir)


def at(partition: int, offset: int) -> SourcePosition:
    return SourcePosition("gun.declarations", partition, offset, REF.encode())


def test_a_sealed_declaration_is_acted_on_only_once_its_id_is_claimed(
    admission: Admission,
) -> None:
    caused, claim = admission.receive(admission.seal(declaration_xml()), at(0, 0))
    assert caused.to(admission.topics.requests("dgal")) == []
    assert admission.hub.cases == {}
    assert admission.admissions.holds(0, 0)

    [admitted] = admission.settle(admission.verdict(claim))
    assert len(admitted.to(admission.topics.requests("dgal"))) == 1
    assert not admission.admissions.holds(0, 0)
    assert admission.hub.decisions(admission.hub.answer(admitted, "dgal", Verdict.VALID)) == [
        (REF, 1, Outcome.RELEASE)
    ]


def test_a_copy_on_another_partition_is_dead_lettered_as_a_replay_and_opens_no_case(
    admission: Admission,
) -> None:
    sealed = admission.seal(declaration_xml())
    admission.through(sealed, at(0, 0))
    cases = dict(admission.hub.cases)

    [refused] = admission.through(sealed, at(1, 0))
    [dead] = refused.to(admission.topics.dlq)
    assert dead.value == sealed  # kept as received: still encrypted
    assert header_value(dead.headers, HEADER_ERROR_KIND) == "ENVELOPE_REPLAY"
    assert "gun.declarations/0/0" in (header_value(dead.headers, HEADER_ERROR_REASON) or "")
    assert refused.to(admission.topics.requests("dgal")) == []
    assert refused.to(admission.topics.status) == []
    assert admission.hub.cases == cases


def test_the_same_record_read_again_is_a_redelivery_not_a_replay(
    admission: Admission,
) -> None:
    sealed = admission.seal(declaration_xml())
    admission.through(sealed, at(0, 5))
    [again] = admission.through(sealed, at(0, 5))
    assert again.to(admission.topics.dlq) == []


def test_verdicts_returning_out_of_order_release_declarations_in_log_order(
    admission: Admission,
) -> None:
    """Claims of one partition go to different owners, whose verdicts race back."""
    _, first = admission.receive(admission.seal(declaration_xml(version=1)), at(2, 10))
    _, second = admission.receive(admission.seal(declaration_xml(version=2)), at(2, 11))
    assert admission.settle(admission.verdict(second)) == []  # version 1 still waits
    released = admission.settle(admission.verdict(first))
    assert len(released) == 2
    v1, v2 = released
    assert v1.to(admission.topics.requests("dgal"))
    # Version 2 supersedes version 1, as when they were read in that order.
    superseded = [r for r in v2.to(admission.topics.status) if b"SUPERSEDED" in r.value]
    assert superseded


def test_a_verdict_for_a_declaration_no_longer_held_is_ignored(admission: Admission) -> None:
    """A partition taken from this worker: its next owner reads and claims it again."""
    _, claim = admission.receive(admission.seal(declaration_xml()), at(3, 0))
    admission.admissions.forget([3])
    assert admission.settle(admission.verdict(claim)) == []
    assert admission.hub.cases == {}


def test_an_unreadable_declaration_is_dead_lettered_without_a_claim(
    admission: Admission,
) -> None:
    outbox, released = admission.gate.receive(b"eyJnot-an-envelope", at(0, 0), None)
    assert released == []
    assert outbox.to(admission.topics.claims) == []
    assert len(outbox.to(admission.topics.dlq)) == 1
    assert not admission.admissions.holds(0, 0)


def test_a_declaration_whose_message_id_is_not_text_is_refused_and_holds_none_back(
    admission: Admission, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lone surrogate in the ``jti`` (no valid UTF-8) made the claim's key unencodable
    after the declaration was put waiting: dead-lettered as an unhandled error, yet held
    for ever, and every declaration after it on its partition with it (found by review in
    stop 32). Now the envelope refuses it (since stop 37 as a header that is not JSON:
    headers are read as untrusted JSON, which refuses a lone surrogate), and a claim is
    built before anything waits for it."""
    monkeypatch.setattr(uuid, "uuid4", lambda: SimpleNamespace(hex="\ud800"))
    odd = admission.seal(declaration_xml())
    monkeypatch.undo()
    outbox, released = admission.gate.receive(odd, at(0, 0), accepted_at=None)
    assert released == []
    assert outbox.to(admission.topics.claims) == []
    [dead] = outbox.to(admission.topics.dlq)
    assert "protected header is not JSON" in (header_value(dead.headers, HEADER_ERROR_REASON) or "")
    assert not admission.admissions.holds(0, 0)
    other = "26FR000690I0000099"
    after = admission.seal(declaration_xml(reference=other))
    keyed = SourcePosition("gun.declarations", 0, 1, other.encode())
    assert len(admission.through(after, keyed)) == 1  # decided, not held behind it


@pytest.mark.parametrize(
    "record",
    [b"", b"[]", b'{"kind":"claim"}', b'{"kind":"other","topic":"t","partition":0,"offset":0}'],
)
def test_anything_else_on_the_claims_topic_is_refused_with_a_reason(record: bytes) -> None:
    with pytest.raises(ValueError, match="not a claims record"):
        read_claims_record(record)


NUMBERS = ("partition", "offset", "accept_until", "accepted_at", "readable_from")
CLAIM_FIELDS = {
    "kind": "claim",
    "jti": "0f6c",
    "topic": "gun.declarations",
    "partition": 1,
    "offset": 5,
    "accept_until": 1_800_000_000,
    "accepted_at": 1_799_999_000.5,
    "readable_from": 1_799_998_000.0,
}


OUT_OF_RANGE = ["Infinity", "NaN", "-Infinity", "1e400", "1e300", "1" + "0" * 400, "true", '"7"']


@pytest.mark.parametrize(
    ("field", "value"),
    [
        *((field, value) for field in CLAIM_FIELDS if field in NUMBERS for value in OUT_OF_RANGE),
        *((field, "-5") for field in ("partition", "offset", "accept_until")),
    ],
)
def test_a_claim_whose_numbers_are_out_of_kafkas_range_is_refused(field: str, value: str) -> None:
    """Found by review in stop 34: ``Infinity`` or 1e400 raised OverflowError past the
    reader, a partition of 4096 or -5 an assertion in the producer; the claims agent
    crashed on the same record again and again."""
    text = json.dumps({k: v for k, v in CLAIM_FIELDS.items() if k != field})
    record = text[:-1] + f',"{field}":{value}}}'
    with pytest.raises(ValueError, match="not a claims record"):
        read_claims_record(record.encode())


@pytest.mark.parametrize("read_as", ["x|y", "gun.declarations/0", "a/b/c", "/0/1"])
def test_a_redrive_claim_read_as_something_that_is_no_position_is_refused(read_as: str) -> None:
    record = json.dumps(CLAIM_FIELDS | {"read_as": read_as}).encode()
    with pytest.raises(ValueError, match="not a claims record"):
        read_claims_record(record)


def test_a_claim_within_range_is_read() -> None:
    claim = read_claims_record(
        json.dumps(CLAIM_FIELDS | {"read_as": "gun.declarations/2/40"}).encode()
    )
    assert isinstance(claim, Claim)
    assert claim.readable_from == CLAIM_FIELDS["readable_from"]
    assert (claim.source.partition, claim.source.offset, claim.read_as) == (
        1,
        5,
        "gun.declarations/2/40",
    )


class Reading:
    """Where the consumer says each partition must be read from (its first record not
    handled yet): what faust has not handed over stays unread there."""

    def __init__(self) -> None:
        self.first_unhandled: dict[int, int] = {}

    def __call__(self, partition: int) -> int | None:
        return self.first_unhandled.get(partition)


def test_a_declaration_is_not_decided_past_a_record_the_hub_has_not_read(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """The chaos run's stale version: version 2 at offset 10 and version 1 at offset 11.
    faust skipped offset 10 (a rebalance suspended its flow) and handed over offset 11;
    deciding version 1 then would decide a stale version. It waits for version 2."""
    reading = Reading()
    admission = Admission(routing_table, keys_dir, read_from=reading)
    reading.first_unhandled[2] = 10
    v2 = admission.seal(declaration_xml(version=2))
    v1 = admission.seal(declaration_xml(version=1))

    assert admission.through(v1, at(2, 11)) == []  # offset 10 was never read
    assert admission.hub.cases == {}

    # The watchdog has offset 10 read again: both are released, in log order.
    newer, older = admission.through(v2, at(2, 10))
    assert newer.to(admission.topics.requests("dgal"))
    assert older.to(admission.topics.requests("dgal")) == []  # ignored: stale
    assert admission.hub.decisions(admission.hub.answer(newer, "dgal", Verdict.VALID)) == [
        (REF, 2, Outcome.RELEASE)
    ]


def test_records_read_before_a_declaration_do_not_hold_it_back_while_they_are_sent(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """A dead-lettered record before it was read (its dead letter still on its way): the
    declaration after it goes on."""
    reading = Reading()
    admission = Admission(routing_table, keys_dir, read_from=reading)
    reading.first_unhandled[1] = 4
    outbox, released = admission.gate.receive(b"eyJnot-an-envelope", at(1, 4), None)
    assert released == []
    assert outbox.to(admission.topics.dlq)
    [admitted] = admission.through(admission.seal(declaration_xml()), at(1, 5))
    assert admitted.to(admission.topics.requests("dgal"))


def test_a_declaration_held_back_is_released_once_the_offsets_before_it_are_settled(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """The broker holds nothing at offset 7 (a transaction marker): once the consumer
    knows it, the declaration at 8 is released without another record arriving."""
    reading = Reading()
    admission = Admission(routing_table, keys_dir, read_from=reading)
    reading.first_unhandled[0] = 7
    assert admission.through(admission.seal(declaration_xml()), at(0, 8)) == []
    assert admission.gate.release_ready() == []  # still unknown
    reading.first_unhandled[0] = 8
    [released] = admission.gate.release_ready()
    assert released.source == at(0, 8)


def test_a_partition_waiting_for_a_record_it_has_not_read_is_named_blocked(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """The full chaos run with two workers: a partition waiting for a skipped record was
    also paused for holding too much, so the record was never fetched again and 2,064
    declarations waited for good. The hub must know which partitions wait for a record
    (never to pause them), and which only wait for verdicts."""
    reading = Reading()
    admission = Admission(routing_table, keys_dir, read_from=reading)
    reading.first_unhandled[2] = 10
    reading.first_unhandled[1] = 0
    admission.through(admission.seal(declaration_xml(version=1)), at(2, 11))
    admission.receive(admission.seal(declaration_xml(version=2)), at(1, 0))  # no verdict yet
    assert admission.admissions.blocked() == {2: 10}
    admission.through(admission.seal(declaration_xml(version=2)), at(2, 10))
    assert admission.admissions.blocked() == {}


# -- found by review in stop 35 -------------------------------------------------------------


def test_a_copy_read_first_from_a_partition_caught_up_does_not_get_the_version_decided_twice(
    routing_table: RoutingTable, keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub back after three hours: partition 1 holds a copy of a declaration whose
    original waits in partition 0's longer backlog. Partition 1, read to the present
    first, must not make the claims memory forget the id before partition 0 is read that
    far: the original would be a first sighting too, and each partition's cases would
    decide the version (found by review in stop 35)."""
    now = time.time()
    sealed_at = now - 3 * 3600
    on_0 = Admission(routing_table, keys_dir)  # partition 0's cases (faust: per partition)
    on_1 = Admission(routing_table, keys_dir)  # partition 1's
    on_1.judge = on_0.judge  # one owner of the id's claim partition
    monkeypatch.setattr(time, "time", lambda: sealed_at)
    sealed = on_0.seal(declaration_xml())
    monkeypatch.undo()

    [copy_admitted] = _through_at(on_1, sealed, at(1, 3), sealed_at + 60)
    judge = on_0.judge
    [(message_id, _)] = on_0.claimed_ids.items()
    owner = claim_partition(message_id.decode(), PARTITIONS)
    others = 0
    while others < 1_000:  # partition 1 read on to the present
        other = uuid.uuid4().hex
        if claim_partition(other, PARTITIONS) == owner:
            position = SourcePosition("gun.declarations", 1, 10 + others)
            judge.judge(Claim(other, int(now) + 3_900, position, now, readable_from=now))
            others += 1

    assert _through_at(on_0, sealed, at(0, 500), sealed_at) == []  # a replay now
    assert on_1.hub.decisions(on_1.hub.answer(copy_admitted, "dgal", Verdict.VALID)) == [
        (REF, 1, Outcome.RELEASE)
    ]


def _through_at(
    admission: Admission, sealed: bytes, source: SourcePosition, accepted_at: float
) -> list[Effects]:
    """Through intake, claim and verdict, read at the broker time ``accepted_at``; the
    declarations admitted (a replay is dead-lettered instead)."""
    outbox, released = admission.gate.receive(sealed, source, accepted_at)
    assert released == []
    [record] = outbox.to(admission.topics.claims)
    claim = read_claims_record(record.value)
    assert isinstance(claim, Claim)
    admitted = admission.settle(admission.verdict(claim))
    return [outbox for outbox in admitted if outbox.to(admission.topics.dlq) == []]


# -- found by review, stop 36 ---------------------------------------------------------------


def _claim_of_a_declaration_read_at(
    admission: Admission, source: SourcePosition, accepted_at: float, owner: int
) -> Claim:
    """A fresh declaration read at ``source`` whose claim goes to claims partition
    ``owner``: the claim its intake sends there (judged too, its verdict let be)."""
    while True:
        # Keyed by its reference, as ``source`` is (a record under another key is
        # refused before its claim: review stop 38-s, S2).
        sealed = admission.seal(declaration_xml(reference=(source.key or b"").decode()))
        outbox, _ = admission.gate.receive(sealed, source, accepted_at)
        [record] = outbox.to(admission.topics.claims)
        claim = read_claims_record(record.value)
        assert isinstance(claim, Claim)
        if claim_partition(claim.message_id, PARTITIONS) == owner:
            admission.judge.judge(claim)
            return claim
        admission.admissions.forget([source.partition])  # not this one: as if never read


def _others_read_and_committed_on(
    judge: ClaimJudge, owner: int, partitions: tuple[int, ...], now: float, count: int = 1000
) -> None:
    """Every declarations partition in ``partitions`` read on, and committed, to the
    present: claims reaching claims partition ``owner`` from each, as the hub writes
    them (enough for the owner to look for what it may forget several times)."""
    n = 0
    while n < count:
        other = uuid.uuid4().hex
        if claim_partition(other, PARTITIONS) == owner:
            partition = partitions[n % len(partitions)]
            record = Claim(
                other,
                int(now) + 3_900,
                SourcePosition("gun.declarations", partition, 10_000 + n),
                now,
                readable_from=now,
            )
            claim = read_claims_record(record.to_bytes())  # through the wire format
            assert isinstance(claim, Claim)
            judge.judge(claim)
            n += 1


@dataclass
class Replayed:
    """Where the review's scenario leaves the hub before the copy is read again."""

    on_0: Admission  # partition 0's worker (and the owner of the id's claims partition)
    on_1: Admission  # partition 1's
    original: Effects  # the original's admission, on partition 0
    sealed: bytes
    sealed_at: float
    message_id: bytes


def _a_copy_judged_a_replay_then_everything_read_on(
    routing_table: RoutingTable,
    keys_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    committed_on_1: Callable[[int], int | None],
) -> Replayed:
    """The review's scenario up to the re-reading: the hub back after three hours, the
    original at 0/1 and a copy at 1/3 appended a minute later; the copy judged a replay
    and dead-lettered; then every declarations partition read on to the present (the
    intake runs ahead of the commit point: faust skipped a record before offset 3, and
    everything behind it is held, up to ``admission_limit``)."""
    now = time.time()
    sealed_at = now - 3 * 3600
    on_0 = Admission(routing_table, keys_dir, committed=lambda _partition: None)
    on_1 = Admission(routing_table, keys_dir, committed=committed_on_1)
    on_1.judge = on_0.judge  # one owner of the id's claim partition
    monkeypatch.setattr(time, "time", lambda: sealed_at)
    sealed = on_0.seal(declaration_xml())
    monkeypatch.undo()

    [original] = _through_at(on_0, sealed, at(0, 1), sealed_at)
    assert _through_at(on_1, sealed, at(1, 3), sealed_at + 60) == []  # the copy: a replay
    [(message_id, _)] = on_0.claimed_ids.items()
    owner = claim_partition(message_id.decode(), PARTITIONS)
    # Partition 1 read on to the present: its claims reach the owner too.
    _claim_of_a_declaration_read_at(on_1, at(1, 10_000), now, owner)
    _others_read_and_committed_on(on_0.judge, owner, (0, 2, 3), now)
    return Replayed(on_0, on_1, original, sealed, sealed_at, message_id)


def test_a_copy_judged_a_replay_stays_one_when_read_again_from_its_partitions_commit_point(
    routing_table: RoutingTable, keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review, stop 36 (A). The claims memory forgot an id once every
    declarations partition had been *read* past its expiry (each source partition's
    clock the broker time of the claims read from it). But partition 1, its commit point
    still before the copy at offset 3, is read again from there after a crash, a
    rebalance or a watchdog seek (ADR 0009): the copy's claim, judged again after the id
    was forgotten, was a first sighting, and partition 1 decided REF v1 a second time.
    A source partition's clock now follows the broker time of the first record at its
    *confirmed* commit point, which each claim carries: the id is kept while the copy
    can be read again."""
    hub = _a_copy_judged_a_replay_then_everything_read_on(
        routing_table, keys_dir, monkeypatch, committed_on_1=lambda _partition: 3
    )
    assert hub.message_id in hub.on_0.claimed_ids  # partition 1 can read the copy again

    hub.on_1.restart()  # a crash before partition 1 was committed past offset 3
    admitted_again = _through_at(hub.on_1, hub.sealed, at(1, 3), hub.sealed_at + 60)
    assert admitted_again == []  # still a replay: dead-lettered again
    on_0 = hub.on_0
    assert on_0.hub.decisions(on_0.hub.answer(hub.original, "dgal", Verdict.VALID)) == [
        (REF, 1, Outcome.RELEASE)
    ]


def test_an_id_whose_copy_was_refused_is_kept_past_every_commit_while_the_copy_can_be_redriven(
    routing_table: RoutingTable, keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Partition 1's commit point confirmed past the copy (at the record read at 10,000,
    read at the present): the copy is never read again by the hub, but it stays in the
    log, and a redrive claim naming it is judged at its position (ADR 0008's addendum of
    stop 47). Until stop 47 the id was forgotten here. Still bounded: kept until the copy
    can no longer be in the log, 14 days past its broker time
    (tests/unit/test_hub_replay_memory_is_bounded.py)."""
    hub = _a_copy_judged_a_replay_then_everything_read_on(
        routing_table, keys_dir, monkeypatch, committed_on_1=lambda _partition: 10_000
    )
    kept = hub.on_0.claimed_ids[hub.message_id]
    assert kept.rpartition(b"|")[2] == str(int(hub.sealed_at + 60) + 14 * 24 * 3600).encode()


def test_a_replay_verdict_is_not_overturned_by_a_later_first_sighting_for_a_held_declaration() -> (
    None
):
    """Found by review, stop 36 (1, the compound zombie form): two judgings of one claim
    (a zombie owner and its successor, or an owner judging its partition again from its
    commit point after a deletion it had made) answer differently, and the declaration,
    still held behind an unread offset, took whichever came last: a replay admitted."""
    admissions = Admissions(lambda partition: 2)  # offset 2 not read yet
    source = SourcePosition("gun.declarations", 1, 3)
    admissions.wait(Waiting(source, b"sealed", b"<xml/>", "jti-1"))
    assert admissions.settle(ClaimVerdict("jti-1", source, False, "gun.declarations/0/1")) == []
    assert admissions.settle(ClaimVerdict("jti-1", source, True, "gun.declarations/1/3")) == []
    admissions.saw(1, 2)
    [released] = admissions.release_ready()
    assert released.first is False, "the replay verdict was overwritten by a later 'first'"
    assert released.held_at == "gun.declarations/0/1"


def test_a_replay_verdict_after_a_first_sighting_for_a_held_declaration_refuses_it() -> None:
    """Nothing was acted on while it is held: of two answers, the replay holds (another
    position may have been admitted on the id's later first sighting)."""
    admissions = Admissions(lambda partition: 2)
    source = SourcePosition("gun.declarations", 1, 3)
    admissions.wait(Waiting(source, b"sealed", b"<xml/>", "jti-1"))
    admissions.settle(ClaimVerdict("jti-1", source, True, "gun.declarations/1/3"))
    admissions.settle(ClaimVerdict("jti-1", source, False, "gun.declarations/0/1"))
    admissions.saw(1, 2)
    [released] = admissions.release_ready()
    assert (released.first, released.held_at) == (False, "gun.declarations/0/1")


@pytest.mark.parametrize("acted_on", [True, False])
def test_a_copy_refused_as_a_replay_and_read_again_stays_refused_whatever_its_new_verdict(
    acted_on: bool,
) -> None:
    """The copy dead-lettered as a replay and read again by the same worker (a watchdog
    seek before its partition's commit passed it), or read again while still held (the
    newer reading replaces the older): the replay verdict acted on, or received, stands
    against a first sighting judged after the id was forgotten."""
    start = {1: 3 if acted_on else 2}  # else: offset 2 not read yet, the copy held
    admissions = Admissions(start.get)
    source = SourcePosition("gun.declarations", 1, 3)
    admissions.wait(Waiting(source, b"sealed", b"<xml/>", "jti-1"))
    replay = ClaimVerdict("jti-1", source, False, "gun.declarations/0/1")
    if acted_on:
        [refused] = admissions.settle(replay)
        assert refused.first is False
    else:
        assert admissions.settle(replay) == []
        admissions.saw(1, 2)
    admissions.wait(Waiting(source, b"sealed", b"<xml/>", "jti-1"))  # read again
    [released] = admissions.settle(ClaimVerdict("jti-1", source, True, "gun.declarations/1/3"))
    assert (released.first, released.held_at) == (False, "gun.declarations/0/1")


def test_a_claim_carries_the_broker_time_of_the_record_at_its_partitions_confirmed_commit(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """Found by review, stop 36 (A): what a claim says of its partition is how far it can
    no longer be read again, not how far it was read. That is the broker time of the
    record at the offset the broker confirmed committed (a crash before a commit is
    confirmed reads again from the older one), as the intake read it; unknown until the
    intake has read it or a record before it."""
    committed = {1: 3}
    admission = Admission(routing_table, keys_dir, committed=committed.get)
    t = time.time() - 60  # the broker's time of each record: t + its offset

    def claimed_at(offset: int) -> float | None:
        sealed = admission.seal(declaration_xml())
        outbox, _ = admission.gate.receive(sealed, at(1, offset), t + offset)
        [record] = outbox.to(admission.topics.claims)
        claim = read_claims_record(record.value)
        assert isinstance(claim, Claim)
        assert claim.accepted_at == t + offset  # the log clock still hears of it
        return claim.readable_from

    assert claimed_at(5) is None  # nothing read at or before offset 3 yet
    admission.gate.receive(b"eyJnot-an-envelope", at(1, 3), t + 3)  # dead-lettered
    admission.gate.receive(b"eyJnot-an-envelope", at(1, 4), t + 4)
    assert claimed_at(6) == t + 3  # the record at the commit, not its own
    committed[1] = 5  # the broker confirmed a commit at 5
    assert claimed_at(7) == t + 5
    committed[1] = 8  # offset 8 not read yet: no later than the records before it
    assert claimed_at(9) == t + 7
    admission.admissions.forget([1])  # the partition taken from this worker
    assert claimed_at(10) is None
