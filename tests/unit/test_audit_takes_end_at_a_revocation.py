"""An audit partition's taking under way when the partition is revoked is given up, and a
lane fenced once its partition is no longer this worker's gives it up without crashing
the worker (runtime/audit_lanes.py, runtime/audit_resync.py).

Found by review, stop 36 (item 4b): the give-up at a revocation neither cancelled nor
awaited the taking of the partition's transactional producer (``take_over_chains`` looked
for a rebalance only once the taking returned). aiokafka retries InitProducerId until the
coordinator answers (up to 60 s here); with a slow coordinator (a former owner's
transaction being aborted, the coordinator loading after a broker died) the old owner's
InitProducerId landed after the next owner's and fenced it. The rightful owner's next
lane batch raised AuditLaneLost, it crashed, and its restart caused another rebalance that
could repeat the race. The decision publisher already cancelled its takings at a
revocation (runtime/publisher.py ``_release``); the audit lanes' producers now do too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any, ClassVar

import pytest
from aiokafka.errors import ProducerFenced

from gun_contract.effects import OutgoingRecord
from gun_hub.runtime import audit_lanes
from gun_hub.runtime.audit_lanes import AuditLaneLost, AuditLanes, AuditLinkProducer
from gun_hub.runtime.audit_resync import take_over_chains

AUDIT = "gun.audit"


class Coordinator:
    """The transaction coordinator: an InitProducerId bumps the id's epoch, which fences
    every producer of an older epoch."""

    def __init__(self) -> None:
        self.epoch: dict[str, int] = {}
        self.holding = asyncio.Event()  # a held InitProducerId has reached it

    async def init(self, transactional_id: str, held: asyncio.Event | None) -> int:
        if held is not None:
            self.holding.set()
            await held.wait()  # CONCURRENT_TRANSACTIONS, COORDINATOR_LOAD_IN_PROGRESS, ...
        self.epoch[transactional_id] = self.epoch.get(transactional_id, 0) + 1
        return self.epoch[transactional_id]


class FakeProducer:
    """aiokafka's transactional producer, as far as the audit lanes use it: ``start``
    retries InitProducerId until the coordinator answers; a transaction of an older epoch
    is fenced."""

    coordinator: Coordinator
    hold_next: asyncio.Event | None = None
    stopped: ClassVar[list[str]] = []

    def __init__(self, *, transactional_id: str, **_: Any) -> None:
        self.id = transactional_id
        self.my_epoch = 0
        self._txn_manager = None
        self.held, FakeProducer.hold_next = FakeProducer.hold_next, None

    async def start(self) -> None:
        self.my_epoch = await self.coordinator.init(self.id, self.held)

    async def stop(self) -> None:
        FakeProducer.stopped.append(self.id)

    def create_batch(self) -> Any:
        class Batch:
            def append(self, **_: Any) -> object:
                return object()

        return Batch()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        if self.coordinator.epoch[self.id] != self.my_epoch:
            raise ProducerFenced()
        yield

    async def send_batch(self, *_: Any, **__: Any) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


class Connect:
    def options(self) -> dict[str, Any]:
        return {}


@pytest.fixture
def coordinator(monkeypatch: pytest.MonkeyPatch) -> Coordinator:
    FakeProducer.coordinator = Coordinator()
    FakeProducer.hold_next = None
    FakeProducer.stopped = []
    monkeypatch.setattr(audit_lanes, "AIOKafkaProducer", FakeProducer)
    return FakeProducer.coordinator


class Worker:
    def __init__(self) -> None:
        self.lost: list[int] = []
        self.producers = AuditLinkProducer(Connect(), AUDIT, "gun-hub-audit-links")  # type: ignore[arg-type]
        self.lanes = AuditLanes(
            AUDIT, self.producers.send_batch, self.producers.release, on_lost=self.on_lost
        )

    async def on_lost(self, partition: int, _error: BaseException) -> None:
        self.lost.append(partition)  # the hub: app.crash

    async def take_over(self, partitions: Sequence[int], generation: int) -> bool:
        return await take_over_chains(
            partitions,
            take=self.producers.take,
            release=self.producers.release,
            resync=nothing,
            open_lanes=self.lanes.open,
            rebalances=lambda: (generation, self.lanes.revocations),
            since=(generation, self.lanes.revocations),
        )


async def nothing(_: Sequence[int]) -> None:
    return None


def lanes_task(lanes: AuditLanes, partition: int = 0) -> asyncio.Task[None]:
    """The task sending ``partition``'s lane (it ends once the lane is fenced and dealt
    with: the worker told, or the partition given up)."""
    task = lanes._lanes[partition].task
    assert task is not None
    return task


def link(partition: int = 0) -> OutgoingRecord:
    return OutgoingRecord(AUDIT, None, b"{}", [], partition=partition)


async def test_a_taking_under_way_at_a_revocation_is_given_up_and_never_fences_the_next_owner(
    coordinator: Coordinator,
) -> None:
    """A is assigned partition 0; its InitProducerId waits at a busy coordinator. A
    rebalance revokes 0 from A and gives it to B, which takes it over. A's taking is
    given up at the revocation: its InitProducerId is not retried after B's, B's lane
    appends, and nobody crashes. (Scratch test of review stop 36, test_f4_takes.py.)"""
    a, b = Worker(), Worker()
    FakeProducer.hold_next = coordinator_busy = asyncio.Event()
    a_takes = asyncio.create_task(a.take_over([0], generation=7))
    async with asyncio.timeout(5):
        await coordinator.holding.wait()
    async with asyncio.timeout(5):
        await a.lanes.give_up({0})  # A's revocation (before_revoking)
    assert await b.take_over([0], generation=8)
    coordinator_busy.set()  # the coordinator would answer A's retried request last
    async with asyncio.timeout(5):
        assert await a_takes is False
    assert a.producers._producers == {}  # nothing of A's taking kept
    assert coordinator.epoch == {"gun-hub-audit-links-0": 1}  # B's only
    async with asyncio.timeout(5):
        await b.lanes.send([link()])  # B, the rightful owner, appends its next link
    assert a.lost == []
    assert b.lost == []


async def test_a_taking_given_up_stops_its_producer(coordinator: Coordinator) -> None:
    """A producer whose start was interrupted is stopped (its connections closed), not left
    behind: started later, it would fence the partition's owner."""
    a = Worker()
    FakeProducer.hold_next = asyncio.Event()
    taking = asyncio.create_task(a.take_over([0, 1], generation=1))
    async with asyncio.timeout(5):
        await coordinator.holding.wait()
    async with asyncio.timeout(5):
        await a.lanes.give_up({0})
        assert await taking is False
    assert "gun-hub-audit-links-0" in FakeProducer.stopped
    assert a.producers._producers == {}  # partition 1's too: the takeover let it go


