"""Audit links reach ``gun.audit`` in chain order, each one certain to follow the links
before it, whatever the broker does (runtime/audit_lanes.py).

Found by review in stop 32: the links went out in each event's outbox like any record.
A delivery that failed for good stopped the agent, its supervisor started it again in
the same process (no reassignment, no resync), and the next link pointed at one never
written: a hole that no restart repairs ("record missing"). A link the broker refused
outright was dead-lettered and the chain went on past it; and a link retried by the
delivery could land after links built on it, even after a resync (a forged branch), or
last in the log, where a resync read it as the head (a fork).

Now each audit partition has one lane: its links are sent in order, each batch one Kafka
record batch (whole or not at all), the next batch only once the broker has all of the
last, retried without end (never dead-lettered: the audit must not go on without them),
and an event settles once its links are in. The log is a prefix of the chain; a resync
takes the highest link among the last records all the same. A partition given up stops
its lane before faust waits for its agents, takes no more links, and lets its
transactional producer go (the next owner's fences it); a lane fenced stops for good.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Collection
from typing import Any

import faust
import pytest
from aiokafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError
from faust.types import TP

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects, OutgoingRecord
from gun_contract.kafka.client import ClientConfig
from gun_contract.security.keystore import AuditSigner, PublicKey
from gun_hub.runtime.app import _handled
from gun_hub.runtime.audit_lanes import AuditLaneLost, AuditLanes, AuditLinkProducer, OnLost
from gun_hub.runtime.delivery import Retries, send_outbox
from gun_hub.runtime.faust_app import HubApp
from gun_hub.security.audit import AuditTrail
from tests.unit.test_audit_chain import (
    Clock,
    Topic,
    decision,
    hub_trail,
    verify,
)

AUDIT = "gun.audit"
DLQ = "gun.dlq"
SOURCE = SourcePosition("gun.declarations", 0, 7, b"26FR000690I0000012")
FAST = Retries(attempts=3, backoff_s=0.001, max_backoff_s=0.001)


async def never_lost(partition: int, error: BaseException) -> None:
    raise AssertionError(f"audit partition {partition} lost: {error}")


class Broker:
    """Takes record batches onto a topic whole or not at all (as Kafka appends a record
    batch), fails them as told, or holds them until released. The hub's other records go
    through ``send`` as before."""

    def __init__(self, failures: list[Exception] | None = None, *, held: bool = False) -> None:
        self.failures = failures or []
        self.held = held
        self.sent: list[OutgoingRecord] = []
        self.kept: list[OutgoingRecord] = []
        self.waiting: list[tuple[list[OutgoingRecord], asyncio.Future[None]]] = []
        self.released: list[set[int]] = []
        self.transactions: list[int] = []  # the links of each transaction, in order
        self.arrived = asyncio.Event()  # a batch held since ``arrived`` was cleared

    async def send(self, record: OutgoingRecord) -> Awaitable[Any]:
        return await self._batch([record])

    async def send_batch(self, _partition: int, links: list[OutgoingRecord]) -> None:
        """One transaction: returns once it is committed."""
        self.transactions.append(len(links))
        await (await self._batch(links))

    async def _batch(self, records: list[OutgoingRecord]) -> asyncio.Future[None]:
        self.sent += records
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if records[0].topic == AUDIT and self.failures:
            future.set_exception(self.failures.pop(0))
        elif self.held:
            self.waiting.append((records, future))
            self.arrived.set()
        else:
            self.kept += records
            future.set_result(None)
        return future

    async def release(self, partitions: Collection[int]) -> None:
        """The producers of ``partitions`` are let go (the next owner's fences them)."""
        self.released.append(set(partitions))

    async def holding(self) -> None:
        """Until a batch is held (sent again after a backoff, say)."""
        async with asyncio.timeout(5):
            while not self.waiting:
                self.arrived.clear()
                await self.arrived.wait()

    def take(
        self,
        count: int | None = None,
        *,
        fail: Exception | None = None,
        abort_links: bool = False,
    ) -> None:
        """Append (or fail) the first ``count`` held batches, in order, whether or not
        anyone still waits for them: a producer delivers what it was handed.
        ``abort_links``: the held audit batches' transactions are aborted instead."""
        taken = self.waiting[:count] if count is not None else list(self.waiting)
        del self.waiting[: len(taken)]
        for records, future in taken:
            failure = fail
            if abort_links and records[0].topic == AUDIT:
                failure = KafkaTimeoutError()
            if failure is None:
                self.kept += records
            if future.done():
                continue
            if failure is not None:
                future.set_exception(failure)
            else:
                future.set_result(None)

    def onto(self, topic: Topic) -> None:
        for record in self.kept:
            if record.topic == AUDIT:
                assert record.partition is not None
                topic.publish(record.partition, [record.value])

    def lanes(
        self,
        *partitions: int,
        backoff_s: float = 0.001,
        on_lost: OnLost = never_lost,
        interval_s: float = 0.0,
    ) -> AuditLanes:
        lanes = AuditLanes(
            AUDIT,
            self.send_batch,
            self.release,
            on_lost=on_lost,
            interval_s=interval_s,
            backoff_s=backoff_s,
            max_backoff_s=backoff_s,
        )
        lanes.open(set(partitions) or {0})
        return lanes


def event(trail: AuditTrail, n: int, partition: int = 0) -> Effects:
    """What one event sends: a status record and its audit link(s)."""
    outbox = Effects()
    outbox.add("gun.status", b"ref", b"status")
    for link in trail.append(partition, decision(n)):
        outbox.add(AUDIT, None, link, partition=partition)
    return outbox


async def settle(broker: Broker, lanes: AuditLanes, outbox: Effects) -> Awaitable[None]:
    return await send_outbox(broker.send, outbox, SOURCE, DLQ, FAST, links=lanes)


async def _let_tasks_run() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_broker_refusing_links_longer_than_any_retry_leaves_no_hole(
    signer: AuditSigner,
    public: dict[str, PublicKey],
) -> None:
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    broker = Broker([KafkaTimeoutError()] * 20)  # far more than FAST's three attempts
    lanes = broker.lanes()
    for n in range(4):
        await (await settle(broker, lanes, event(trail, n)))  # waits, never fails
        clock.advance(1)
    broker.onto(topic)
    report = verify(topic, public, clock.now)
    assert report.intact, [b.describe() for b in report.broken]
    assert report.by_kind["DECISION"] == 4


async def test_a_link_the_broker_refuses_outright_is_never_dead_lettered(
    signer: AuditSigner,
    public: dict[str, PublicKey],
) -> None:
    """An ACL taken away by mistake: the hub waits (loudly) until it is given back; the
    chain never goes on past a link the topic does not have."""
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    broker = Broker([TopicAuthorizationFailedError()] * 3)
    lanes = broker.lanes()
    for n in range(3):
        await (await settle(broker, lanes, event(trail, n)))
    assert [r for r in broker.kept if r.topic == DLQ] == []
    broker.onto(topic)
    assert verify(topic, public, clock.now).intact


async def test_the_next_links_leave_only_once_the_broker_has_every_link_before_them(
    signer: AuditSigner,
) -> None:
    clock = Clock()
    trail = hub_trail(signer, clock)
    broker = Broker(held=True)
    lanes = broker.lanes()
    first = await settle(broker, lanes, event(trail, 1))
    await _let_tasks_run()
    second = await settle(broker, lanes, event(trail, 2))
    await _let_tasks_run()
    assert [json.loads(r.value)["seq"] for r in broker.sent if r.topic == AUDIT] == [1]
    broker.take()  # the first event's records, its link included
    await _let_tasks_run()
    assert [json.loads(r.value)["seq"] for r in broker.sent if r.topic == AUDIT] == [1, 2]
    broker.take()
    await first
    await second


async def test_a_batch_of_links_is_appended_whole_or_not_at_all_and_sent_again_whole(
    signer: AuditSigner,
    public: dict[str, PublicKey],
) -> None:
    """A link acknowledged while one before it is retried would leave the one before it
    missing for good if the partition were given up (or the worker killed) during the
    backoff (found by review in stop 32): one Kafka record batch per lane batch."""
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    broker = Broker(held=True)
    lanes = broker.lanes()
    links = [r for n in (1, 2) for r in event(trail, n).records if r.topic == AUDIT]
    together = lanes.send(links[:1]), lanes.send(links[1:])  # queued before the lane sends
    await broker.holding()
    [(batch, _)] = broker.waiting
    assert [json.loads(r.value)["seq"] for r in batch] == [1, 2]  # one record batch
    broker.take(fail=KafkaTimeoutError())
    await _let_tasks_run()
    assert not any(t.done() for t in together)
    await lanes.give_up({0})  # during the backoff: neither link is on the topic
    with pytest.raises(asyncio.CancelledError):
        await asyncio.gather(*together)
    broker.onto(topic)
    restarted = hub_trail(signer, clock, {})
    restarted.resync(0, [r.value for r in topic.log])
    topic.publish(0, restarted.append(0, decision(3)))
    assert verify(topic, public, clock.now).intact


async def test_a_partition_given_up_lets_its_producer_go_with_what_it_holds(
    signer: AuditSigner,
    public: dict[str, PublicKey],
) -> None:
    """Cancelling a lane cancels its waiting, not a batch the producer holds: landing after
    the next owner's resync, that batch forked the chain (found by review in stop 32).
    The give-up lets the partition's transactional producer go; the next owner's taking
    ends its open transaction, aborted, before that resync
    (tests/integration/test_audit_partitions_are_fenced.py, on the broker)."""
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    broker = Broker(held=True)
    lanes = broker.lanes(0, 1)
    settled = await settle(broker, lanes, event(trail, 1))
    await broker.holding()
    await lanes.give_up({0})
    assert broker.released == [{0}]
    broker.take(abort_links=True)  # its transaction aborted by the next owner's taking
    with pytest.raises(asyncio.CancelledError):
        await settled  # read again by the next owner
    broker.onto(topic)
    restarted = hub_trail(signer, clock, {})
    restarted.resync(0, [r.value for r in topic.log])  # the next owner, after its taking
    topic.publish(0, restarted.append(0, decision(2)))
    assert verify(topic, public, clock.now).intact


async def test_a_lane_whose_partition_another_worker_took_stops_and_says_so(
    signer: AuditSigner,
) -> None:
    """Fenced: this worker was expelled from its group (a long pause, a network cut) and
    the partition's next owner has read the tail and built on it. Nothing more of this
    worker's may reach that chain: its lane stops without sending again, what it was
    given is cancelled (those events are the next owner's), and the worker is told (the
    hub crashes it: it starts again, rejoins, and resyncs whatever it is given)."""
    clock = Clock()
    trail = hub_trail(signer, clock)
    broker = Broker([AuditLaneLost(0)])
    lost: list[int] = []

    async def on_lost(partition: int, error: BaseException) -> None:
        assert isinstance(error, AuditLaneLost)
        lost.append(partition)

    lanes = broker.lanes(0, 1, on_lost=on_lost)
    first = await settle(broker, lanes, event(trail, 1))
    with pytest.raises(asyncio.CancelledError):
        await first
    assert lost == [0]
    late = await settle(broker, lanes, event(trail, 2))
    with pytest.raises(asyncio.CancelledError):
        await late
    assert len([r for r in broker.sent if r.topic == AUDIT]) == 1  # never sent again
    await (await settle(broker, lanes, event(trail, 3, partition=1)))  # the others go on


async def test_a_busy_lane_begins_one_transaction_per_interval_with_all_it_was_given(
    signer: AuditSigner,
    public: dict[str, PublicKey],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A transaction per batch costs the broker five requests and a marker; one per link
    (stop 33's first measure: a batch of one link almost always, 13.6 to 17.2 Kafka
    requests per declaration). An idle lane sends at once; a busy one waits for its
    interval since its last transaction began, and sends what it was given meanwhile in
    one. Only the settling of the events waits (their decisions are on their way).

    The loop's clock stands still until the four are given, then moves on by the interval:
    on the real one, a loaded machine holding this process for the interval while they
    were given split them (a 0.25-s stall: transactions [1, 2, 2])."""
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    broker = Broker()
    lanes = broker.lanes(interval_s=0.2)
    loop = asyncio.get_running_loop()
    loop_clock = [0.0]
    monkeypatch.setattr(loop, "time", lambda: loop_clock[0])
    began = loop.time()
    await (await settle(broker, lanes, event(trail, 1)))
    assert broker.transactions == [1]  # sent at once
    others = []
    for n in range(2, 6):
        others.append(await settle(broker, lanes, event(trail, n)))
        for _ in range(5):  # turns enough for a lane free to send to send
            await asyncio.sleep(0)
    assert broker.transactions == [1]  # the lane waits for its interval
    loop_clock[0] += 0.2
    await asyncio.gather(*others)
    assert broker.transactions == [1, 4]  # the others together, the interval after
    assert loop.time() - began >= 0.2
    broker.onto(topic)
    assert verify(topic, public, clock.now).intact


async def test_a_give_up_does_not_wait_for_an_abort_the_broker_never_answers(
    signer: AuditSigner,
) -> None:
    """A lane cancelled in its transaction aborts it, and aiokafka's abort waits for the
    batch already sent, which a transactional producer never expires while the partition's
    leader is away (found by review in stop 33): the revocation, and faust's with it, hung.
    The give-up cancels again; the next owner's taking ends that transaction."""
    clock = Clock()
    trail = hub_trail(signer, clock)
    sending = asyncio.Event()

    async def broker_away(_partition: int, _links: list[OutgoingRecord]) -> None:
        sending.set()
        try:
            await asyncio.Event().wait()  # never appended
        finally:
            await asyncio.Event().wait()  # the abort, waiting for that batch

    released: list[set[int]] = []

    async def release(partitions: Collection[int]) -> None:
        released.append(set(partitions))

    lanes = AuditLanes(AUDIT, broker_away, release, on_lost=never_lost)
    lanes.open({0})
    settled = lanes.send(event(trail, 1).records[1:])
    await sending.wait()
    async with asyncio.timeout(5):
        await lanes.give_up({0})
    assert released == [{0}]
    with pytest.raises(asyncio.CancelledError):
        await settled


async def test_a_partition_given_up_takes_no_more_links_until_it_is_open_again(
    signer: AuditSigner,
) -> None:
    """An agent finishing an event it had in hand after the give-up: its link would be
    built on this worker's old head, after the next owner's resync."""
    clock = Clock()
    trail = hub_trail(signer, clock)
    broker = Broker()
    lanes = broker.lanes(3, 4)
    await lanes.give_up({3})
    late = await settle(broker, lanes, event(trail, 1, partition=3))
    with pytest.raises(asyncio.CancelledError):
        await late
    assert [r for r in broker.sent if r.topic == AUDIT] == []
    await (await settle(broker, lanes, event(trail, 2, partition=4)))  # other lanes go on
    lanes.open({3})  # assigned again, its chain resynced
    await (await settle(broker, lanes, event(trail, 3, partition=3)))


async def test_an_unexpected_failure_of_a_send_is_sent_again_not_dropped(
    signer: AuditSigner,
    public: dict[str, PublicKey],
) -> None:
    """Dropped, the links it failed would be holes: the trail's head moved past them."""
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    broker = Broker([RuntimeError("a fault of the client")])
    lanes = broker.lanes()
    for n in range(2):
        await (await settle(broker, lanes, event(trail, n)))
    broker.onto(topic)
    assert verify(topic, public, clock.now).intact


def test_a_resync_takes_the_highest_link_among_the_last_records(
    signer: AuditSigner,
    public: dict[str, PublicKey],
) -> None:
    """A link sent again within a batch may land after the links that follow it."""
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    for n in range(3):
        topic.publish(0, trail.append(0, decision(n)))
    retried = trail.append(0, decision(10))
    topic.publish(0, trail.append(0, decision(11)))
    topic.publish(0, retried)  # its first try timed out; its copy sent again lands last
    restarted = hub_trail(signer, clock, {})
    restarted.resync(0, [r.value for r in topic.log if r.partition == 0][-8:])
    topic.publish(0, restarted.append(0, decision(12)))
    report = verify(topic, public, clock.now)
    assert report.intact, [b.describe() for b in report.broken]
    assert report.orphans == 0


async def test_the_hub_gives_its_lanes_up_before_faust_waits_for_its_agents(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust waits for every agent to finish the event in hand before it announces a
    revocation or stops: an agent waiting for room behind links the broker will not take
    would wait for ever, and the worker with it (found by review in stop 32)."""
    order: list[str] = []

    async def faust_revokes(_app: Any, _revoked: Any) -> None:
        order.append("faust waits for the agents")

    async def faust_stops(_app: Any) -> None:
        order.append("faust stops the consumer")

    monkeypatch.setattr(faust.App, "_on_partitions_revoked", faust_revokes)
    monkeypatch.setattr(faust.App, "on_stop", faust_stops)
    app = HubApp("revoke-test", broker="kafka://127.0.0.1:9", store="memory://")

    async def give_up(revoked: set[TP]) -> None:
        order.append(f"lanes of {sorted(tp.partition for tp in revoked)} given up")

    async def stop() -> None:
        order.append("every lane given up")

    app.before_revoking.append(give_up)
    app.before_stopping.append(stop)
    await app._on_partitions_revoked({TP(AUDIT, 2)})
    await app.on_stop()
    assert order == [
        "lanes of [2] given up",
        "faust waits for the agents",
        "every lane given up",
        "faust stops the consumer",
    ]


async def test_links_a_handler_built_before_it_failed_are_undone(
    signer: AuditSigner,
    public: dict[str, PublicKey],
) -> None:
    """A handler that raised after it chained a link: its outbox is discarded (handled
    again, or dead-lettered), so the next link must not name the one never sent (found by
    review in stop 32)."""
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    for n in range(3):
        topic.publish(0, trail.append(0, decision(n)))
    attempts: list[int] = []

    def handler() -> Effects:
        outbox = Effects()
        for link in trail.append(0, decision(10 + len(attempts))):
            outbox.add(AUDIT, None, link, partition=0)
        attempts.append(1)
        if len(attempts) == 1:
            raise KafkaTimeoutError  # a broker away: handled again
        return outbox

    outbox = await _handled(handler, b"record", SOURCE, DLQ, "test", rollback=trail)
    topic.publish(0, [r.value for r in outbox.to(AUDIT)])
    assert len(attempts) == 2
    report = verify(topic, public, clock.now)
    assert report.intact, [b.describe() for b in report.broken]
    assert report.by_kind["DECISION"] == 4


def test_undone_links_leave_the_head_table_as_it_was(signer: AuditSigner) -> None:
    clock = Clock()
    heads: dict[bytes, bytes] = {}
    trail = hub_trail(signer, clock, heads)
    trail.append(0, decision(1))
    before = dict(heads)
    mark = trail.mark()
    trail.append(0, decision(2))
    trail.append(1, decision(3))  # a partition without a head before
    trail.undo(mark)
    assert heads == before


async def test_the_hub_notes_an_assignment_before_faust_takes_it_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust's table recovery resumes the partitions on its own, without waiting for the
    assignment's signal: the chains to read again are noted before (found by review in
    stop 32: records handled meanwhile had their links cancelled), and read at
    ``on_rebalance_complete``, which that recovery awaits before it resumes them (the
    assignment callback itself sends no heartbeat: a slow read there got the worker
    expelled; found by the same review)."""
    order: list[str] = []

    async def faust_assigns(_app: Any, _assigned: Any, _generation_id: int = 0) -> None:
        order.append("faust takes the assignment in")

    monkeypatch.setattr(faust.App, "_on_partitions_assigned", faust_assigns)
    app = HubApp("assign-test", broker="kafka://127.0.0.1:9", store="memory://")

    async def note(assigned: set[TP]) -> None:
        order.append(f"chains of {sorted(tp.partition for tp in assigned)} noted")

    app.before_assigning.append(note)
    await app._on_partitions_assigned({TP(AUDIT, 1)})
    assert order == ["chains of [1] noted", "faust takes the assignment in"]


async def test_a_worker_stopping_runs_no_hook_at_a_rebalance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust returns at once when it stops: a hook would reopen lanes already stopped."""
    ran: list[str] = []

    async def faust_returns(_app: Any, *_args: Any) -> None:
        ran.append("faust")

    monkeypatch.setattr(faust.App, "_on_partitions_assigned", faust_returns)
    monkeypatch.setattr(faust.App, "_on_partitions_revoked", faust_returns)
    app = HubApp("stopping-test", broker="kafka://127.0.0.1:9", store="memory://")

    async def hook(_tps: set[TP]) -> None:
        ran.append("hook")

    app.before_assigning.append(hook)
    app.before_revoking.append(hook)
    monkeypatch.setattr(HubApp, "should_stop", property(lambda _self: True))
    await app._on_partitions_revoked({TP(AUDIT, 0)})
    await app._on_partitions_assigned({TP(AUDIT, 0)})
    assert ran == ["faust", "faust"]


async def test_a_hook_that_fails_crashes_the_worker_rather_than_skip_the_revocation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiokafka logs and swallows what a rebalance listener raises: faust's revocation
    would be skipped without a word."""
    crashed: list[BaseException] = []

    async def faust_revokes(_app: Any, _revoked: Any) -> None:
        return None

    async def crash(_app: Any, reason: BaseException) -> None:
        crashed.append(reason)

    monkeypatch.setattr(faust.App, "_on_partitions_revoked", faust_revokes)
    monkeypatch.setattr(faust.App, "crash", crash)
    app = HubApp("crash-test", broker="kafka://127.0.0.1:9", store="memory://")

    async def broken(_revoked: set[TP]) -> None:
        raise RuntimeError("a lane that cannot be given up")

    app.before_revoking.append(broken)
    await app._on_partitions_revoked({TP(AUDIT, 0)})
    assert [str(c) for c in crashed] == ["a lane that cannot be given up"]


async def test_stopping_the_lanes_closes_the_partitions_without_a_lane_too(
    signer: AuditSigner,
) -> None:
    trail = hub_trail(signer, Clock())
    broker = Broker()
    lanes = broker.lanes(0, 1)
    await (await settle(broker, lanes, event(trail, 1, partition=0)))
    await lanes.stop()
    late = await settle(broker, lanes, event(trail, 2, partition=1))  # never had a lane
    with pytest.raises(asyncio.CancelledError):
        await late


async def test_letting_a_producer_go_does_not_wait_for_a_flush_the_broker_never_answers() -> None:
    """aiokafka's stop flushes what the producer holds, which a transactional producer
    never expires while the partition's leader is away (found by review in stop 33): the
    give-up, and faust's revocation behind it, hung there. The next owner's taking ends
    an open transaction, and the broker refuses a batch of the old epoch once it did."""

    class LeaderAway:
        async def stop(self) -> None:
            await asyncio.Event().wait()

    producers = AuditLinkProducer(ClientConfig("127.0.0.1:9"), AUDIT, "gun-hub-audit-links")
    producers._producers[0] = LeaderAway()  # taken, as if started
    async with asyncio.timeout(5):
        await producers.release([0])
    assert producers._producers == {}
