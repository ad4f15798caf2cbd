"""The offset watchdog reads again what faust fetched and dropped, and nothing else
(gun_hub/runtime/watchdog.py). The broker's answer (which offsets hold a record) is
given here; tests/integration/test_a_record_faust_drops_is_handled.py runs it for real."""

from __future__ import annotations

from dataclasses import dataclass, field

from faust.types import TP

from gun_hub.runtime.offsets import EmptyOffsets, first_unsettled
from gun_hub.runtime.watchdog import OffsetWatchdog

PARTITION = TP("gun.responses.dgal", 2)


@dataclass
class FakeConsumer:
    """The consumer's side the watchdog reads and acts on."""

    committed: int
    handled: set[int] = field(default_factory=set)
    fetched: int | None = None
    waiting: set[int] = field(default_factory=set)  # queued or held by a stream
    empty: EmptyOffsets = field(default_factory=EmptyOffsets)
    sought: list[int] = field(default_factory=list)

    def first_unsettled(self, tp: TP) -> int:
        return first_unsettled(self.committed, self.handled, self.empty)

    def fetched_up_to(self, tp: TP) -> int | None:
        return self.fetched

    def on_the_way(self) -> set[tuple[TP, int]]:
        return {(PARTITION, offset) for offset in self.waiting}

    fetched_again: list[TP] = field(default_factory=list)
    throttled: set[TP] = field(default_factory=set)  # not fetched on purpose

    fetches: bool = True  # in faust's active set

    def fetching(self, tp: TP) -> bool:
        return self.fetches and not self.fetched_again

    def fetch_again(self, tp: TP) -> None:
        self.fetched_again.append(tp)

    def mark_empty(self, tp: TP, start: int, stop: int) -> None:
        self.empty.add(start, stop)

    async def seek(self, tp: TP, offset: int) -> None:
        self.sought.append(offset)
        self.fetched = None

    def describe(self, tp: TP, offset: int) -> str:
        return f"fetched up to {self.fetched}"


class Broker:
    def __init__(self, records: set[int]) -> None:
        self.records = records
        self.asked = 0

    async def present(self, tp: TP, start: int, stop: int) -> set[int]:
        self.asked += 1
        return {o for o in self.records if start <= o < stop}


def _watchdog(broker: Broker) -> tuple[OffsetWatchdog, list[float]]:
    now = [0.0]
    watchdog = OffsetWatchdog(lambda: None, "unused:9092", {PARTITION.topic}, 4.0, lambda: now[0])
    watchdog._present = broker.present  # type: ignore[method-assign]

    async def end_offset(tp: TP) -> int:
        return max(broker.records, default=-1) + 1

    watchdog._end_offset = end_offset  # type: ignore[method-assign]
    return watchdog, now


async def _ticks(watchdog: OffsetWatchdog, consumer: FakeConsumer, now: list[float]) -> None:
    for _ in range(4):
        await watchdog._look_at(consumer, PARTITION, now[0], consumer.on_the_way)  # type: ignore[arg-type]
        now[0] += 2.0


async def test_a_fetched_record_neither_queued_nor_handled_is_read_again() -> None:
    consumer = FakeConsumer(committed=10, handled={10, 12, 13}, fetched=13)
    watchdog, now = _watchdog(Broker(set(range(20))))
    await _ticks(watchdog, consumer, now)
    assert consumer.sought == [11]
    assert watchdog.read_again == 1


async def test_a_record_waiting_in_a_queue_is_left_alone() -> None:
    consumer = FakeConsumer(committed=10, handled={10}, fetched=500, waiting={11})
    broker = Broker(set(range(600)))
    watchdog, now = _watchdog(broker)
    await _ticks(watchdog, consumer, now)
    assert consumer.sought == []
    assert broker.asked == 0


async def test_offsets_without_a_record_are_stepped_over_not_read_again() -> None:
    consumer = FakeConsumer(committed=10, handled={10, 13}, fetched=13)
    watchdog, now = _watchdog(Broker({10, 13}))  # 11, 12: a transaction's markers
    await _ticks(watchdog, consumer, now)
    assert consumer.sought == []
    assert consumer.first_unsettled(PARTITION) == 14


async def test_a_record_not_yet_fetched_is_not_suspect() -> None:
    consumer = FakeConsumer(committed=10, handled=set(), fetched=None)
    broker = Broker(set(range(20)))
    watchdog, now = _watchdog(broker)
    await _ticks(watchdog, consumer, now)
    assert consumer.sought == []
    assert broker.asked == 0


