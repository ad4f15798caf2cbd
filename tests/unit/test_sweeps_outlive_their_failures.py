"""The hub's periodic sweeps outlive their failures, and the retention sweep loses no key
(gun_hub/runtime/faust_app.py ``every``, gun_hub/runtime/retention_sweep.py,
gun_hub/pipeline/retention.py ``RetentionIndex``).

Found by review in stop 30, each test written before its fix:

1. faust runs a timer as an app task, and a task that raises crashes the worker: a
   deadline or retention sweep meeting a broker timeout, a table changing under its read
   in a rebalance, or a send faust refused, stopped the whole worker; the keys each sweep
   pushed back "for the next sweep" waited for a sweep that never came.
2. A retention tick that could not be sent dropped the keys due after it in the same
   partition: taken off the heap, and never read from the table again (the refresh only
   added entries due beyond its previous horizon). Nor did it catch faust's error: faust's
   producer raises its own, not the broker's.
3. A retention tick lost after it was sent (a send that failed once queued, a tick
   dead-lettered) was never sent again, for the same reason: the case stayed in the hot
   table for ever, and the state it bounds grew.
4. A refresh that failed halfway left new partitions counted as read with half-filled,
   unordered heaps, and the horizon unmoved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.exceptions import ProducerSendError
from faust.types import TP

from gun_contract.topics import topic_registry
from gun_hub import metrics
from gun_hub.pipeline.retention import (
    RETENTION_TICK,
    HeapDueKeys,
    RetentionEntry,
    RetentionIndex,
)
from gun_hub.runtime import retention_sweep
from gun_hub.runtime.faust_app import every
from gun_hub.runtime.retention_sweep import RetentionSweep

TOPICS = topic_registry("gun", ("cites", "dga", "dgal"))
NOW = 1_800_000_000.0


@dataclass
class TimerApp:
    """What ``every`` asks of faust's app: a timer registered by name (an ``async def``,
    as faust's timers are)."""

    timers: dict[str, Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=dict)

    def timer(self, interval: float, name: str) -> Callable[[Any], Any]:
        def register(
            work: Callable[[], Coroutine[Any, Any, None]],
        ) -> Callable[[], Coroutine[Any, Any, None]]:
            self.timers[name] = work
            return work

        return register


async def test_a_periodic_task_that_fails_is_logged_counted_and_runs_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[str] = []

    async def sweep() -> None:
        runs.append("run")
        if len(runs) == 1:
            raise RuntimeError("dictionary changed size during iteration")

    app = TimerApp()
    every(app, 1.0, "deadline sweep", sweep)
    failures = metrics.TIMER_FAILURES.labels(timer="deadline sweep")
    before = failures._value.get()
    await app.timers["deadline sweep"]()  # raises inside: the worker would have crashed
    await app.timers["deadline sweep"]()
    assert runs == ["run", "run"]
    assert failures._value.get() == before + 1
    assert "deadline sweep failed; tried again in 1.0 s" in caplog.text


async def test_a_periodic_task_is_still_cancelled_when_the_worker_stops() -> None:
    async def sweep() -> None:
        await asyncio.sleep(3600)

    app = TimerApp()
    every(app, 1.0, "deadline sweep", sweep)
    task = asyncio.create_task(app.timers["deadline sweep"]())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class RetentionTable(dict[bytes, bytes]):
    """The case-retention table as the sweep sees it; ``fail_after`` entries read, its
    iteration raises as faust's does when a rebalance revokes a partition mid-read (after
    ``meanwhile``, what happened while the read yielded); ``reading`` is called at each
    entry read."""

    fail_after: int | None = None
    meanwhile: Callable[[], None] = staticmethod(lambda: None)
    reading: Callable[[], None] = staticmethod(lambda: None)

    def items(self) -> Iterator[tuple[bytes, bytes]]:  # type: ignore[override]
        for read, item in enumerate(list(super().items())):
            if self.fail_after is not None and read >= self.fail_after:
                self.meanwhile()
                raise RuntimeError("dictionary changed size during iteration")
            self.reading()
            yield item


