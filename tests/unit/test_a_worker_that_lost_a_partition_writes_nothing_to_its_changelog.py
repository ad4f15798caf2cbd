"""A worker that lost a partition never writes to that partition's changelog again
(runtime/ownership.py).

A record's settling can outlive the worker's ownership of the record's partition: worker A
decided X v1 on partition p, the decision's deliveries stalled (a leader moving, retries),
the group gave p to worker B, which restored p's cases, read the answers again and opened
X v2. Then A's deliveries went through, and ``after_delivery`` wrote A's old "v1 decided,
announced" case into p's changelog after B's v2 (found by the scale-out review): the next
recovery of p restored v1, v2 was never decided and its reservation held for ever.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import faust
import pytest
from aiokafka.errors import KafkaTimeoutError
from faust.types import TP, FutureMessage

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects, OutgoingRecord
from gun_contract.settings import Settings
from gun_hub.runtime import table_writes
from gun_hub.runtime.app import _handled, _raw_table
from gun_hub.runtime.delivery import Retries, send_outbox
from gun_hub.runtime.faust_app import HubApp, as_if_handling, let_go
from gun_hub.runtime.ownership import PartitionGivenUp
from gun_hub.runtime.strict_consumer import StrictOffsetsConsumer

DECLARATIONS = "gun.declarations"
OUTBOX = "gun.hub.decision-outbox"
DLQ = "gun.dlq"
P = 3


@pytest.fixture(autouse=True)
def _faust_s_own_rebalance_steps_do_nothing(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The hub's steps of a rebalance are under test, not faust's (which need a broker)."""

    async def faust_revokes(_app: Any, _revoked: Any) -> None:
        return None

    async def faust_assigns(_app: Any, _assigned: Any, _generation_id: int = 0) -> None:
        return None

    monkeypatch.setattr(faust.App, "_on_partitions_revoked", faust_revokes)
    monkeypatch.setattr(faust.App, "_on_partitions_assigned", faust_assigns)
    yield
    table_writes._WITH_REFUSED_WRITES.clear()
    table_writes._SENT_AGAIN.clear()


class Worker:
    """A hub app that never connects (memory store), its cases table, and a broker whose
    acknowledgements the test gives."""

    def __init__(self) -> None:
        self.app = HubApp("ownership-test", broker="kafka://127.0.0.1:9", store="memory://")
        self.cases = _raw_table(self.app, Settings(), "cases")
        self.cases._verified_source_topics_for_partitions.add(DECLARATIONS)
        self.changelog = next(iter(self.cases.changelog_topic.topics))
        self.acks: list[asyncio.Future[None]] = []
        self.marked: list[int] = []
        self.let_go: list[int] = []
        self.undelivered: list[str] = []

    def partition(self, partition: int) -> set[TP]:
        """What the group revokes or assigns of one partition: its records and its
        changelog together (faust assigns a table's changelog with its source)."""
        return {TP(DECLARATIONS, partition), TP(self.changelog, partition)}

    async def send(self, _record: OutgoingRecord) -> asyncio.Future[None]:
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        return ack

    async def decide(
        self, partition: int, offset: int, reference: bytes, *, opened: bool = True
    ) -> None:
        """The record at ``partition``/``offset`` decided ``reference``: its decision is on
        its way, and once delivered its case is marked announced (hub_context.py
        ``_mark_announced`` does it in ``after_delivery``). ``opened``: the case written
        by the record itself first."""
        outbox = Effects()
        outbox.add(OUTBOX, reference, b"decision v1")
        with as_if_handling(DECLARATIONS, partition, offset):
            if opened:
                self.cases[reference] = b"v1 decided"
            outbox.after_delivery.append(
                lambda: self.cases.__setitem__(reference, b"v1 decided, announced")
            )
            outbox.if_undelivered.append(lambda: self.undelivered.append(reference.decode()))
            settled = await send_outbox(
                self.send,
                outbox,
                SourcePosition(DECLARATIONS, partition, offset),
                DLQ,
                Retries(attempts=1),
            )
            self.app.settling.track(
                settled,
                lambda: self.marked.append(offset),
                lambda: self.let_go.append(offset),
            )

    def changelog_writes(self) -> list[FutureMessage]:
        """The changelog writes in faust's producer buffer, acknowledged as they are taken."""
        pending = self.app.producer.buffer.pending
        writes = []
        while not pending.empty():
            write = pending.get_nowait()
            write.set_result(None)
            writes.append(write)
        return writes

    def acknowledge(self) -> None:
        for ack in self.acks:
            if not ack.done():
                ack.set_result(None)


async def _let_tasks_run() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_decision_delivered_once_its_partition_was_revoked_writes_nothing_there() -> None:
    worker = Worker()
    await worker.decide(P, 41, b"X")
    [_opened] = worker.changelog_writes()  # written while the partition was this worker's
    await _let_tasks_run()

    await worker.app._on_partitions_revoked(worker.partition(P))
    worker.acknowledge()  # the stalled deliveries go through after all
    await _let_tasks_run()

    assert worker.changelog_writes() == []
    await worker.app.settling.drained()
    # Not settled here: the partition's owner reads the record again.
    assert worker.marked == []
    assert worker.let_go == [41]
    assert worker.undelivered == ["X"]


