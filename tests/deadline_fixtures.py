"""Stand-ins for the worker around the deadline timer (runtime/deadline_sweep.py): where it
sends its ticks, which partitions it holds, how far it has read. Shared by the unit tests
that run the timer against the hub's tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.unit.test_deadline_sweep_reads_what_is_due import TOPICS, FakeConsumer


@dataclass
class TickProducer:
    """Where the timer sends its ticks: (key, value, partition) each."""

    sent: list[tuple[bytes, bytes, int | None]] = field(default_factory=list)

    async def send(
        self, topic: str, key: bytes, value: bytes, partition: int | None, *_: Any
    ) -> None:
        assert topic == TOPICS.deadlines
        self.sent.append((key, value, partition))


@dataclass(frozen=True)
class Assigned:
    topic: str
    partition: int


@dataclass
class Assignor:
    actives: set[Assigned]
    rebalancing: bool = False

    def assigned_actives(self) -> set[Assigned]:
        if self.rebalancing:
            raise RuntimeError("the assignment is changing")
        return self.actives


def holding(*partitions: int) -> Assignor:
    """A worker holding these partitions of the deadlines and declarations topics."""
    return Assignor(
        {
            Assigned(topic, p)
            for p in partitions
            for topic in (TOPICS.deadlines, TOPICS.declarations)
        }
    )


@dataclass
class TimerApp:
    """The worker as the timer sees it; by default holding partitions 0 and 2 (and
    partition 3 of the declarations topic: another topic's partitions are no deadlines')."""

    assignor: Assignor = field(
        default_factory=lambda: Assignor(holding(0, 2).actives | {Assigned(TOPICS.declarations, 3)})
    )
    producer: TickProducer = field(default_factory=TickProducer)
    consumer: FakeConsumer = field(default_factory=FakeConsumer)
    rebalancing: bool = False
    in_recovery: bool = False