async def test_a_taking_given_up_with_no_rebalance_noted_is_not_taken_for_a_success(
    coordinator: Coordinator,
) -> None:
    """Only a revocation gives a taking up; should anything else do so, the takeover does
    not open lanes for partitions it holds no producer of (it raises: the worker stops)."""
    a = Worker()
    FakeProducer.hold_next = asyncio.Event()
    taking = asyncio.create_task(a.take_over([0], generation=1))
    async with asyncio.timeout(5):
        await coordinator.holding.wait()
    await a.producers.release([0])  # no give-up: the rebalance marker is unchanged
    with pytest.raises(audit_lanes.AuditTakingGivenUp):
        async with asyncio.timeout(5):
            await taking
    assert a.lanes._open == set()


async def test_a_lane_fenced_while_its_partition_is_given_up_does_not_crash_the_worker() -> None:
    """A worker expelled from its group learns of it late: the next owner has already taken
    the partition, and the lane, cancelled by the give-up in its transaction, finds its
    abort fenced. The partition is no longer this worker's: it is given up (its links
    cancelled, read again by the next owner), and the worker goes on."""
    sending = asyncio.Event()
    lost: list[int] = []

    async def fenced_at_the_abort(partition: int, _links: list[OutgoingRecord]) -> None:
        sending.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise AuditLaneLost(partition) from ProducerFenced()

    async def release(_partitions: Collection[int]) -> None:
        return None

    async def on_lost(partition: int, _error: BaseException) -> None:
        lost.append(partition)

    lanes = AuditLanes(AUDIT, fenced_at_the_abort, release, on_lost=on_lost)
    lanes.open({0})
    settled = lanes.send([link()])
    await sending.wait()
    async with asyncio.timeout(5):
        await lanes.give_up({0})  # it waits for the lane's task to end
    with pytest.raises(asyncio.CancelledError):
        await settled
    assert lost == []


@pytest.mark.parametrize(("owned", "told"), [(False, []), (True, [0])])
async def test_a_lane_fenced_once_the_group_gave_its_partition_away_does_not_crash_the_worker(
    owned: bool, told: list[int]
) -> None:
    """Fenced while the group no longer assigns the partition to this worker (its
    revocation not yet run): the newer owner is the rightful one, and this worker gives
    the partition up (links cancelled, the partition closed) instead of crashing and
    causing another rebalance. Still assigned, it may be a worker expelled that has not
    heard of it: a lane without ``retake`` tells it at once (ADR 0019); the hub's waits
    to see whether it is still assigned later
    (test_an_audit_lane_fenced_by_its_coordinator_takes_its_partition_again.py)."""
    lost: list[int] = []

    async def fenced(partition: int, _links: list[OutgoingRecord]) -> None:
        raise AuditLaneLost(partition)

    async def release(_partitions: Collection[int]) -> None:
        return None

    async def on_lost(partition: int, _error: BaseException) -> None:
        lost.append(partition)

    lanes = AuditLanes(AUDIT, fenced, release, on_lost=on_lost, owns=lambda _p: owned)
    lanes.open({0})
    settled = lanes.send([link()])
    lane_ends = lanes_task(lanes)
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await settled
    async with asyncio.timeout(5):
        await lane_ends  # what it does once fenced (told, or given up) is done
    assert lost == told
    late = lanes.send([link()])
    with pytest.raises(asyncio.CancelledError):
        await late  # the partition is closed either way


async def test_a_lane_fenced_when_its_assignment_cannot_be_read_tells_the_worker() -> None:
    """Whether the group still assigns the partition unknown (the consumer stopping): the
    worker is told (a lane without ``retake``), rather than go on with a lane lost and
    nothing said."""
    lost: list[int] = []

    async def fenced(partition: int, _links: list[OutgoingRecord]) -> None:
        raise AuditLaneLost(partition)

    async def release(_partitions: Collection[int]) -> None:
        return None

    async def on_lost(partition: int, _error: BaseException) -> None:
        lost.append(partition)

    def unknown(_partition: int) -> bool:
        raise RuntimeError("consumer not started")

    lanes = AuditLanes(AUDIT, fenced, release, on_lost=on_lost, owns=unknown)
    lanes.open({0})
    settled = lanes.send([link()])
    lane_ends = lanes_task(lanes)
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await settled
    async with asyncio.timeout(5):
        await lane_ends
    assert lost == [0]