async def test_a_suspect_is_judged_only_after_it_stayed_one_for_the_stall_time() -> None:
    consumer = FakeConsumer(committed=10, handled={10, 12}, fetched=12)
    broker = Broker(set(range(20)))
    watchdog, _now = _watchdog(broker)
    await watchdog._look_at(consumer, PARTITION, 0.0, consumer.on_the_way)  # type: ignore[arg-type]
    await watchdog._look_at(consumer, PARTITION, 2.0, consumer.on_the_way)  # type: ignore[arg-type]
    assert broker.asked == 0
    consumer.waiting.add(11)  # it was on its way after all
    await watchdog._look_at(consumer, PARTITION, 4.0, consumer.on_the_way)  # type: ignore[arg-type]
    await watchdog._look_at(consumer, PARTITION, 8.0, consumer.on_the_way)  # type: ignore[arg-type]
    assert broker.asked == 0
    assert consumer.sought == []


async def test_a_partition_faust_stopped_fetching_is_fetched_again_from_its_head() -> None:
    """Seen in the demo under load: records submitted while the hub started were never
    fetched on one partition (it stayed out of faust's active set) until a restart."""
    consumer = FakeConsumer(committed=8, handled=set(), fetched=None, fetches=False)
    watchdog, now = _watchdog(Broker(set(range(11))))  # offsets 8, 9, 10 wait
    for _ in range(8):
        await watchdog._look_at(consumer, PARTITION, now[0], consumer.on_the_way)  # type: ignore[arg-type]
        now[0] += 2.0
    assert consumer.fetched_again == [PARTITION]
    assert consumer.sought == [8]


async def test_a_partition_faust_still_fetches_gets_a_minute_before_it_is_read_again() -> None:
    """Under load a partition can wait seconds for the fetcher (the full chaos run: four
    partitions 'repaired' while merely behind); reading it again throws away what is on
    its way, so only a long silence counts."""
    consumer = FakeConsumer(committed=8, handled=set(), fetched=None, fetches=True)
    watchdog, now = _watchdog(Broker(set(range(11))))
    for _ in range(25):  # 50 s
        await watchdog._look_at(consumer, PARTITION, now[0], consumer.on_the_way)  # type: ignore[arg-type]
        now[0] += 2.0
    assert consumer.sought == []
    for _ in range(10):
        await watchdog._look_at(consumer, PARTITION, now[0], consumer.on_the_way)  # type: ignore[arg-type]
        now[0] += 2.0
    assert consumer.sought == [8]


async def test_a_caught_up_partition_is_left_alone() -> None:
    consumer = FakeConsumer(committed=11, handled=set(), fetched=None)
    watchdog, now = _watchdog(Broker(set(range(11))))  # the log ends at 11
    for _ in range(8):
        await watchdog._look_at(consumer, PARTITION, now[0], consumer.on_the_way)  # type: ignore[arg-type]
        now[0] += 2.0
    assert consumer.fetched_again == []
    assert consumer.sought == []


async def test_a_partition_the_hub_stopped_fetching_on_purpose_is_left_alone() -> None:
    """Declarations are not fetched while the worker holds ``hub.admission_limit`` of
    them (pipeline/admission.py): records waiting on the broker then are no stall."""
    consumer = FakeConsumer(committed=8, handled=set(), fetched=None, throttled={PARTITION})
    watchdog, now = _watchdog(Broker(set(range(11))))  # offsets 8, 9, 10 wait
    for _ in range(8):
        await watchdog._look_at(consumer, PARTITION, now[0], consumer.on_the_way)  # type: ignore[arg-type]
        now[0] += 2.0
    assert consumer.fetched_again == []
    assert consumer.sought == []


async def test_a_commit_point_below_the_log_start_moves_to_the_first_record() -> None:
    """Back after longer than the topic's retention: the records from the commit point on
    were deleted, faust reads from the log's start; the offsets in between hold nothing
    (the broker's part is tested in
    tests/integration/test_the_watchdog_steps_over_what_retention_deleted.py)."""
    records = set(range(5000, 5010))
    consumer = FakeConsumer(committed=10, handled=records, fetched=5009)
    watchdog, now = _watchdog(Broker(records))
    await _ticks(watchdog, consumer, now)
    assert consumer.sought == []
    assert consumer.first_unsettled(PARTITION) == 5010
