"""The retention sweep spreads the ticks of a look over half its period
(gun_hub/runtime/retention_sweep.py).

A look sends a tick for every case and marker due since the last one: at production's
sweep of a minute and 100 declarations a second, some 6,000 at once, each a handling of
the deadlines agent that writes tombstones to three or four changelogs. Sent in one go,
they reached the agents as one burst: faust's changelog buffer overflowed ("producer
buffer full", thousands of times in a steady run) and paused every stream while it
emptied, and the declarations read meanwhile waited behind the burst (stop 43,
`bench-steady`). Spread in slices over half the sweep's period, the same work is done at
about twice the rate cases become due, never slower than that, and the agents' turns
stay interleaved with the declarations'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gun_hub.pipeline.retention import RetentionEntry, RetentionIndex
from gun_hub.runtime import retention_sweep
from gun_hub.runtime.retention_sweep import RetentionSweep
from tests.unit.test_sweeps_outlive_their_failures import (
    NOW,
    TOPICS,
    Assignor,
    Clock,
    RetentionTable,
    SweepApp,
)

PERIOD_S = 60.0
SLICE = retention_sweep.TICKS_PER_SLICE


@dataclass
class Waits:
    """The sweep's clock for its spread (monotonic) and its sleep, which moves it on."""

    now: float = 1000.0
    slept: list[float] = field(default_factory=list)
    then: Callable[[], None] | None = None  # what happens meanwhile, at each sleep

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if self.then is not None:
            self.then()


def _due(count: int, partitions: int = 1) -> RetentionTable:
    return RetentionTable(
        {
            f"REF{n:05d}".encode(): RetentionEntry(NOW - 1, n % partitions).to_bytes()
            for n in range(count)
        }
    )


def _sweep(table: RetentionTable, app: SweepApp, waits: Waits) -> RetentionSweep:
    return RetentionSweep(
        app,
        TOPICS,
        table,
        RetentionIndex(),
        clock=Clock(),
        spread_s=PERIOD_S / 2,
        sleep=waits.sleep,
        monotonic=waits.monotonic,
    )


class TimedProducer:
    """Where the ticks go, and when (on the sweep's spread clock) each went."""

    def __init__(self, waits: Waits) -> None:
        self.waits = waits
        self.sent_at: list[float] = []
        self.ticks: list[bytes] = []
        self.refuse_after: int | None = None

    async def send(self, topic: str, key: bytes, value: bytes, *_: object) -> None:
        assert topic == TOPICS.deadlines
        if self.refuse_after is not None and len(self.ticks) >= self.refuse_after:
            raise RuntimeError("the broker refused the tick")
        self.ticks.append(key)
        self.sent_at.append(self.waits.now - 1000.0)


def _app(waits: Waits, partitions: set[int] | None = None) -> tuple[SweepApp, TimedProducer]:
    producer = TimedProducer(waits)
    app = SweepApp(assignor=Assignor(partitions or {0}))
    app.producer = producer  # type: ignore[assignment]
    return app, producer


async def test_many_ticks_due_are_sent_in_slices_over_half_the_sweeps_period() -> None:
    waits = Waits()
    app, producer = _app(waits)
    await _sweep(_due(10 * SLICE), app, waits).run()
    assert len(producer.ticks) == 10 * SLICE, "every tick due is sent in the same look"
    slices = [producer.sent_at[n : n + SLICE] for n in range(0, 10 * SLICE, SLICE)]
    assert all(len(set(each)) == 1 for each in slices), "a slice goes at once"
    starts = [each[0] for each in slices]
    assert starts == [n * PERIOD_S / 2 / 10 for n in range(10)]
    assert starts[-1] < PERIOD_S / 2, "done within half the period: no look overlaps the next"


async def test_a_slice_or_fewer_due_goes_at_once() -> None:
    waits = Waits()
    app, producer = _app(waits)
    await _sweep(_due(SLICE), app, waits).run()
    assert len(producer.ticks) == SLICE
    assert waits.slept == []


async def test_a_backlog_slower_to_send_than_the_spread_is_not_slowed_down() -> None:
    """Each slice's start is fixed from the look's beginning: a send that took longer than
    a slice's share of the spread is followed by the next slice at once."""
    waits = Waits()
    app, producer = _app(waits)

    async def slow_send(topic: str, key: bytes, value: bytes, *rest: object) -> None:
        await TimedProducer.send(producer, topic, key, value, *rest)
        waits.now += 1.0  # a second per tick: far behind the spread's pace

    producer.send = slow_send  # type: ignore[method-assign]
    await _sweep(_due(4 * SLICE), app, waits).run()
    assert len(producer.ticks) == 4 * SLICE
    assert sum(waits.slept) == 0.0


async def test_the_ticks_of_every_partition_held_share_the_spread() -> None:
    waits = Waits()
    app, producer = _app(waits, {0, 1, 2})
    table = _due(3 * SLICE, partitions=3)
    await _sweep(table, app, waits).run()
    assert sorted(producer.ticks) == sorted(table)
    assert len(set(producer.sent_at)) == 3, "three slices, whatever their partitions"


async def test_a_rebalance_during_the_spread_leaves_the_unsent_ticks_to_the_next_look() -> None:
    waits = Waits()
    app, producer = _app(waits)
    table = _due(3 * SLICE)
    sweep = _sweep(table, app, waits)
    waits.then = lambda: setattr(app, "rebalancing", True)  # after the first slice
    await sweep.run()
    assert len(producer.ticks) == SLICE, "nothing sent for partitions that may be moving"
    app.rebalancing = False
    waits.then = None
    await sweep.run()
    assert sorted(producer.ticks) == sorted(table), "the rest sent at the next look, once"


async def test_a_send_refused_during_the_spread_leaves_every_unsent_tick_to_the_next_look() -> None:
    waits = Waits()
    app, producer = _app(waits, {0, 1})
    table = _due(3 * SLICE, partitions=2)
    sweep = _sweep(table, app, waits)
    producer.refuse_after = SLICE + 5
    await sweep.run()  # logged, not raised
    assert len(producer.ticks) == SLICE + 5
    producer.refuse_after = None
    await sweep.run()
    assert sorted(producer.ticks) == sorted(table), "each partition's rest sent, once"
