"""An audit lane fenced while the group still assigns its partition here, and still a
while later, was fenced by its transaction coordinator (a transaction older than its
timeout), not by another worker: it takes its partition again and goes on with the links
it holds, none lost, none doubled (runtime/audit_lanes.py, audit_resync.py ``retaker``,
security/audit.py ``held_links_landed``).

Found by review (stop 39-Z, Z1): the broker frozen for longer than the transaction
timeout aborted the lane's open transaction and bumped its producer's epoch on waking; the
lane took the fence for another worker's and crashed the worker, its log blaming a worker
that did not exist. The real broker's side: tests/integration/
test_an_audit_lane_whose_transaction_timed_out_takes_its_partition_again.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

import pytest

from gun_contract.effects import OutgoingRecord
from gun_contract.security.keystore import AuditSigner, PublicKey
from gun_hub.runtime.audit_lanes import AuditLaneLost, AuditLanes, OnLost, Owns, Retake
from gun_hub.runtime.audit_resync import retaker
from gun_hub.runtime.readiness import GroupMembership, waiting_for
from gun_hub.security.audit import held_links_landed
from tests.unit.test_a_worker_holding_no_partition_is_ready import (
    caught_up_rollout,
    started_publisher,
    worker,
)
from tests.unit.test_audit_chain import Clock, Topic, decision, hub_trail, verify
from tests.unit.test_audit_links_reach_the_topic_in_chain_order import (
    AUDIT,
    Broker,
    event,
    never_lost,
    settle,
)


def links_of(trail_links: Sequence[bytes], partition: int = 0) -> list[OutgoingRecord]:
    return [OutgoingRecord(AUDIT, None, value, [], partition) for value in trail_links]


def lanes_with(
    broker: Broker,
    retake: Retake,
    *,
    owns: Owns = lambda _p: True,
    on_lost: OnLost = never_lost,
    after_s: float = 0.0,
) -> AuditLanes:
    lanes = AuditLanes(
        AUDIT,
        broker.send_batch,
        broker.release,
        on_lost=on_lost,
        owns=owns,
        retake=retake,
        retake_fenced_after_s=after_s,
        backoff_s=0.001,
        max_backoff_s=0.001,
    )
    lanes.open({0})
    return lanes


def audit_links(broker: Broker) -> list[bytes]:
    return [record.value for record in broker.kept if record.topic == AUDIT]


async def test_a_lane_fenced_while_still_assigned_takes_its_partition_again_and_loses_nothing(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    """The fenced batch's transaction was aborted: its links are sent again, first, then
    those built on them meanwhile; every event settles and the worker is not told."""
    clock = Clock()
    trail = hub_trail(signer, clock)
    broker = Broker([AuditLaneLost(0)])  # the commit of the first batch: fenced
    retaken: list[tuple[int, list[bytes]]] = []

    async def retake(partition: int, held: Sequence[bytes]) -> int:
        retaken.append((partition, list(held)))
        return 0  # the tail ends where the held links begin: none of them landed

    lanes = lanes_with(broker, retake)
    first = event(trail, 1)
    second = event(trail, 2)
    settled = [await settle(broker, lanes, first), await settle(broker, lanes, second)]
    async with asyncio.timeout(5):
        await asyncio.gather(*settled)
    every_link = [r.value for e in (first, second) for r in e.records if r.topic == AUDIT]
    [(partition, held)] = retaken  # the batch whose commit was refused
    assert partition == 0
    assert held
    assert held == every_link[: len(held)]
    assert audit_links(broker) == every_link  # each once, in chain order
    topic = Topic()
    broker.onto(topic)
    assert verify(topic, public, clock.now).intact


async def test_links_the_topic_holds_after_all_are_not_sent_again(signer: AuditSigner) -> None:
    """A commit the broker made although the producer heard it was fenced: the tail
    read after the retake holds the batch, which is not sent twice."""
    trail = hub_trail(signer, Clock())
    broker = Broker([AuditLaneLost(0)])

    async def retake(_partition: int, held: Sequence[bytes]) -> int:
        broker.kept += links_of(held)  # on the topic after all
        return len(held)

    lanes = lanes_with(broker, retake)
    first = event(trail, 1)
    second = event(trail, 2)
    settled = [await settle(broker, lanes, first), await settle(broker, lanes, second)]
    async with asyncio.timeout(5):
        await asyncio.gather(*settled)
    every_link = [r.value for e in (first, second) for r in e.records if r.topic == AUDIT]
    assert audit_links(broker) == every_link  # each once


async def test_a_lane_no_longer_assigned_after_the_wait_gives_its_partition_up(
    signer: AuditSigner,
) -> None:
    """Another worker took the partition: the group revoked it from this one meanwhile.
    Not taken again (that would fence the rightful owner), and nothing crashes."""
    trail = hub_trail(signer, Clock())
    broker = Broker([AuditLaneLost(0)])
    answers: Iterator[bool] = iter([True, False])  # at the fence, after the wait
    retaken: list[int] = []

    async def retake(partition: int, _held: Sequence[bytes]) -> int:
        retaken.append(partition)
        return 0

    lanes = lanes_with(broker, retake, owns=lambda _p: next(answers), after_s=0.01)
    settled = await settle(broker, lanes, event(trail, 1))
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await settled
    assert retaken == []
    assert broker.released == [{0}]
    assert audit_links(broker) == []


async def test_a_lane_whose_chain_went_on_without_it_tells_the_worker(
    signer: AuditSigner,
) -> None:
    """Still assigned, yet the tail read after the retake does not lead to the held
    links (a worker expelled that has not heard of it, and the rightful owner wrote):
    nothing more of this lane's is sent, and the worker is told (the hub crashes it)."""
    trail = hub_trail(signer, Clock())
    broker = Broker([AuditLaneLost(0)])
    lost: list[BaseException] = []

    async def on_lost(_partition: int, error: BaseException) -> None:
        lost.append(error)

    async def retake(partition: int, _held: Sequence[bytes]) -> int:
        raise AuditLaneLost(partition, "the chain on the topic went on without them")

    lanes = lanes_with(broker, retake, on_lost=on_lost)
    settled = await settle(broker, lanes, event(trail, 1))
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await settled
    assert [str(e) for e in lost] == [
        "audit partition 0: the chain on the topic went on without them"
    ]
    assert audit_links(broker) == []
    late = lanes.send(links_of(trail.append(0, decision(2))))
    with pytest.raises(asyncio.CancelledError):
        await late  # closed until it is assigned again