@dataclass
class TickProducer:
    ticks: list[bytes] = field(default_factory=list)
    refuse: set[bytes] = field(default_factory=set)

    async def send(self, topic: str, key: bytes, value: bytes, *_: Any) -> None:
        assert (topic, value) == (TOPICS.deadlines, RETENTION_TICK)
        if key in self.refuse:
            raise ProducerSendError("faust wraps the broker's error in its own")
        self.ticks.append(key)


@dataclass
class Assignor:
    partitions: set[int]

    def assigned_actives(self) -> set[TP]:
        return {TP(TOPICS.deadlines, p) for p in self.partitions}


@dataclass
class SweepApp:
    producer: TickProducer = field(default_factory=TickProducer)
    assignor: Assignor = field(default_factory=lambda: Assignor({0}))
    rebalancing: bool = False
    in_recovery: bool = False


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


def _sweep(table: RetentionTable, app: SweepApp, clock: Clock) -> RetentionSweep:
    return RetentionSweep(app, TOPICS, table, RetentionIndex(), clock=clock)


async def test_retention_ticks_not_sent_are_all_sent_at_the_next_look() -> None:
    table = RetentionTable(
        {key: RetentionEntry(NOW - n, 0).to_bytes() for n, key in enumerate([b"C", b"B", b"A"])}
    )
    app, clock = SweepApp(), Clock()
    sweep = _sweep(table, app, clock)
    app.producer.refuse = {b"B"}
    await sweep.run()  # not raised: the sweep logs and looks again
    assert app.producer.ticks == [b"A"]
    app.producer.refuse = set()
    clock.now += 1
    await sweep.run()
    assert app.producer.ticks == [b"A", b"B", b"C"]


async def test_a_retention_tick_lost_after_it_was_sent_is_sent_again() -> None:
    table = RetentionTable({b"A": RetentionEntry(NOW, 0).to_bytes()})
    app, clock = SweepApp(), Clock()
    sweep = _sweep(table, app, clock)
    await sweep.run()
    assert app.producer.ticks == [b"A"]
    clock.now += 60
    await sweep.run()
    assert app.producer.ticks == [b"A"], "sent again before the handler had its chance"
    # Its tick never reached the handler: the entry is still there, due, after a while.
    clock.now += retention_sweep._RETICK_S
    await sweep.run()
    assert app.producer.ticks == [b"A", b"A"]


async def test_a_retention_tick_acted_on_is_not_sent_again() -> None:
    table = RetentionTable(
        {b"GONE": RetentionEntry(NOW, 0).to_bytes(), b"LATER": RetentionEntry(NOW, 0).to_bytes()}
    )
    app, clock = SweepApp(), Clock()
    sweep = _sweep(table, app, clock)
    await sweep.run()
    assert sorted(app.producer.ticks) == [b"GONE", b"LATER"]
    # The handler acted: one marker forgotten, one case scheduled again in three days.
    del table[b"GONE"]
    table[b"LATER"] = RetentionEntry(NOW + 3 * 24 * 3600, 0).to_bytes()
    clock.now += retention_sweep._RETICK_S
    await sweep.run()
    assert sorted(app.producer.ticks) == [b"GONE", b"LATER"]


async def test_an_entry_written_back_later_than_its_key_is_held_is_ticked_at_its_own_time() -> None:
    """A failed handling's undo writes the entry it replaced back to the table, past the
    index (stop 44: the index is no longer read again every half hour, which found it):
    the key's row, come due, finds the entry due later, and is held again at that time."""
    table = RetentionTable({b"UNDONE": RetentionEntry(NOW, 0).to_bytes()})
    app, clock = SweepApp(), Clock(NOW - 60)
    sweep = _sweep(table, app, clock)
    await sweep.run()  # the table read: the key held at NOW
    table[b"UNDONE"] = RetentionEntry(NOW + 7200, 0).to_bytes()  # written back meanwhile
    clock.now = NOW
    await sweep.run()
    assert app.producer.ticks == []
    clock.now += 7200
    await sweep.run()
    assert app.producer.ticks == [b"UNDONE"]


