"""Idle partitions get their checkpoint in time: the keeper's timer and tick.

The hub signs every audit record within ``checkpoint_within_s`` while it runs, which is
what lets ``audit verify`` treat an older unsigned record as a break. A busy partition is
signed as records arrive; an idle one by a tick: a timer sends it on the hub's deadlines
topic (only for the partitions this worker owns, only when due), and the tick, handled in
event context, appends the checkpoint.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.keystore import AuditSigner
from gun_contract.security.state_cipher import StateCipher
from gun_contract.topics import topic_registry
from gun_hub.domain.risk import RiskRules
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.audit_keeper import AUDIT_TICK_KEY, AuditKeeper, is_audit_tick
from gun_hub.pipeline.deadlines import Deadlines
from gun_hub.pipeline.hub_context import HubContext
from gun_hub.security.audit import AuditTrail
from tests.conftest import envelope_of

WITHIN_S = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Hub:
    context: HubContext
    keeper: AuditKeeper
    clock: Clock
    heads: dict[bytes, bytes]


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    topics = topic_registry("gun", routing_table.authorities)
    clock = Clock()
    heads: dict[bytes, bytes] = {}
    context = HubContext(
        topics=topics,
        routing=routing_table,
        envelope=envelope_of(HUB_PARTY, topics, keys_dir),
        audit=AuditTrail(
            heads,
            AuditSigner.load(keys_dir),
            checkpoint_every=100,
            checkpoint_within_s=WITHIN_S,
            clock=clock,
        ),
        cases={},
        open_cases=dict[bytes, bytes](),
        risk_rules=RiskRules(),
        request_deadline_s=30,
        outbox_cipher=StateCipher.load(keys_dir, HUB_PARTY),
        outbox_partitions=4,
        clock=clock,
    )
    return Hub(context, AuditKeeper(context), clock, heads)


def decide(hub: Hub, partition: int) -> None:
    outbox = Effects()
    hub.context.record_audit(outbox, partition, {"kind": "DECISION", "reference": "R"})


@dataclass
class Event:
    key: bytes | None
    value: bytes = b"1"


def test_a_tick_signs_what_waits_and_nothing_else(hub: Hub) -> None:
    tick = SourcePosition(hub.context.topics.deadlines, 2, 40, AUDIT_TICK_KEY)
    assert hub.keeper.tick(tick).records == []  # nothing written yet
    decide(hub, 2)
    assert hub.keeper.tick(tick).records == []  # not due yet
    hub.clock.now += timedelta(seconds=WITHIN_S / 2)
    [checkpoint] = hub.keeper.tick(tick).records
    assert (checkpoint.topic, checkpoint.partition) == (hub.context.topics.audit, 2)
    assert json.loads(checkpoint.value)["kind"] == "CHECKPOINT"
    assert hub.keeper.tick(tick).records == []  # signed: nothing waits


def test_the_deadlines_handler_passes_audit_ticks_to_the_keeper(hub: Hub) -> None:
    seen: list[Any] = []

    def deadlines(event: Any, source: SourcePosition, accepted_at: float | None) -> Effects:
        seen.append(event.key)
        return Effects()

    handle = hub.keeper.ticks_or(deadlines)
    decide(hub, 1)
    hub.clock.now += timedelta(seconds=WITHIN_S)
    source = SourcePosition(hub.context.topics.deadlines, 1, 0, AUDIT_TICK_KEY)
    assert len(handle(Event(AUDIT_TICK_KEY), source, None).records) == 1
    handle(Event(b"26FR000690I0000012"), source, None)
    assert seen == [b"26FR000690I0000012"]


def test_an_audit_tick_reaching_the_deadlines_step_itself_changes_nothing(hub: Hub) -> None:
    """Should the deadlines agent get a tick unrouted, it finds no case under that key."""
    assert is_audit_tick(AUDIT_TICK_KEY)
    assert not is_audit_tick(b"26FR000690I0000012")
    source = SourcePosition(hub.context.topics.deadlines, 0, 0, AUDIT_TICK_KEY)
    outbox = Deadlines(hub.context, {}).handle(AUDIT_TICK_KEY.decode(), 0, source)
    assert outbox.records == []


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass
class FakeApp:
    """What the keeper uses of a faust app: its timer, assignment and producer."""

    owned: list[TP]
    timers: list[tuple[float, Callable[[], Any]]] = field(default_factory=list)
    sent: list[tuple[Any, ...]] = field(default_factory=list)

    def timer(self, interval: float) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
        def register(fun: Callable[[], Any]) -> Callable[[], Any]:
            self.timers.append((interval, fun))
            return fun

        return register

    @property
    def assignor(self) -> FakeApp:
        return self

    def assigned_actives(self) -> set[TP]:
        return set(self.owned)

    @property
    def producer(self) -> FakeApp:
        return self

    async def send(self, *args: Any) -> None:
        self.sent.append(args)


def test_the_timer_ticks_only_owned_partitions_that_are_due(hub: Hub) -> None:
    deadlines = hub.context.topics.deadlines
    app = FakeApp([TP(deadlines, 0), TP(deadlines, 1), TP(hub.context.topics.declarations, 3)])
    hub.keeper.schedule_checkpoints(app, WITHIN_S / 4)
    [(interval, run)] = app.timers
    assert interval == WITHIN_S / 4
    for partition in (0, 1, 3):
        decide(hub, partition)
    asyncio.run(run())
    assert app.sent == []  # nothing due yet
    hub.clock.now += timedelta(seconds=WITHIN_S / 2)
    asyncio.run(run())
    # Partition 3 is due too, but its deadlines partition belongs to another worker.
    assert [(a[0], a[1], a[3]) for a in app.sent] == [
        (deadlines, AUDIT_TICK_KEY, 0),
        (deadlines, AUDIT_TICK_KEY, 1),
    ]


def test_a_timer_during_a_rebalance_waits(hub: Hub) -> None:
    class Rebalancing(FakeApp):
        def assigned_actives(self) -> set[TP]:
            raise RuntimeError("rebalancing")

    app = Rebalancing([])
    hub.keeper.schedule_checkpoints(app, 1.0)
    decide(hub, 0)
    hub.clock.now += timedelta(seconds=WITHIN_S)
    asyncio.run(app.timers[0][1]())
    assert app.sent == []


def test_a_partition_lost_in_a_rebalance_is_signed_again_when_it_comes_back(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    released: list[int] = []

    class Trail:
        def checkpoint_due(self, partition: int) -> bool:
            return False

        def release(self, partition: int) -> None:
            released.append(partition)

    topics = topic_registry("gun", routing_table.authorities)
    context = HubContext(
        topics=topics,
        routing=routing_table,
        envelope=envelope_of(HUB_PARTY, topics, keys_dir),
        audit=Trail(),  # type: ignore[arg-type]
        cases={},
        open_cases=dict[bytes, bytes](),
        risk_rules=RiskRules(),
        request_deadline_s=30,
        outbox_cipher=StateCipher.load(keys_dir, HUB_PARTY),
        outbox_partitions=4,
        clock=Clock(),
    )
    app = FakeApp([TP(topics.deadlines, 0), TP(topics.deadlines, 1)])
    AuditKeeper(context).schedule_checkpoints(app, 1.0)
    run = app.timers[0][1]
    asyncio.run(run())
    app.owned = [TP(topics.deadlines, 1)]
    asyncio.run(run())
    assert released == [0]


def test_a_tick_that_cannot_be_sent_does_not_stop_the_timer(hub: Hub) -> None:
    deadlines = hub.context.topics.deadlines

    class Flaky(FakeApp):
        async def send(self, *args: Any) -> None:
            if args[3] == 0:
                raise ConnectionError("broker restarting")
            self.sent.append(args)

    app = Flaky([TP(deadlines, 0), TP(deadlines, 1)])
    hub.keeper.schedule_checkpoints(app, 1.0)
    decide(hub, 0)
    decide(hub, 1)
    hub.clock.now += timedelta(seconds=WITHIN_S)
    asyncio.run(app.timers[0][1]())
    assert [a[3] for a in app.sent] == [1]