async def test_a_lane_given_up_while_it_waits_is_not_taken_again(signer: AuditSigner) -> None:
    trail = hub_trail(signer, Clock())
    broker = Broker([AuditLaneLost(0)])
    retaken: list[int] = []

    async def retake(partition: int, _held: Sequence[bytes]) -> int:
        retaken.append(partition)
        return 0

    lanes = lanes_with(broker, retake, after_s=60.0)
    settled = await settle(broker, lanes, event(trail, 1))
    for _ in range(20):
        await asyncio.sleep(0)  # the lane fenced, waiting
    assert len(broker.transactions) == 1  # fenced, and waiting to see who fenced it
    assert lanes.fenced() == [0]  # named in the worker's readiness meanwhile
    async with asyncio.timeout(5):
        await lanes.give_up({0})  # a revocation
    with pytest.raises(asyncio.CancelledError):
        await settled
    assert retaken == []
    assert lanes.fenced() == []


def test_a_worker_whose_audit_lane_waits_to_be_taken_again_is_not_ready() -> None:
    """Its links wait with the lane, so its events on that partition do (up to 30 s)."""
    busy = worker({("gun.declarations", 0)})
    membership = GroupMembership(busy)
    membership.joined = True
    publisher, rollout = started_publisher(), caught_up_rollout()
    assert waiting_for(busy, publisher, rollout, 60, membership, audit_fenced=lambda: []) == []
    assert waiting_for(busy, publisher, rollout, 60, membership, audit_fenced=lambda: [2, 0]) == [
        "audit partition(s) 0, 2 fenced: taken again once it is clear no other worker took them"
    ]


async def test_the_retake_takes_the_producer_before_it_reads_the_tail(
    signer: AuditSigner,
) -> None:
    """The producer first: its InitProducerId ends the aborted (or any open) transaction,
    and fences whoever else holds it, so the tail read after it is final."""
    trail = hub_trail(signer, Clock())
    committed = trail.append(0, decision(1))
    held = trail.append(0, decision(2))
    steps: list[str] = []

    async def take(partitions: Sequence[int]) -> None:
        steps.append(f"take {list(partitions)}")

    async def tails(partitions: list[int]) -> dict[int, list[bytes]]:
        steps.append(f"tail {partitions}")
        return {0: committed}

    assert await retaker(take, tails)(0, held) == 0
    assert steps == ["take [0]", "tail [0]"]
    with pytest.raises(AuditLaneLost):
        await retaker(take, tails)(0, trail.append(0, decision(3)))  # built past ``held``


class TestWhatTheTailSaysOfTheHeldLinks:
    def test_none_of_them_landed(self, signer: AuditSigner) -> None:
        trail = hub_trail(signer, Clock())
        committed = [v for n in range(1, 4) for v in trail.append(0, decision(n))]
        held = [v for n in range(4, 6) for v in trail.append(0, decision(n))]
        assert held_links_landed(0, committed, held) == 0

    def test_all_of_them_landed(self, signer: AuditSigner) -> None:
        trail = hub_trail(signer, Clock())
        committed = [v for n in range(1, 4) for v in trail.append(0, decision(n))]
        held = [v for n in range(4, 6) for v in trail.append(0, decision(n))]
        assert held_links_landed(0, committed + held, held) == len(held)

    def test_the_first_links_of_an_empty_partition(self, signer: AuditSigner) -> None:
        held = hub_trail(signer, Clock()).append(0, decision(1))
        assert held_links_landed(0, [], held) == 0

    def test_another_worker_went_on_from_the_tail(self, signer: AuditSigner) -> None:
        clock = Clock()
        trail = hub_trail(signer, clock)
        committed = [v for n in range(1, 4) for v in trail.append(0, decision(n))]
        held = trail.append(0, decision(4))
        other = hub_trail(signer, clock, {})
        other.resync(0, committed)  # the next owner, after its taking
        assert held_links_landed(0, committed + other.append(0, decision(9)), held) is None

    def test_a_tail_that_lost_the_link_they_name(self, signer: AuditSigner) -> None:
        trail = hub_trail(signer, Clock())
        committed = [v for n in range(1, 4) for v in trail.append(0, decision(n))]
        held = trail.append(0, decision(4))
        assert held_links_landed(0, committed[:-1], held) is None