async def test_a_retention_read_that_fails_is_tried_again_and_loses_nothing() -> None:
    table = RetentionTable({key: RetentionEntry(NOW, 0).to_bytes() for key in [b"A", b"B"]})
    app, clock = SweepApp(), Clock()
    sweep = _sweep(table, app, clock)
    table.fail_after = 1
    with pytest.raises(RuntimeError):
        await sweep.run()  # ``every`` logs it; the index is as it was
    table.fail_after = None
    await sweep.run()
    assert sorted(app.producer.ticks) == [b"A", b"B"]


async def test_a_read_overtaken_by_a_rebalance_is_read_again_not_counted_as_a_failure() -> None:
    """faust's walk over its partitions' databases raises when a rebalance revokes one
    mid-read (a read takes minutes at production's volume: a rolling deploy's rebalances
    land in it). That is not the timer failing (logged with a traceback, counted,
    alerted on before stop 45): the read is done again once the rebalance is over."""
    table = RetentionTable({key: RetentionEntry(NOW, 0).to_bytes() for key in [b"A", b"B"]})
    app, clock = SweepApp(), Clock()
    sweep = _sweep(table, app, clock)
    table.fail_after = 1

    def a_rebalance_begins() -> None:
        app.rebalancing = True

    table.meanwhile = a_rebalance_begins
    await sweep.run()  # not raised
    assert app.producer.ticks == []
    app.rebalancing = False
    table.fail_after = None
    await sweep.run()
    assert sorted(app.producer.ticks) == [b"A", b"B"]


async def test_a_read_a_rebalance_came_and_went_during_is_read_again_too() -> None:
    """faust's walk raises only as it moves to the next partition's database, minutes
    later at production's volume: by then the rebalance (partitions given to another
    worker and back, a rolling deploy) is over, the same partitions held again; the
    recovery's end told the index (review stop 45)."""
    table = RetentionTable({key: RetentionEntry(NOW, 0).to_bytes() for key in [b"A", b"B"]})
    app, clock = SweepApp(), Clock()
    index = RetentionIndex()
    sweep = RetentionSweep(app, TOPICS, table, index, clock=clock)
    table.fail_after = 1
    table.meanwhile = index.invalidate  # the rebalance's recovery ended during the read
    await sweep.run()  # not raised
    table.fail_after = None
    await sweep.run()
    assert sorted(app.producer.ticks) == [b"A", b"B"]


async def test_what_comes_due_during_a_long_read_goes_in_the_same_look() -> None:
    """The look's time is taken once the read is over (minutes at production's volume),
    not before it: an entry due meanwhile is not left for the next look, and a tick's
    look-again time counts from when it was sent."""
    table = RetentionTable(
        {
            b"SOON": RetentionEntry(NOW + 100, 0).to_bytes(),
            b"NOW": RetentionEntry(NOW, 0).to_bytes(),
        }
    )
    app, clock = SweepApp(), Clock()
    sweep = _sweep(table, app, clock)

    def the_read_takes_its_time() -> None:
        clock.now += 60  # two entries read: two minutes

    table.reading = the_read_takes_its_time
    await sweep.run()
    assert sorted(app.producer.ticks) == [b"NOW", b"SOON"]


async def test_a_retention_entry_pushed_during_a_read_that_fails_is_kept() -> None:
    index = RetentionIndex()
    await index.refresh({0}, RetentionTable().items)  # partition 0 held, empty
    table = RetentionTable({b"A": RetentionEntry(NOW, 0).to_bytes()})
    table.fail_after = 0

    def entries() -> Iterator[tuple[bytes, bytes]]:
        index.push(0, NOW + 10, b"PUSHED")  # the tick handler, while the read yields
        yield from table.items()

    index.invalidate()
    with pytest.raises(RuntimeError):
        await index.refresh({0}, entries)
    assert index.due(0, NOW + 10) == [b"PUSHED"]
    table.fail_after = None
    await index.refresh({0}, table.items)  # read again: stale since it failed
    assert index.due(0, NOW + 20) == [b"A"]