async def test_a_partition_revoked_and_assigned_back_does_not_settle_what_was_read_before() -> None:
    """An eager rebalance revokes every partition and a sticky assignor gives most back:
    the records read before are read again from the committed offset, and settled by
    that reading; the first settling's writes would land after the second's."""
    worker = Worker()
    await worker.decide(P, 41, b"X")
    worker.changelog_writes()
    await worker.app._on_partitions_revoked(worker.partition(P))
    await worker.app._on_partitions_assigned(worker.partition(P))
    await worker.cases.on_rebalance(worker.partition(P), set(), set())  # faust tells the table

    worker.acknowledge()
    await _let_tasks_run()
    assert worker.changelog_writes() == []
    await worker.app.settling.drained()
    assert (worker.marked, worker.let_go) == ([], [41])


async def test_a_record_settled_while_its_partition_is_being_revoked_is_let_go() -> None:
    """faust lets the agents finish the event in hand after the revocation began."""
    worker = Worker()
    await worker.app._on_partitions_revoked(worker.partition(P))
    await worker.decide(P, 42, b"Y", opened=False)
    worker.acknowledge()
    await _let_tasks_run()
    assert worker.changelog_writes() == []
    await worker.app.settling.drained()
    assert (worker.marked, worker.let_go, worker.undelivered) == ([], [42], ["Y"])


async def test_the_records_of_the_partitions_kept_settle_as_before() -> None:
    worker = Worker()
    await worker.decide(1, 7, b"Z")
    worker.changelog_writes()
    await worker.app._on_partitions_revoked(worker.partition(P))
    worker.acknowledge()
    await _let_tasks_run()
    [announced] = worker.changelog_writes()
    assert (announced.message.key, announced.message.partition) == (b"Z", 1)
    await worker.app.settling.drained()
    assert (worker.marked, worker.let_go, worker.undelivered) == ([7], [], [])


@pytest.mark.parametrize("how", ["being revoked", "not assigned"])
async def test_a_table_write_to_a_partition_not_this_worker_s_is_refused_and_logged(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The backstop, whatever the path that got there: nothing goes to the changelog and
    the store keeps what it had (faust sends the changelog write first)."""
    worker = Worker()
    if how == "being revoked":
        await worker.app._on_partitions_revoked(worker.partition(P))
    else:
        await worker.cases.on_rebalance(worker.partition(1), worker.partition(P), set())
    with as_if_handling(DECLARATIONS, P, 9), pytest.raises(PartitionGivenUp):
        worker.cases[b"X"] = b"v1 decided, announced"
    assert worker.changelog_writes() == []
    assert b"X" not in worker.cases.data
    assert "changelog partition 3 refused" in caplog.text


async def test_a_handler_whose_table_write_was_refused_is_not_dead_lettered() -> None:
    """An event in hand as its partition is revoked: nothing is sent, and its next owner
    reads it again; never a dead letter (the record is not at fault)."""
    worker = Worker()
    await worker.app._on_partitions_revoked(worker.partition(P))

    def handle() -> Effects:
        outbox = Effects()
        outbox.add(OUTBOX, b"X", b"decision")
        worker.cases[b"X"] = b"v1 decided"
        return outbox

    with as_if_handling(DECLARATIONS, P, 9):
        outbox = await _handled(handle, b"record", SourcePosition(DECLARATIONS, P, 9), DLQ, "test")
    assert outbox.records == []


async def test_a_delivery_that_fails_after_its_partition_was_revoked_does_not_stop_the_agent() -> (
    None
):
    """Its record is the partition's owner's to read again: nothing for this worker to
    retry by stopping its agent (a held declaration's own effects let go at the revocation
    failed its decision's settling so)."""
    worker = Worker()
    await worker.decide(P, 41, b"X")
    worker.changelog_writes()
    await worker.app._on_partitions_revoked(worker.partition(P))
    for ack in worker.acks:
        ack.set_exception(KafkaTimeoutError())
    await _let_tasks_run()
    await worker.app.settling.drained()  # raises nothing: the agent goes on
    assert (worker.marked, worker.let_go) == ([], [41])


async def test_a_settling_from_before_a_sticky_reassignment_leaves_the_new_hold_alone() -> None:
    """Revoked and assigned straight back while a record's delivery was retried: the
    record is read again and held anew. The first settling, let go, must not release
    that hold: the record would be neither handled nor on its way, and the watchdog
    would read its partition again from it (found by the review of stop 35's diff)."""
    worker = Worker()
    consumer = worker.app.consumer
    assert isinstance(consumer, StrictOffsetsConsumer)
    try:
        await _a_hold_read_again_after_a_sticky_reassignment(worker, consumer)
    finally:
        consumer._thread.thread_loop.close()  # made with the consumer, never started here


async def _a_hold_read_again_after_a_sticky_reassignment(
    worker: Worker, consumer: StrictOffsetsConsumer
) -> None:
    tp = TP(DECLARATIONS, P)
    consumer.hold(tp, 41)
    outbox = Effects()
    outbox.add(OUTBOX, b"X", b"decision v1")
    with as_if_handling(DECLARATIONS, P, 41):
        message = faust.current_event().message
        settled = await send_outbox(
            worker.send, outbox, SourcePosition(DECLARATIONS, P, 41), DLQ, Retries(attempts=1)
        )
        worker.app.settling.track(
            settled,
            lambda: worker.marked.append(41),
            functools.partial(let_go, worker.app, message),
        )
    await worker.app._on_partitions_revoked(worker.partition(P))
    await worker.app._on_partitions_assigned(worker.partition(P))
    consumer.hold(tp, 41)  # read again after the reassignment, on its way again

    worker.acknowledge()
    await worker.app.settling.drained()
    assert worker.marked == []
    assert (tp, 41) in consumer._held
