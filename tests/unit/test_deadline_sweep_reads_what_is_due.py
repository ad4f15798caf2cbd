"""The deadline sweep (runtime/deadline_sweep.py) looks at what falls due, not at every
open case each second.

Every case decided CONTROL_* keeps an ``open-cases`` entry until its control result
comes, for up to ``control_report_after_s`` (7 days): in production hundreds of thousands
of them. The sweep used to read and parse the whole table every ``deadline_sweep_s`` (1 s),
twice (``list()`` asked RocksDB for its length first), so its cost grew with the
controls waiting, under any load (3.8 % of the hub's CPU in a 30-s profile of a
benchmark's first seconds, growing through the run). It now keeps the due times of the
next hour in memory (``DeadlineIndex``), fed by the pipeline's writes, and reads the table
when the hour moves on and after each rebalance.

These run the sweep against a counting stand-in for the faust table and app (no broker:
the real hub's deadlines are covered end to end in tests/e2e/test_silent_partner.py and
tests/e2e/test_hub_restart.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from gun_contract.topics import topic_registry
from gun_hub.pipeline.answer_progress import AnswerProgress
from gun_hub.pipeline.deadlines import DeadlineIndex, IndexedOpenCases
from gun_hub.pipeline.hub_context import OpenCaseEntry
from gun_hub.runtime import deadline_sweep
from gun_hub.runtime.deadline_sweep import DeadlineSweep

TOPICS = topic_registry("gun", ("cites", "dga", "dgal"))
NOW = 1_800_000_000.0
WEEK = 7 * 24 * 3600.0


class CountingTable(dict[bytes, bytes]):
    """The open-cases table as the sweep sees it, counting the entries it iterates."""

    entries_read = 0

    def items(self) -> Iterator[tuple[bytes, bytes]]:  # type: ignore[override]
        for item in list(super().items()):
            self.entries_read += 1
            yield item

    def pop(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        return super().pop(key, default)


@dataclass
class FakeProducer:
    ticks: list[bytes] = field(default_factory=list)
    unreachable: bool = False

    async def send(self, topic: str, key: bytes, *_: Any) -> None:
        assert topic == TOPICS.deadlines
        if self.unreachable:
            raise KafkaConnectionError("the broker went away")
        self.ticks.append(key)


@dataclass
class FakeConsumer:
    """Every input partition ends at ``end`` and is read up to ``read``."""

    end: int = 0
    read: int = 0

    async def highwaters(self, *tps: Any) -> dict[Any, int]:
        return dict.fromkeys(tps, self.end)

    def first_unsettled(self, tp: Any) -> int:
        return self.read


@dataclass
class FakeApp:
    producer: FakeProducer = field(default_factory=FakeProducer)
    consumer: FakeConsumer = field(default_factory=FakeConsumer)
    rebalancing: bool = False
    in_recovery: bool = False


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Worker:
    app: FakeApp
    table: CountingTable
    index: DeadlineIndex
    clock: Clock
    progress: AnswerProgress

    @property
    def sweep(self) -> DeadlineSweep:
        return DeadlineSweep(self.app, TOPICS, self.table, self.progress, self.index, self.clock)

    @property
    def open_cases(self) -> IndexedOpenCases:
        """What the pipeline writes through (app.py gives it to HubContext)."""
        return IndexedOpenCases(self.table, self.index)

    async def sweep_at(self, now: float) -> list[bytes]:
        self.clock.now = now
        before = len(self.app.producer.ticks)
        await self.sweep.run()
        return self.app.producer.ticks[before:]


def _entry(due: float, *, control: bool = False, partition: int = 0) -> bytes:
    return OpenCaseEntry(1, due, partition, waits_for_control=control).to_bytes()


@pytest.fixture
def worker() -> Worker:
    return Worker(FakeApp(), CountingTable(), DeadlineIndex(), Clock(), AnswerProgress())


async def test_a_sweep_with_nothing_due_reads_no_open_case(
    worker: Worker,
) -> None:
    for n in range(10_000):  # controls waiting for their results: due in a week
        worker.table[f"CONTROL{n:05d}".encode()] = _entry(NOW + WEEK, control=True)
    worker.table[b"WAITING"] = _entry(NOW + 30)
    assert await worker.sweep_at(NOW) == []  # the first look reads the table
    read_once = worker.table.entries_read
    assert read_once == 10_001
    for second in range(1, 30):
        assert await worker.sweep_at(NOW + second) == []
    assert worker.table.entries_read == read_once  # 29 sweeps, no entry read again
    assert await worker.sweep_at(NOW + 30) == [b"WAITING"]


async def test_a_case_opened_after_the_first_look_is_ticked_when_due(
    worker: Worker,
) -> None:
    await worker.sweep_at(NOW)
    worker.open_cases[b"NEW"] = _entry(NOW + 30)
    assert await worker.sweep_at(NOW + 29) == []
    assert await worker.sweep_at(NOW + 30) == [b"NEW"]
    assert worker.table.entries_read == 0  # the table was empty at the first look


async def test_a_case_decided_before_its_deadline_is_never_ticked(
    worker: Worker,
) -> None:
    await worker.sweep_at(NOW)
    worker.open_cases[b"ANSWERED"] = _entry(NOW + 30)
    assert worker.open_cases.pop(b"ANSWERED") is not None
    assert await worker.sweep_at(NOW + 31) == []


async def test_a_new_version_s_later_deadline_replaces_the_earlier_one(
    worker: Worker,
) -> None:
    await worker.sweep_at(NOW)
    worker.open_cases[b"AMENDED"] = _entry(NOW + 30)
    worker.open_cases[b"AMENDED"] = _entry(NOW + 60)  # version 2 asked its partners again
    assert await worker.sweep_at(NOW + 30) == []
    assert await worker.sweep_at(NOW + 60) == [b"AMENDED"]


async def test_a_tick_not_acted_on_is_sent_again_after_five_seconds(
    worker: Worker,
) -> None:
    worker.table[b"LATE"] = _entry(NOW)
    assert await worker.sweep_at(NOW) == [b"LATE"]
    assert await worker.sweep_at(NOW + 4) == []
    assert await worker.sweep_at(NOW + 5) == [b"LATE"]  # the tick was lost
    worker.open_cases.pop(b"LATE")  # the second one decided it
    assert await worker.sweep_at(NOW + 10) == []


async def test_a_control_waiting_a_week_is_reported_once_its_week_has_passed(
    worker: Worker,
) -> None:
    """Beyond the hour the worker holds in memory, the table is read again as the hour
    moves on: nothing due is missed, however far ahead it was written."""
    worker.table[b"CONTROL"] = _entry(NOW + WEEK, control=True)
    assert await worker.sweep_at(NOW) == []
    assert len(worker.index) == 0  # a week away: not held
    for hour in range(1, 24 * 7):
        assert await worker.sweep_at(NOW + hour * 3600) == []
    assert await worker.sweep_at(NOW + WEEK) == [b"CONTROL"]


async def test_entries_recovered_in_a_rebalance_are_read_once_it_completes(
    worker: Worker,
) -> None:
    """A partition taken over from another worker brings its open cases through the
    changelog, never through this worker's writes: once the rebalance's recovery has
    completed (faust's ``on_rebalance_complete``), the table is read again."""
    await worker.sweep_at(NOW)
    worker.app.rebalancing = True
    assert await worker.sweep_at(NOW + 1) == []  # no look mid-rebalance
    worker.table[b"RECOVERED"] = _entry(NOW, partition=3)  # restored from the changelog
    worker.app.rebalancing = False
    worker.index.invalidate()  # what the worker's on_rebalance_complete receiver does
    assert await worker.sweep_at(NOW + 2) == [b"RECOVERED"]


async def test_a_case_whose_answers_may_wait_unread_is_looked_at_again_next_sweep(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deadline_sweep, "_CATCH_UP_S", 0.0)
    worker.table[b"BACKLOG"] = _entry(NOW)
    worker.app.consumer.end = 5  # five answers on their way, none read yet
    assert await worker.sweep_at(NOW) == []
    worker.app.consumer.read = 5
    assert await worker.sweep_at(NOW + 1) == [b"BACKLOG"]


async def test_a_read_of_the_table_that_fails_is_done_again_at_the_next_look() -> None:
    """RocksDB may fail mid-read (a partition closed under it): nothing is taken as read."""

    def failing() -> Iterator[tuple[bytes, bytes]]:
        yield b"FIRST", _entry(NOW + 10)
        raise OSError("the store went away")

    index = DeadlineIndex()
    with pytest.raises(OSError, match="the store went away"):
        await index.read(failing, NOW)
    assert index.needs_reading(NOW)
    await index.read({b"FIRST": _entry(NOW + 10)}.items, NOW)
    assert not index.needs_reading(NOW)
    assert index.due(NOW + 10) == [b"FIRST"]


async def test_cases_due_when_the_broker_could_not_be_reached_are_ticked_at_the_next_sweep(
    worker: Worker,
) -> None:
    worker.table[b"FIRST"] = _entry(NOW)
    worker.table[b"SECOND"] = _entry(NOW)
    worker.app.producer.unreachable = True
    with pytest.raises(KafkaConnectionError):
        await worker.sweep_at(NOW)
    worker.app.producer.unreachable = False
    assert sorted(await worker.sweep_at(NOW + 1)) == [b"FIRST", b"SECOND"]


async def test_a_rebalance_that_completes_during_a_read_has_the_table_read_again() -> None:
    """The read yields to the agents as it goes: a rebalance may complete meanwhile, and
    the entries it brought may have been iterated past already."""
    index = DeadlineIndex()

    def entries() -> Iterator[tuple[bytes, bytes]]:
        yield b"BEFORE", _entry(NOW + 10)
        index.invalidate()  # what on_rebalance_complete does, mid-read

    await index.read(entries, NOW)
    assert index.needs_reading(NOW)