@pytest.mark.parametrize("due", [b"nan", b"inf", b"-inf"])
async def test_an_entry_whose_due_time_is_not_a_time_is_left_alone(due: bytes) -> None:
    """Never written by the hub (a damaged changelog record): read as NaN it was never
    later than now, so its tick was sent and its handler, reading it the same way,
    retired the case at once. Unreadable now, as an entry that does not parse: logged
    and left alone, the others ticked; its marker, if it is one, still read."""
    damaged = b"S" + due + b"|0|"
    table = RetentionTable({b"DAMAGED": damaged, b"FINE": RetentionEntry(NOW, 0).to_bytes()})
    app, clock = SweepApp(), Clock()
    await _sweep(table, app, clock).run()
    assert app.producer.ticks == [b"FINE"]
    with pytest.raises(ValueError, match="not a time"):
        RetentionEntry.from_bytes(damaged)
    marker = RetentionEntry(NOW, 0, b"sealed marker").to_bytes().replace(str(NOW).encode(), due)
    assert RetentionEntry.marker_in(marker) == b"sealed marker"


async def test_unreadable_entries_are_counted_and_said_once_a_read_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Left alone for ever, a damaged entry was logged with its traceback at every read
    of the table (every start and rebalance), one per entry. Now one line a read names
    how many and the first few, and a gauge counts them for an alert."""
    damaged = {f"DAMAGED-{n}".encode(): b"S" + b"nan|0|" for n in range(7)}
    table = RetentionTable({**damaged, b"FINE": RetentionEntry(NOW, 0).to_bytes()})
    index = RetentionIndex()
    with caplog.at_level("WARNING", logger="gun_hub.pipeline.retention"):
        await index.refresh({0}, table.items)
    said = [r for r in caplog.records if "retention entr" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]
    assert said[0].exc_info is None
    assert "7 retention entries" in said[0].getMessage()
    assert "DAMAGED-0" in said[0].getMessage()
    assert "DAMAGED-6" not in said[0].getMessage()  # the first few only
    assert metrics.RETENTION_ENTRIES_UNREADABLE._value.get() == 7
    assert index.due(0, NOW) == [b"FINE"]

    for key in damaged:
        del table[key]  # mended (or the worker holds other partitions now)
    index.invalidate()
    await index.refresh({0}, table.items)
    assert metrics.RETENTION_ENTRIES_UNREADABLE._value.get() == 0


class UnreadableOnce(HeapDueKeys):
    """The index's keys, a look at ``partition`` refused once (a disk error)."""

    def __init__(self, partition: int) -> None:
        super().__init__()
        self.refuse = partition

    def take(self, partition: int, *args: Any) -> list[bytes]:
        if partition == self.refuse:
            self.refuse = -1
            raise OSError("the index's disk refused a read")
        return super().take(partition, *args)


async def test_keys_taken_before_a_partition_whose_look_fails_are_sent_not_lost() -> None:
    """A look takes each partition's due keys off the index in turn: one partition's look
    failing dropped the keys already taken from the others, held nowhere for the rest
    of the worker's run (review stop 45). They are sent; the failed partition's keys, not
    taken, wait for the next look."""
    table = RetentionTable(
        {
            b"ZERO": RetentionEntry(NOW, 0).to_bytes(),
            b"ONE": RetentionEntry(NOW, 1).to_bytes(),
        }
    )
    app, clock = SweepApp(assignor=Assignor({0, 1})), Clock()
    sweep = RetentionSweep(app, TOPICS, table, RetentionIndex(UnreadableOnce(1)), clock=clock)
    await sweep.run()
    assert app.producer.ticks == [b"ZERO"]
    clock.now += 1
    await sweep.run()
    assert app.producer.ticks == [b"ZERO", b"ONE"]
