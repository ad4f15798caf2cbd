"""A reservation whose partner call is under way when its partition is revoked, and which
then ends unsettled (timed out: the partner may still apply it), is named in the commit
the revoking replica makes: the next owner asks it again with its key (a 409 is "still
being processed", not a refusal) and holds its declaration's deletion behind it.

Found by review, stop 39-G (G2): the revocation committed first and only then waited for
the batch in flight; the reservation was queued after the commit and forgotten with the
partition, so no commit named it. The next owner asked it as a first attempt, the
partner (still at the old call) answered 409, read as a refusal, and the declaration's
deletion went out unheld: a reservation held for a refused declaration (P1's outcome
through a plain rebalance). Now the revocation stops the partition's records, waits for
the batch in flight (at most a partner call's deadline), commits naming what it left
unsettled, and only then forgets the partition's rows. A call that outlasts the wait is
named all the same (it may still be applied), and what it queues late is not kept by a
replica that no longer owns its partition.

The runner's own listener and batch handling, with a consumer that stands in for the
group's commits and a partner that holds the reservation call until the test lets it
time out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Collection, Iterator, Mapping
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from adapters.base.ownership import PartitionOwnership
from adapters.base.pending import PendingOperations
from adapters.base.replay import REPLAYED_OPERATIONS
from adapters.base.runner import AdapterRunner, _Rebalance
from gun_contract.envelope import ContentType
from gun_contract.health import CircuitStatus
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from gun_contract.model.verdicts import Verdict
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import AdapterSettings, SecuritySettings, Settings
from tests.adapter_fixtures import adapter_runner, partner_request
from tests.conftest import envelope_of
from tests.unit.test_adapter_pending_operations_outlive_the_request_log import (
    FakeConsumer,
    FakeProducer,
)
from tests.unit.test_state_pending_queue import TOPICS

REQUESTS = TOPICS.requests("dga")
P0 = TopicPartition(REQUESTS, 0)
RESERVE = partner_request(Operation.RESERVE, authority="dga", reference="26FR000690I0000701")
WRITE_OFF = partner_request(
    Operation.WRITE_OFF, authority="dga", reference="26FR000690I0000702", quantity=None
)


class HeldPartner:
    """A partner whose calls are held until the test lets them time out: each then
    answers UNAVAILABLE, and the partner may still apply it (no answer came back)."""

    def __init__(self) -> None:
        self.entered: dict[str, asyncio.Event] = {}
        self.release = asyncio.Event()
        self.timed_out: set[str] = set()
        self.sent_before_asked: list[str] = []

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        self.entered.setdefault(request.request_id, asyncio.Event()).set()
        await self.release.wait()
        self.timed_out.add(request.request_id)
        return tuple(
            DocumentAnswer(
                goods_item=item.number,
                code=document.code,
                reference=document.reference,
                verdict=Verdict.UNAVAILABLE,
                detail="partner unreachable: TimeoutError",
            )
            for item in request.items
            for document in item.documents
        )

    async def called(self, request: AuthorityRequest) -> None:
        await self.entered.setdefault(request.request_id, asyncio.Event()).wait()

    def may_still_apply(self, request: AuthorityRequest) -> bool:
        return request.request_id in self.timed_out

    def sent_before(self, request: AuthorityRequest, accepted: Collection[int] = ()) -> None:
        self.sent_before_asked.append(request.request_id)

    def accepted_calls(self, request: AuthorityRequest) -> frozenset[int]:
        return frozenset()

    async def close(self) -> None:
        return None

    @property
    def circuit_state(self) -> CircuitStatus:
        return CircuitStatus.CLOSED


class GroupConsumer(FakeConsumer):
    """The group's commits, as the broker keeps them: what a commit wrote is what the
    next owner's assignment reads."""

    def __init__(self, commits: dict[int, tuple[int, str]]) -> None:
        super().__init__({0: 0}, commits)
        self.commits = commits
        self.assigned: set[TopicPartition] = {P0}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        for tp, (offset, metadata) in offsets.items():
            self.commits[tp.partition] = (offset, metadata)


def runner_of(tmp_path: Path, partner: HeldPartner, partner_timeout_s: float) -> AdapterRunner:
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    settings = Settings(
        security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / "state"),
        adapter=AdapterSettings(partner_timeout_s=partner_timeout_s),
    )
    return adapter_runner("dga", settings, TOPICS, partner)


def record(tmp_path: Path, request: AuthorityRequest, offset: int) -> ConsumerRecord[bytes, bytes]:
    """``request`` as the hub writes it at ``offset`` of partition 0."""
    sealed = envelope_of("hub", TOPICS, tmp_path / "keys").seal(
        request.model_dump_json().encode(),
        recipient="dga",
        topic=REQUESTS,
        content_type=ContentType.JSON,
    )
    key = request.reference.encode()
    now_ms = int(time.time() * 1000)
    return ConsumerRecord(REQUESTS, 0, offset, now_ms, 0, key, sealed, None, 0, len(sealed), [])


