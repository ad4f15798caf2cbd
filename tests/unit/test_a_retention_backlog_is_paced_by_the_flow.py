"""After an outage, the retention sweep works off its backlog at the pace cases became due
(gun_hub/runtime/retention_sweep.py, ``RetentionIndex.due``).

A hub that was down for hours finds, at its first look, every case and marker that became
due meanwhile: at production's 100 declarations a second, 360,000 for an hour away. The
spread (stop 43) sends a look's ticks over half the period but never slower than they
can be sent, so the whole backlog went at once, slice after slice, each tick a handling
that writes three or four tombstones: faust's changelog buffer overflowed and held the
declarations read behind it, just when the hub also had the declarations of its absence
to catch up on (stop 43's open item, "a restart's burst remains").

A look now sends, oldest first, what became due within twice the period of the oldest
entry waiting: in steady running that is everything due, and after an outage about
twice the flow, so the backlog shrinks by a period's worth of due times at every look.
A backlog spread thinly over days still goes at least ``BACKLOG_FLOOR`` ticks a look.
"""

from __future__ import annotations

from itertools import pairwise

from gun_hub.pipeline.retention import RetentionEntry, RetentionIndex
from gun_hub.runtime import retention_sweep
from gun_hub.runtime.retention_sweep import RetentionSweep
from tests.unit import test_sweeps_outlive_their_failures as sweeps
from tests.unit.test_a_retention_sweep_spreads_its_ticks import PERIOD_S, TimedProducer, Waits
from tests.unit.test_sweeps_outlive_their_failures import NOW, Clock, RetentionTable

FLOOR = retention_sweep.BACKLOG_FLOOR
WINDOW_S = 2 * PERIOD_S
PER_SECOND = 20  # cases that became due each second while the hub was away


def _away_for(seconds: int) -> RetentionTable:
    """The entries that became due while the hub was away for ``seconds``: an outage's
    backlog, spread over the time as the decisions behind them were."""
    return RetentionTable(
        {
            f"REF{n:07d}".encode(): RetentionEntry(NOW - seconds + n / PER_SECOND, 0).to_bytes()
            for n in range(seconds * PER_SECOND)
        }
    )


class HandlingProducer(TimedProducer):
    """Ticks handled as the deadlines agent would: the entry leaves the table."""

    def __init__(self, waits: Waits, table: RetentionTable) -> None:
        super().__init__(waits)
        self.table = table

    async def send(self, topic: str, key: bytes, value: bytes, *rest: object) -> None:
        await super().send(topic, key, value, *rest)
        del self.table[key]


def _sweep_of(
    table: RetentionTable, clock: Clock
) -> tuple[RetentionSweep, HandlingProducer, RetentionIndex]:
    waits = Waits()
    producer = HandlingProducer(waits, table)
    app = sweeps.SweepApp(assignor=sweeps.Assignor({0}))
    app.producer = producer  # type: ignore[assignment]
    index = RetentionIndex()
    sweep = RetentionSweep(
        app,
        sweeps.TOPICS,
        table,
        index,
        clock=clock,
        spread_s=PERIOD_S / 2,
        window_s=WINDOW_S,
        sleep=waits.sleep,
        monotonic=waits.monotonic,
    )
    return sweep, producer, index


def _due_between(table: RetentionTable, first: float, last: float) -> list[bytes]:
    return sorted(
        key for key, value in table.items() if first <= RetentionEntry.from_bytes(value).due <= last
    )


async def test_after_an_hour_away_a_look_sends_twice_the_periods_flow_oldest_first() -> None:
    table = _away_for(3600)  # 72,000 due
    oldest = NOW - 3600
    expected = _due_between(table, oldest, oldest + WINDOW_S)
    assert len(expected) > FLOOR, "the flow, not the floor, sets this look's count"
    sweep, producer, _ = _sweep_of(table, Clock())

    await sweep.run()

    assert sorted(producer.ticks) == expected, "the oldest two periods' worth, no more"
    assert len(producer.ticks) == 2 * PERIOD_S * PER_SECOND + 1  # both ends due


async def test_the_backlog_shrinks_by_a_periods_worth_at_every_look_and_each_goes_once() -> None:
    table = _away_for(1800)  # half an hour away
    clock = Clock()
    sweep, producer, index = _sweep_of(table, clock)
    offered = len(table)
    behind = [1800.0]  # how long the oldest entry waiting has been due, look after look
    while behind[-1] > PERIOD_S:  # until only what became due since the last look waits
        await sweep.run()
        clock.now += PERIOD_S
        # The hub runs again: a period's worth more becomes due before the next look.
        for n in range(int(PERIOD_S) * PER_SECOND):
            key, due = f"NEW{offered:07d}".encode(), clock.now - PERIOD_S + (n + 1) / PER_SECOND
            table[key] = RetentionEntry(due, 0).to_bytes()
            index.push(0, due, key)  # as the tick handler schedules a case it decided
            offered += 1
        oldest = min(RetentionEntry.from_bytes(value).due for value in table.values())
        behind.append(clock.now - oldest)

    assert all(
        after <= max(before - PERIOD_S + 1 / PER_SECOND, PERIOD_S)
        for before, after in pairwise(behind)
    ), f"a period's worth less at every look, down to the flow's own: {behind}"
    assert len(behind) - 1 == 1800 // PERIOD_S - 1, "caught up in half an hour of looks"
    assert len(producer.ticks) == len(set(producer.ticks)), "no tick sent twice"
    assert len(producer.ticks) + len(table) == offered, "none lost"


async def test_in_steady_running_every_tick_due_goes_at_the_look() -> None:
    table = _away_for(int(PERIOD_S))  # what became due since the last look
    sweep, producer, _ = _sweep_of(table, Clock())
    await sweep.run()
    assert len(producer.ticks) == PERIOD_S * PER_SECOND
    assert not table


async def test_a_sparse_backlog_goes_at_least_the_floor_a_look() -> None:
    """A backlog thinly spread over days (a quiet deployment away for a long weekend): a
    window of two periods holds one entry or none; a look still sends the floor."""
    sparse = FLOOR + FLOOR // 2
    table = RetentionTable(
        {
            f"QUIET{n:05d}".encode(): RetentionEntry(NOW - 600.0 * (sparse - n), 0).to_bytes()
            for n in range(sparse)  # one every ten minutes, the oldest days ago
        }
    )
    sweep, producer, _ = _sweep_of(table, Clock())
    await sweep.run()
    assert sorted(producer.ticks) == [f"QUIET{n:05d}".encode() for n in range(FLOOR)]
    await sweep.run()
    assert len(producer.ticks) == sparse, "the rest at the next look"


async def test_the_index_hands_out_the_window_and_keeps_the_rest() -> None:
    index = RetentionIndex()
    entries = {
        key: RetentionEntry(NOW - 1000 + 100 * n, 0).to_bytes()  # due 1000, 900... s ago
        for n, key in enumerate([b"A", b"B", b"C", b"D", b"E"])
    }
    await index.refresh({0}, entries.items)
    assert index.due(0, NOW, within_s=150.0) == [b"A", b"B"]
    assert index.due(0, NOW, within_s=50.0, at_least=2) == [b"C", b"D"]
    assert index.due(0, NOW, within_s=50.0) == [b"E"]
    assert index.due(0, NOW, within_s=50.0) == []
