"""Audit links reach ``gun.audit`` in chain order, each one certain to follow the links
before it, whatever the broker does (runtime/audit_lanes.py).

Found by review in stop 32: the links went out in each event's outbox like any record.
A delivery that failed for good stopped the agent, its supervisor started it again in
the same process (no reassignment, no resync), and the next link pointed at one never
written: a hole that no restart repairs ("record missing"). A link the broker refused
outright was dead-lettered and the chain went on past it; and a link retried by the
delivery could land after links built on it, even after a resync (a forged branch), or
last in the log, where a resync read it as the head (a fork).

Now each audit partition has one lane: its links are sent in order, a batch at a time,
the next batch only once the broker has all of the last, retried without end (never
dead-lettered: the audit must not go on without them), and an event settles once its
links are in. The log is a prefix of the chain, give or take the order within the last
batch, and a resync takes the highest link among the last records.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects, OutgoingRecord
from gun_contract.security.keystore import AuditSigner, PublicKey
from gun_hub.runtime.audit_lanes import AuditLanes
from gun_hub.runtime.delivery import Retries, send_outbox
from gun_hub.security.audit import AuditTrail
from tests.unit.test_audit_chain import (
    Clock,
    Topic,
    decision,
    hub_trail,
    public,  # noqa: F401 - fixture
    signer,  # noqa: F401 - fixture
    verify,
)

AUDIT = "gun.audit"
DLQ = "gun.dlq"
SOURCE = SourcePosition("gun.declarations", 0, 7, b"26FR000690I0000012")
FAST = Retries(attempts=3, backoff_s=0.001, max_backoff_s=0.001)


class Broker:
    """Takes records onto a topic, fails them as told, or holds them until released."""

    def __init__(self, failures: list[Exception] | None = None, *, held: bool = False) -> None:
        self.failures = failures or []
        self.held = held
        self.sent: list[OutgoingRecord] = []
        self.kept: list[OutgoingRecord] = []
        self.waiting: list[tuple[OutgoingRecord, asyncio.Future[None]]] = []
        self.arrived = asyncio.Event()  # a record held since ``arrived`` was cleared

    async def holding(self) -> None:
        """Until a record is held (sent again after a backoff, say)."""
        async with asyncio.timeout(5):
            while not self.waiting:
                self.arrived.clear()
                await self.arrived.wait()

    async def send(self, record: OutgoingRecord) -> Awaitable[Any]:
        self.sent.append(record)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if record.topic == AUDIT and self.failures:
            future.set_exception(self.failures.pop(0))
        elif self.held:
            self.waiting.append((record, future))
            self.arrived.set()
        else:
            self.kept.append(record)
            future.set_result(None)
        return future

    def take(self, count: int | None = None, *, fail: Exception | None = None) -> None:
        """Acknowledge (or fail) the first ``count`` held records, in order."""
        taken = self.waiting[:count] if count is not None else list(self.waiting)
        del self.waiting[: len(taken)]
        for record, future in taken:
            if future.done():
                continue  # cancelled by the one who waited for it
            if fail is not None:
                future.set_exception(fail)
            else:
                self.kept.append(record)
                future.set_result(None)

    def onto(self, topic: Topic) -> None:
        for record in self.kept:
            if record.topic == AUDIT:
                assert record.partition is not None
                topic.publish(record.partition, [record.value])


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
    signer: AuditSigner,  # noqa: F811
    public: dict[str, PublicKey],  # noqa: F811
) -> None:
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    broker = Broker([KafkaTimeoutError()] * 20)  # far more than FAST's three attempts
    lanes = AuditLanes(AUDIT, broker.send, backoff_s=0.001, max_backoff_s=0.001)
    for n in range(4):
        await (await settle(broker, lanes, event(trail, n)))  # waits, never fails
        clock.advance(1)
    broker.onto(topic)
    report = verify(topic, public, clock.now)
    assert report.intact, [b.describe() for b in report.broken]
    assert report.by_kind["DECISION"] == 4


async def test_a_link_the_broker_refuses_outright_is_never_dead_lettered(
    signer: AuditSigner,  # noqa: F811
    public: dict[str, PublicKey],  # noqa: F811
) -> None:
    """An ACL taken away by mistake: the hub waits (loudly) until it is given back; the
    chain never goes on past a link the topic does not have."""
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    broker = Broker([TopicAuthorizationFailedError()] * 3)
    lanes = AuditLanes(AUDIT, broker.send, backoff_s=0.001, max_backoff_s=0.001)
    for n in range(3):
        await (await settle(broker, lanes, event(trail, n)))
    assert [r for r in broker.kept if r.topic == DLQ] == []
    broker.onto(topic)
    assert verify(topic, public, clock.now).intact


async def test_the_next_links_leave_only_once_the_broker_has_every_link_before_them(
    signer: AuditSigner,  # noqa: F811
) -> None:
    clock = Clock()
    trail = hub_trail(signer, clock)
    broker = Broker(held=True)
    lanes = AuditLanes(AUDIT, broker.send)
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


async def test_an_event_settles_only_once_every_link_of_its_batch_is_in(
    signer: AuditSigner,  # noqa: F811
) -> None:
    """A link acknowledged while one before it is retried: its event waits, or a crash
    after its commit would leave the one before it missing for good."""
    clock = Clock()
    trail = hub_trail(signer, clock)
    broker = Broker(held=True)
    lanes = AuditLanes(AUDIT, broker.send, backoff_s=0.001, max_backoff_s=0.001)
    # Two events' links queued before the lane sends: one batch.
    outboxes = [event(trail, 1), event(trail, 2)]
    links = [r for o in outboxes for r in o.records if r.topic == AUDIT]
    together = lanes.send(links[:1]), lanes.send(links[1:])
    await _let_tasks_run()
    assert len([r for r, _ in broker.waiting if r.topic == AUDIT]) == 2
    broker.take(1, fail=KafkaTimeoutError())  # the first link: not taken
    broker.take(1)  # the second: taken
    await _let_tasks_run()
    assert not together[1].done()
    await broker.holding()
    broker.take()  # the first, sent again
    await asyncio.gather(*together)


async def test_a_partition_given_up_stops_its_lane_and_lets_its_events_go(
    signer: AuditSigner,  # noqa: F811
) -> None:
    clock = Clock()
    trail = hub_trail(signer, clock)
    broker = Broker(held=True)
    lanes = AuditLanes(AUDIT, broker.send)
    settled = await settle(broker, lanes, event(trail, 1, partition=3))
    await _let_tasks_run()
    await lanes.give_up({3})
    broker.take()  # its status record goes; its link is no longer waited for
    with pytest.raises(asyncio.CancelledError):
        await settled
    later = await settle(broker, lanes, event(trail, 2, partition=4))  # other lanes go on
    await _let_tasks_run()
    broker.take()
    await later


def test_a_resync_takes_the_highest_link_among_the_last_records(
    signer: AuditSigner,  # noqa: F811
    public: dict[str, PublicKey],  # noqa: F811
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