@pytest.fixture
def partner() -> HeldPartner:
    return HeldPartner()


@pytest.fixture
async def runner(tmp_path: Path, partner: HeldPartner) -> AsyncIterator[AdapterRunner]:
    adapter = runner_of(tmp_path, partner, partner_timeout_s=5.0)
    yield adapter
    adapter.pending.close()


def next_owner(tmp_path: Path, commit: tuple[int, str]) -> PartitionOwnership:
    """The replica the partition goes to, reading it from ``commit``."""
    offset, metadata = commit
    owner = PartitionOwnership(PendingOperations(tmp_path / "next.sqlite"))
    owner.assigned({0}, {0: metadata}, committed={0: offset}, log_starts={0: 0})
    return owner


async def revocation_under_way(runner: AdapterRunner, rebalance: _Rebalance) -> asyncio.Task[None]:
    """The revocation of P0, started and run to its first wait: it has taken the
    partition back (its ownership's generation moved) and waits for the batch in flight."""
    generation = runner.ownership.generation
    revoking = asyncio.create_task(rebalance.on_partitions_revoked({P0}))
    await asyncio.sleep(0)  # one turn of the loop: the task runs until it first waits
    assert runner.ownership.generation == generation + 1, "the revocation is not under way"
    return revoking


@pytest.mark.parametrize(
    ("commits", "at"),
    [
        ({0: (5, "answered:5")}, 5),  # committed at 5 (answered up to 5): the review's case
        ({}, 0),  # never committed: read from its log start
    ],
)
async def test_a_reservation_left_unsettled_by_the_batch_in_flight_at_revocation_is_named(
    runner: AdapterRunner,
    partner: HeldPartner,
    tmp_path: Path,
    commits: dict[int, tuple[int, str]],
    at: int,
) -> None:
    consumer = GroupConsumer(commits)
    producer = FakeProducer()
    runner._producer = producer
    rebalance = _Rebalance(runner, consumer)
    await rebalance.on_partitions_assigned({P0})
    batch = asyncio.create_task(
        runner._process({P0: [record(tmp_path, RESERVE, at)]}, producer, consumer)
    )
    await asyncio.wait_for(partner.called(RESERVE), 5)

    revoking = await revocation_under_way(runner, rebalance)  # while the call still runs
    partner.release.set()  # the call times out: the partner may still apply it
    await asyncio.wait_for(asyncio.gather(batch, revoking), 10)

    assert not runner.pending.has(RESERVE.reference)  # forgotten: the next owner's now
    offset, metadata = consumer.commits.get(0, (-1, ""))
    assert 0 <= offset <= at  # the next owner reads the reservation again
    assert next_owner(tmp_path, (offset, metadata)).unsettled_at(0, at), (
        f"commit {offset} {metadata!r}: the reservation the partner may still apply is not "
        "named; the next owner asks it as a first attempt and lets its deletion overtake it"
    )


async def test_a_call_that_outlasts_the_revocations_wait_is_named_all_the_same(
    tmp_path: Path, partner: HeldPartner
) -> None:
    """A partition's revocation cannot wait for ever (the group's rebalance waits for
    it): past a partner call's deadline it commits all the same, naming the reservation
    whose call still runs, since the partner may still apply it. What that call queues
    when it ends is not this replica's any more: not kept, not replayed here."""
    runner = runner_of(tmp_path, partner, partner_timeout_s=0.1)
    try:
        consumer = GroupConsumer({0: (5, "answered:5")})
        producer = FakeProducer()
        runner._producer = producer
        rebalance = _Rebalance(runner, consumer)
        await rebalance.on_partitions_assigned({P0})
        batch = asyncio.create_task(
            runner._process({P0: [record(tmp_path, RESERVE, 5)]}, producer, consumer)
        )
        await asyncio.wait_for(partner.called(RESERVE), 5)

        # The call outlasts the wait: the revocation ends while it still runs.
        await asyncio.wait_for(rebalance.on_partitions_revoked({P0}), 5)
        assert not batch.done()
        assert next_owner(tmp_path, consumer.commits[0]).unsettled_at(0, 5)

        consumer.assigned = set()  # the partition is another replica's now
        partner.release.set()
        await asyncio.wait_for(batch, 5)
        assert len(runner.pending) == 0  # its late row is the next owner's to queue
    finally:
        runner.pending.close()


