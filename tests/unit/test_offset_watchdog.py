"""The offset watchdog reads again what faust fetched and dropped, and nothing else
(gun_hub/runtime/watchdog.py). The broker's answer (which offsets hold a record) is
given here; tests/integration/test_a_record_faust_drops_is_handled.py runs it for real."""

from __future__ import annotations

from dataclasses import dataclass, field

from faust.types import TP

from gun_hub.runtime.offsets import EmptyOffsets, first_unsettled
from gun_hub.runtime.watchdog import PROBE_MAX_RECORDS, OffsetWatchdog

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
    """Which offsets hold a record a committed read returns, and where such a read ends
    (past the last record when a transaction's marker or an aborted record is last)."""

    def __init__(self, records: set[int], end: int | None = None, log_start: int = 0) -> None:
        self.records = records
        self.end = end if end is not None else max(records, default=-1) + 1
        self.log_start = log_start
        self.asked = 0
        self.timeouts = 0  # looks that time out (nothing learnt), from the first

    async def present(
        self,
        tp: TP,
        start: int,
        stop: int,
        *,
        first_only: bool = False,
        consumer: object = None,
        on_the_way: object = None,
    ) -> tuple[set[int], int]:
        """The records in [start, stop) and how far the look went: from the log's start
        at the earliest, at most the probe's window, never past the end."""
        self.asked += 1
        if self.timeouts:
            self.timeouts -= 1
            return set(), start
        start = max(start, self.log_start)
        covered = min(stop, start + PROBE_MAX_RECORDS, self.end)
        return {o for o in self.records if start <= o < covered}, covered


def _watchdog(broker: Broker) -> tuple[OffsetWatchdog, list[float]]:
    now = [0.0]
    watchdog = OffsetWatchdog(lambda: None, "unused:9092", {PARTITION.topic}, 4.0, lambda: now[0])
    watchdog._present = broker.present  # type: ignore[method-assign]

    async def end_offset(tp: TP) -> int:
        return broker.end

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
    assert broker.asked == 1  # once, after a stall time: a record waits there, not a marker


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
    watchdog, now = _watchdog(Broker(records, log_start=5000))
    await _ticks(watchdog, consumer, now)
    assert consumer.sought == []
    assert consumer.first_unsettled(PARTITION) == 5010


async def test_a_transaction_marker_at_the_end_of_a_partition_is_stepped_over_not_read_again() -> (
    None
):
    """A transactional producer's last transaction leaves its marker last: no record is
    ever fetched past the head, yet the log ends after it. Read again every minute for
    ever, the partition's commit stayed one short and its deadlines never fired (found by
    review in stop 31); the marker holds nothing and is stepped over within seconds."""
    consumer = FakeConsumer(committed=8, handled={8, 9, 10}, fetched=10)
    watchdog, now = _watchdog(Broker(set(range(11)), end=12))  # 11: the commit marker
    for _ in range(4):  # 8 s
        await watchdog._look_at(consumer, PARTITION, now[0], consumer.on_the_way)  # type: ignore[arg-type]
        now[0] += 2.0
    assert consumer.first_unsettled(PARTITION) == 12
    assert consumer.sought == []
    assert watchdog.read_again == 0


async def test_an_aborted_transaction_longer_than_a_look_is_stepped_over_look_by_look() -> None:
    """After a seek, a committed read returns the first record past an aborted
    transaction of any length; each look reads at most ``PROBE_MAX_RECORDS`` offsets, and
    found none there: the partition stayed at its head for good (found by review in stop
    31). What a look went through without a record holds none."""
    aborted = range(100, 100 + 3 * PROBE_MAX_RECORDS)
    first_after = aborted.stop
    consumer = FakeConsumer(committed=100, handled={first_after}, fetched=first_after)
    watchdog, now = _watchdog(Broker(set(range(100)) | {first_after}))
    for _ in range(16):
        await watchdog._look_at(consumer, PARTITION, now[0], consumer.on_the_way)  # type: ignore[arg-type]
        now[0] += 2.0
    assert consumer.first_unsettled(PARTITION) == first_after + 1
    assert consumer.sought == []


async def test_a_look_that_timed_out_is_made_again_not_taken_for_a_waiting_record() -> None:
    consumer = FakeConsumer(committed=8, handled={8, 9, 10}, fetched=10)
    broker = Broker(set(range(11)), end=12)  # 11: the commit marker
    broker.timeouts = 1
    watchdog, now = _watchdog(broker)
    for _ in range(6):  # 12 s: well within the patience before reading again
        await watchdog._look_at(consumer, PARTITION, now[0], consumer.on_the_way)  # type: ignore[arg-type]
        now[0] += 2.0
    assert consumer.first_unsettled(PARTITION) == 12
    assert consumer.sought == []