async def test_a_write_off_queued_by_the_batch_in_flight_is_read_again_by_the_next_owner(
    runner: AdapterRunner, partner: HeldPartner, tmp_path: Path
) -> None:
    """The same order for a follow-up: the write-off queued as the batch ends is forgotten
    with the partition, and the commit made after it leaves it to be read again (not
    taken for answered)."""
    consumer = GroupConsumer({0: (5, "answered:5")})
    producer = FakeProducer()
    runner._producer = producer
    rebalance = _Rebalance(runner, consumer)
    await rebalance.on_partitions_assigned({P0})
    batch = asyncio.create_task(
        runner._process({P0: [record(tmp_path, WRITE_OFF, 5)]}, producer, consumer)
    )
    await asyncio.wait_for(partner.called(WRITE_OFF), 5)
    revoking = await revocation_under_way(runner, rebalance)
    partner.release.set()
    await asyncio.wait_for(asyncio.gather(batch, revoking), 10)

    assert len(runner.pending) == 0
    # Read again by the next owner, which asks a write-off again whether or not the
    # commit says it was answered (only a reservation answered before is not asked
    # again, runner.py): applied once, by its key. Since stop 45 the batch the revocation
    # waited for is committed as answered, as any batch is.
    assert consumer.commits[0][0] <= 5
    assert WRITE_OFF.operation in REPLAYED_OPERATIONS


def test_a_commit_is_made_when_only_what_it_names_changed(tmp_path: Path) -> None:
    """Nothing handled since the partition was assigned at its commit, but a reservation
    now queued at that offset: the same offset is committed again, naming it. What the
    assignment read is not committed again as it is."""
    pending = PendingOperations(tmp_path / "p.sqlite")
    try:
        owner = PartitionOwnership(pending)
        owner.assigned({0}, {0: "answered:5"}, committed={0: 5}, log_starts={0: 0})
        assert owner.to_commit() == {}
        pending.add(RESERVE, 0, 5)
        assert owner.to_commit() == {0: 5}
        assert owner.commit_metadata(0) == "answered:5;unsettled:0"
        owner.committed({0: 5}, {0: "answered:5;unsettled:0"})
        assert owner.to_commit() == {}
    finally:
        pending.close()


def test_a_reservation_asked_while_a_commit_is_made_is_named(tmp_path: Path) -> None:
    pending = PendingOperations(tmp_path / "p.sqlite")
    try:
        owner = PartitionOwnership(pending)
        owner.assigned({0}, {0: "answered:5"}, committed={0: 5}, log_starts={0: 0})
        with owner.asking(0, 7):
            assert owner.commit_metadata(0) == "answered:5;unsettled:2"
        assert owner.commit_metadata(0) == "answered:5"
    finally:
        pending.close()


@pytest.fixture
def owner_at_5(tmp_path: Path) -> Iterator[PartitionOwnership]:
    """Partition 0 owned, committed at offset 5, answered up to there."""
    pending = PendingOperations(tmp_path / "p.sqlite")
    try:
        owner = PartitionOwnership(pending)
        owner.assigned({0}, {0: "answered:5"}, committed={0: 5}, log_starts={0: 0})
        yield owner
    finally:
        pending.close()


async def test_the_batch_a_revocation_waited_for_is_committed_past(
    owner_at_5: PartitionOwnership,
) -> None:
    """A reservation answered UNAVAILABLE (not one the partner may still apply) and its
    declaration's deletion answered in the same batch, which ends while the revocation
    waits for it: the commit goes past both. It stopped before the batch (begun in the
    generation before the revocation's), so the next owner asked both again: the
    reservation was applied then, and the deletion met the partner's remembered answer
    to its key, nothing to delete: the quantity reserved for ever (review stop 45)."""
    owner = owner_at_5
    async with owner.handling() as generation:
        owner.reading({0: 5})
        revoking = asyncio.create_task(owner.leaving({0}, within_s=10))
        await asyncio.sleep(0)  # the revocation is waiting for this batch
        assert not revoking.done()
    owner.handled({0: 7}, generation)  # offsets 5 and 6 answered, nothing queued
    assert await revoking, "the batch ended within the wait"
    assert owner.to_commit() == {0: 7}
    assert owner.commit_metadata(0).startswith("answered:7")


async def test_a_batch_that_outlasts_the_revocations_wait_is_not_committed_past(
    owner_at_5: PartitionOwnership,
) -> None:
    """Ended after the partition was revoked (the wait ran out): its next owner reads it
    again, as before."""
    owner = owner_at_5
    async with owner.handling() as generation:
        owner.reading({0: 5})
        assert not await owner.leaving({0}, within_s=0.01)
        await owner.revoked({0})
    owner.handled({0: 7}, generation)
    assert owner.to_commit() == {}
