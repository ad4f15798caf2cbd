"""The hub commits an offset only past records it handled (gun_hub/runtime/offsets.py).

faust's own rule (faust-streaming #606) steps over a single record missing at the head:
a record a rebalance made its stream skip is committed without being handled, and lost
for good at the next restart.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from gun_hub.runtime.offsets import EmptyOffsets, FetchGaps, first_unsettled
from gun_hub.runtime.strict_consumer import PassedOver, StrictOffsetsConsumer

TOPIC_PARTITION = TP("gun.declarations", 1)


def _faust_state(consumer: Any, committed: int, acked: list[int]) -> Any:
    consumer._acked = defaultdict(list, {TOPIC_PARTITION: list(acked)})
    consumer._acked_index = defaultdict(set, {TOPIC_PARTITION: set(acked)})
    consumer._gap = defaultdict(lambda: None)
    consumer._committed_offset = defaultdict(lambda: None, {TOPIC_PARTITION: committed})
    return consumer


class _Stub:
    pass


class _Conductor:
    def __init__(self) -> None:
        self._topic_name_index: dict[str, set[Any]] = {}


class _AppWithoutQueues:
    def __init__(self) -> None:
        self.topics = _Conductor()


def test_plain_faust_commits_over_a_single_record_missing_at_the_head() -> None:
    """Why the hub does not use faust's rule; if this fails, faust fixed #606."""
    stub = _faust_state(_Stub(), committed=2585, acked=[2586, 2587, 2588, 2589])
    stub._gap = defaultdict(lambda: _EmptyTree())
    assert FaustConsumer._new_offset(stub, TOPIC_PARTITION) == 2590  # 2585 never handled


class _EmptyTree:
    def __bool__(self) -> bool:
        return False


def _strict(committed: int, handled: list[int], acked: list[int] | None = None) -> Any:
    consumer = object.__new__(StrictOffsetsConsumer)  # its state only, no broker
    _faust_state(consumer, committed, acked if acked is not None else handled)
    consumer._handled = defaultdict(set, {TOPIC_PARTITION: set(handled)})
    consumer._empty = defaultdict(EmptyOffsets)
    consumer._resume_at, consumer._unthrottling, consumer._rebalances = {}, set(), 0
    consumer._start = {}
    consumer._committing = {}
    consumer._confirmed = {}
    consumer._committed_when_assigned = {}
    consumer._held = set()
    return consumer


def test_a_record_missing_at_the_head_holds_the_commit() -> None:
    consumer = _strict(committed=2585, handled=[2586, 2587, 2588, 2589])
    assert consumer._new_offset(TOPIC_PARTITION) is None
    assert consumer.first_unsettled(TOPIC_PARTITION) == 2585


def test_handled_records_from_the_commit_on_are_committed() -> None:
    consumer = _strict(committed=10, handled=[10, 11, 12, 14])
    assert consumer._new_offset(TOPIC_PARTITION) == 13
    assert consumer._handled[TOPIC_PARTITION] == {14}
    assert consumer._acked[TOPIC_PARTITION] == [14]


def test_records_settled_are_not_unsettled_again_while_their_commit_is_on_its_way() -> None:
    """faust records the offset committed only once the broker answered, seconds later
    under load (commits of 5 to 8 s in a two-worker saturation run). The handled records
    it covers are forgotten as soon as the point is handed to faust: meanwhile the first
    unsettled offset fell back to the last offset committed, a record long handled, and
    the watchdog read it again with everything after it (up to 34 times per `./tasks
    bench` configuration, in waves across every partition at each slow commit)."""
    consumer = _strict(committed=10, handled=[10, 11, 12, 13, 15])
    assert consumer._new_offset(TOPIC_PARTITION) == 14  # handed to faust to commit
    assert consumer.first_unsettled(TOPIC_PARTITION) == 14  # not 10, still committed
    consumer._committed_offset[TOPIC_PARTITION] = 14  # the broker answered
    assert consumer.first_unsettled(TOPIC_PARTITION) == 14
    assert consumer._new_offset(TOPIC_PARTITION) is None  # nothing more to commit


def test_a_partition_lost_and_assigned_again_starts_from_its_committed_offset() -> None:
    """A commit that did not reach the broker before the partition was revoked: what
    it covered is read again from the offset the broker has."""
    consumer = _strict(committed=10, handled=[10, 11])
    consumer._fetched, consumer._sought, consumer._reseeking = {}, {}, set()
    consumer.throttled = set()
    assert consumer._new_offset(TOPIC_PARTITION) == 12
    consumer._forget_partitions({TOPIC_PARTITION})
    consumer._committed_offset[TOPIC_PARTITION] = 10  # what the broker kept
    assert consumer.first_unsettled(TOPIC_PARTITION) == 10


def test_a_record_faust_acknowledged_without_it_being_handled_does_not_count() -> None:
    """A stream acknowledges the records it skips during a rebalance."""
    consumer = _strict(committed=10, handled=[10, 12], acked=[10, 11, 12])
    assert consumer._new_offset(TOPIC_PARTITION) == 11


def test_offsets_the_broker_holds_no_record_at_are_stepped_over() -> None:
    consumer = _strict(committed=10, handled=[10, 13])
    consumer.mark_empty(TOPIC_PARTITION, 11, 13)  # a transaction's commit markers
    assert consumer._new_offset(TOPIC_PARTITION) == 14


def test_a_partition_never_committed_starts_where_the_log_begins() -> None:
    consumer = _strict(committed=None, handled=[5, 6])  # type: ignore[arg-type]
    assert consumer._new_offset(TOPIC_PARTITION) is None  # start unknown: nothing yet
    consumer._start[TOPIC_PARTITION] = 4
    assert consumer._new_offset(TOPIC_PARTITION) is None  # 4 not handled
    consumer._start[TOPIC_PARTITION] = 5
    assert consumer._new_offset(TOPIC_PARTITION) == 7


def test_first_unsettled_walks_handled_and_empty_offsets() -> None:
    empty = EmptyOffsets()
    empty.add(3, 5)
    empty.add(5, 6)
    empty.add(9, 9)  # nothing
    assert first_unsettled(0, [0, 1, 2, 6, 8], empty) == 7
    assert first_unsettled(7, [8], empty) == 7
    empty.forget_below(6)
    assert empty.end_of_span_at(4) is None


def test_a_record_faust_is_handing_to_the_agents_is_not_suspect() -> None:
    """faust's fetch loop can wait long with one record in hand (the producer's buffer
    full): the watchdog must not read it again meanwhile (chaos run: 85 needless repairs)."""
    consumer = _strict(committed=10, handled=[])
    consumer._unacked_messages = set()
    consumer._delivering = (TOPIC_PARTITION, 10)
    consumer.app = _AppWithoutQueues()
    assert (TOPIC_PARTITION, 10) in consumer.on_the_way()


def test_a_held_record_let_go_is_no_longer_on_its_way_nor_handled() -> None:
    """A delivery that failed for good: the watchdog may read the record again."""
    consumer = _strict(committed=10, handled=[])
    consumer._unacked_messages = set()
    consumer._delivering = None
    consumer.app = _AppWithoutQueues()
    consumer.hold(TOPIC_PARTITION, 10)
    consumer.release(TOPIC_PARTITION, 10)
    assert (TOPIC_PARTITION, 10) not in consumer.on_the_way()
    assert consumer.first_unsettled(TOPIC_PARTITION) == 10


class _Message:
    def __init__(self, offset: int) -> None:
        self.tp, self.offset = TOPIC_PARTITION, offset


def test_a_repair_says_where_its_record_stood() -> None:
    """What the watchdog logs when it reads a record again: enough to tell a record faust
    skipped from one the hub lost track of."""
    consumer = _strict(committed=10, handled=[12, 13])
    consumer._unacked_messages = {_Message(14), _Message(15)}
    consumer._read_offset = {TOPIC_PARTITION: 15}
    consumer._fetched = {TOPIC_PARTITION: 20}
    consumer._paused_partitions = set()
    consumer._buffered_partitions = {TOPIC_PARTITION}
    consumer._reseeking = set()
    consumer._passed_over = defaultdict(PassedOver)
    consumer._passed_over[TOPIC_PARTITION].below_read_offset(9, 15)
    consumer.hold(TOPIC_PARTITION, 11)
    consumer._handed = {}
    assert consumer.describe(TOPIC_PARTITION, 10) == (
        "no longer referenced; faust's read offset 15, fetched up to 20, its queue full; "
        "2 handled after it; unacknowledged by faust 2 (14-15), held 1 (11-11); "
        "so far 0 skipped while sought, 0 left for the fetch after a throttle, "
        "1 below faust's read offset, the last 9 (read offset 15), 0 in hand at a flow "
        "suspension, 0 handed to no agent"
    )


def test_a_held_record_is_on_its_way_until_settled_then_committed_over() -> None:
    """A declaration waiting for its claim's verdict (pipeline/admission.py) is held by
    the intake: the watchdog must not read it again, the commit must not pass it."""
    consumer = _strict(committed=10, handled=[11])
    consumer._unacked_messages = set()
    consumer._delivering = None
    consumer.app = _AppWithoutQueues()
    consumer.hold(TOPIC_PARTITION, 10)
    assert (TOPIC_PARTITION, 10) in consumer.on_the_way()
    assert consumer._new_offset(TOPIC_PARTITION) is None
    consumer.mark_handled_at(TOPIC_PARTITION, 10)
    assert (TOPIC_PARTITION, 10) not in consumer.on_the_way()
    assert consumer._new_offset(TOPIC_PARTITION) == 12


class _Record:
    def __init__(self, offset: int) -> None:
        self.tp = TOPIC_PARTITION
        self.offset = offset
        self.refcount, self.tracked, self.acked = 1, False, False  # in an agent's queue
        self.timestamp, self.timestamp_type = None, None  # no broker time (clock_check.py)


class _Fetches:
    """faust's fetch as the strict consumer sees it: each ``getmany`` first fetches
    (``_getmany``, here the next batch of ``batches``, ``during`` run meanwhile), then
    hands the records over one by one. Seeks change nothing but the consumer's state."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, consumer: Any) -> None:
        self.batches: list[list[int]] = []
        self.during: Any = None
        self.while_seeking: Any = None  # run inside the next seek, before it returns
        self.sought: list[tuple[TP, int]] = []
        fetches = self

        async def fetch(self: Any, active: Any, timeout: float) -> Any:  # noqa: ASYNC109
            if fetches.during is not None:
                await fetches.during()
                fetches.during = None
            return {TOPIC_PARTITION: [_Record(o) for o in fetches.batches.pop(0)]}

        async def fetched(self: Any, timeout: float) -> Any:  # noqa: ASYNC109 - faust's
            records = await self._getmany(None, timeout)
            for tp, batch in records.items():
                for record in batch:
                    yield tp, record

        async def sought(self: Any, partition: TP, offset: int) -> None:
            fetches.sought.append((partition, offset))
            if fetches.while_seeking is not None:
                during, fetches.while_seeking = fetches.while_seeking, None
                await during()

        monkeypatch.setattr(faust_aiokafka.Consumer, "_getmany", fetch)
        monkeypatch.setattr(faust_aiokafka.Consumer, "getmany", fetched)
        monkeypatch.setattr(faust_aiokafka.Consumer, "seek", sought)
        consumer._fetched, consumer._reseeking, consumer._delivering = {}, set(), None
        consumer._sought, consumer._gaps, consumer._positions_moved = {}, FetchGaps(), 0
        consumer._read_offset, consumer.suspend_flow = {}, asyncio.Event()
        consumer._passed_over, consumer._handed = defaultdict(PassedOver), {}
        consumer.throttled, consumer.app = set(), _AppWithoutQueues()

    async def handed_over(self, consumer: Any, seek_at: int | None = None) -> list[int]:
        handed: list[int] = []
        async for _tp, record in consumer.getmany(1.0):
            handed.append(record.offset)
            if record.offset == seek_at:
                await consumer.seek(TOPIC_PARTITION, 5)  # the watchdog reads 5 again
        return handed


async def test_the_rest_of_a_batch_fetched_before_a_seek_back_is_not_handed_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Handing it over would move faust's read position past the record sought again,
    and faust would drop that record a second time (the full chaos run: repairs repeated
    during the catch-up after a restart)."""
    consumer = _strict(committed=5, handled=[])
    fetches = _Fetches(monkeypatch, consumer)
    fetches.batches = [list(range(10, 15)), [5, 6, 7]]  # then from the new position
    assert await fetches.handed_over(consumer, seek_at=11) == [10, 11]
    assert await fetches.handed_over(consumer) == [5, 6, 7]
    assert consumer.fetched_up_to(TOPIC_PARTITION) == 7


async def test_what_a_fetch_brought_while_its_partition_was_sought_is_sought_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiokafka refetches from the offset sought within the fetch under way, so its
    records may be from before the seek or after it. Handed over, a record from before
    would move faust's read offset past the seek; skipped, a record from after would be
    lost until the watchdog (seen: a worker's partition sought to its committed offset
    by a rebalance, nothing handled after it). They are sought again instead."""
    consumer = _strict(committed=5, handled=[])
    fetches = _Fetches(monkeypatch, consumer)

    async def seek_meanwhile() -> None:
        consumer._positions_move()  # what the seek does on the consumer's thread
        await consumer.seek(TOPIC_PARTITION, 5)

    fetches.during = seek_meanwhile
    fetches.batches = [[5, 6, 7], [5, 6, 7]]
    assert await fetches.handed_over(consumer) == []
    assert fetches.sought == [(TOPIC_PARTITION, 5), (TOPIC_PARTITION, 5)]  # and again
    assert await fetches.handed_over(consumer) == [5, 6, 7]


async def test_a_throttled_partition_is_read_on_from_the_record_after_the_last_handed_over() -> (
    None
):
    """faust skips the rest of a batch fetched before the pause (it filters by the live
    set of active partitions): resuming alone would leave those records unread."""
    consumer = _strict(committed=10, handled=[])
    consumer._fetched = {TOPIC_PARTITION: 14}
    consumer.throttled = {TOPIC_PARTITION}
    resumed: list[Any] = []
    sought: list[tuple[Any, int]] = []

    async def seek(tp: Any, offset: int) -> None:
        sought.append((tp, offset))

    consumer.assignment = lambda: {TOPIC_PARTITION}
    consumer.resume_partitions = resumed.extend
    consumer.seek = seek
    await consumer.unthrottle()
    assert resumed == [TOPIC_PARTITION]
    assert sought == [(TOPIC_PARTITION, 15)]
    assert consumer.throttled == set()


class _AppTakingUpTo(_AppWithoutQueues):
    """An app whose agents may take records up to ``last`` (the admission limit's
    question, runtime/admission_limit.py ``AdmissionLimit.may_take``)."""

    def __init__(self, last: int) -> None:
        super().__init__()
        self.last = last
        self.asked: list[int] = []

    def may_hand_over(self, tp: TP) -> bool:
        self.asked.append(len(self.asked))
        return len(self.asked) <= self.last


async def test_a_record_its_agent_may_not_take_is_left_with_those_after_it_and_read_on_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Handed to the agent's queue, it would be taken however much the agent holds: a
    200-declaration backlog already fetched was held whole with an admission limit of 5
    (stop 49). Left instead, its partition paused, and fetched again from it."""
    consumer = _strict(committed=10, handled=[])
    fetches = _Fetches(monkeypatch, consumer)
    consumer.app = _AppTakingUpTo(last=2)
    paused: list[Any] = []
    consumer.pause_partitions = paused.extend
    fetches.batches = [list(range(10, 15))]
    assert await fetches.handed_over(consumer) == [10, 11]
    assert consumer.throttled == {TOPIC_PARTITION}
    assert set(paused) == {TOPIC_PARTITION}
    assert isinstance(paused[0], TP)  # faust asserts it
    assert len(consumer.app.asked) == 3, "not asked again once its partition is left"

    resumed: list[Any] = []
    consumer.assignment = lambda: {TOPIC_PARTITION}
    consumer.resume_partitions = resumed.extend
    await consumer.unthrottle()
    assert fetches.sought == [(TOPIC_PARTITION, 12)], "from the first record left"
    consumer.app.last = 10
    fetches.batches = [list(range(12, 15))]
    assert await fetches.handed_over(consumer) == [12, 13, 14]


def _unthrottled_by_hand(consumer: Any) -> list[Any]:
    """What ``unthrottle`` resumes, recorded; every partition assigned."""
    resumed: list[Any] = []
    consumer.assignment = lambda: {TOPIC_PARTITION}
    consumer.resume_partitions = resumed.extend
    consumer.pause_partitions = lambda tps: None
    return resumed


async def _ten_and_eleven_handed_twelve_left(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Any, _Fetches, list[Any]]:
    """A partition committed at 10 whose agent may take two records: 10 and 11 handed
    over, 12 left (what ``unthrottle`` resumes recorded in the list returned)."""
    consumer = _strict(committed=10, handled=[])
    fetches = _Fetches(monkeypatch, consumer)
    consumer.app = _AppTakingUpTo(last=2)
    resumed = _unthrottled_by_hand(consumer)
    fetches.batches = [list(range(10, 15))]
    assert await fetches.handed_over(consumer) == [10, 11]
    return consumer, fetches, resumed


async def test_a_partition_left_again_at_once_reads_on_from_the_same_record_not_its_first_unsettled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A seek forgets how far its partition was fetched: when the first record fetched
    after an unthrottle's seek was left at once, the next unthrottle sought the first
    record not yet handled (10, held by the intake), and 10 and 11 were handed over a
    second time (review of stop 49's change, seen on the real broker)."""
    consumer = _strict(committed=10, handled=[])
    fetches = _Fetches(monkeypatch, consumer)
    consumer.app = _AppTakingUpTo(last=2)
    _unthrottled_by_hand(consumer)
    fetches.batches = [list(range(10, 15)), list(range(12, 15)), list(range(12, 15))]
    assert await fetches.handed_over(consumer) == [10, 11]
    await consumer.unthrottle()
    assert await fetches.handed_over(consumer) == [], "left again at once"
    await consumer.unthrottle()
    assert fetches.sought == [(TOPIC_PARTITION, 12), (TOPIC_PARTITION, 12)]
    consumer.app.last = 10
    assert await fetches.handed_over(consumer) == [12, 13, 14]


async def test_nothing_of_a_partition_is_handed_over_while_its_unthrottle_seeks_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resumed before its seek was done, the rest of the batch under way was handed over
    (13, 14), then what the seek fetched again (12, 13, 14): out of order and twice, and
    with several partitions some never (review of stop 49's change, in a simulation over
    faust's own fetch loop). It is sought while still paused, then resumed."""
    consumer = _strict(committed=10, handled=[])
    fetches = _Fetches(monkeypatch, consumer)
    consumer.app = _AppTakingUpTo(last=2)
    resumed = _unthrottled_by_hand(consumer)
    fetches.batches = [list(range(10, 15)), [13, 14], list(range(12, 15))]
    assert await fetches.handed_over(consumer) == [10, 11]
    consumer.app.last = 10
    during_the_seek: list[int] = []

    async def the_batch_under_way() -> None:
        assert resumed == [], "resumed only once sought"
        during_the_seek.extend(await fetches.handed_over(consumer))

    fetches.while_seeking = the_batch_under_way
    await consumer.unthrottle()
    assert during_the_seek == []
    assert resumed == [TOPIC_PARTITION]
    assert await fetches.handed_over(consumer) == [12, 13, 14]


async def test_an_unthrottle_while_another_seeks_the_partition_leaves_it_to_that_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The intake and the claims agent both unthrottle: the second, arriving while the
    first's seek was under way, would seek the partition again from its first unsettled
    record (its fetched position forgotten by the seek)."""
    consumer, fetches, resumed = await _ten_and_eleven_handed_twelve_left(monkeypatch)

    async def the_other_agents_unthrottle() -> None:
        await consumer.unthrottle()

    fetches.while_seeking = the_other_agents_unthrottle
    await consumer.unthrottle()
    assert fetches.sought == [(TOPIC_PARTITION, 12)]
    assert resumed == [TOPIC_PARTITION]
    assert consumer.throttled == set()


async def test_a_throttled_partition_the_watchdog_sought_back_is_read_on_from_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The watchdog reads a record again whatever the partition's throttle: the first
    record left (12) is no longer where the partition goes on from, 11 is (review of
    stop 49's commits: unthrottle sought 12, and 11 waited for the watchdog's next look)."""
    consumer, fetches, _ = await _ten_and_eleven_handed_twelve_left(monkeypatch)
    consumer.mark_handled_at(TOPIC_PARTITION, 10)
    await consumer.seek(TOPIC_PARTITION, 11)  # the watchdog's
    await consumer.unthrottle()
    assert fetches.sought == [(TOPIC_PARTITION, 11), (TOPIC_PARTITION, 11)]


async def test_an_unthrottle_that_fails_keeps_where_each_partition_goes_on_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A seek that raises (the consumer's thread gone) after another partition's was done
    left that one throttled with neither its first record left nor its fetched position
    (the seek forgets it): the next unthrottle sought its first unsettled record (10,
    held), and held declarations were handed over again (review of stop 49's commits)."""
    other = TP(TOPIC_PARTITION.topic, TOPIC_PARTITION.partition + 1)
    consumer = _strict(committed=10, handled=[])
    _Fetches(monkeypatch, consumer)  # the consumer state a fetch needs
    resumed = _unthrottled_by_hand(consumer)
    consumer.assignment = lambda: {TOPIC_PARTITION, other}
    consumer.throttled = {TOPIC_PARTITION, other}
    consumer._resume_at = {TOPIC_PARTITION: 12, other: 7}
    consumer._fetched = {TOPIC_PARTITION: 11, other: 6}
    sought: list[tuple[TP, int]] = []
    failing = {TOPIC_PARTITION, other}

    async def seek(self: Any, partition: TP, offset: int) -> None:
        if partition in failing and len(sought) == 1:
            failing.clear()
            raise RuntimeError("the consumer's thread is gone")
        sought.append((partition, offset))

    monkeypatch.setattr(faust_aiokafka.Consumer, "seek", seek)
    with pytest.raises(RuntimeError):
        await consumer.unthrottle()
    assert consumer.throttled == {TOPIC_PARTITION, other}
    assert resumed == []
    await consumer.unthrottle()
    assert sorted(sought[1:]) == sorted([(TOPIC_PARTITION, 12), (other, 7)])
    assert set(resumed) == {TOPIC_PARTITION, other}


async def test_a_rebalance_during_an_unthrottle_leaves_the_new_assignment_to_faust(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resumed after a rebalance, a partition faust had paused for its tables' recovery
    would flow before they are recovered, and a throttle the new assignment made would be
    undone (review of stop 49's commits)."""
    consumer, fetches, resumed = await _ten_and_eleven_handed_twelve_left(monkeypatch)

    async def a_rebalance() -> None:
        await consumer.on_partitions_revoked({TOPIC_PARTITION})
        consumer.throttled.add(TOPIC_PARTITION)  # left again in the new assignment
        consumer._resume_at[TOPIC_PARTITION] = 10

    monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_revoked", _nothing)
    fetches.while_seeking = a_rebalance
    await consumer.unthrottle()
    assert resumed == []
    assert consumer.throttled == {TOPIC_PARTITION}
    assert consumer._resume_at == {TOPIC_PARTITION: 10}


async def _nothing(*_: Any) -> None:
    """faust's part of a revocation, not run here."""


def test_offsets_the_broker_stepped_over_between_returned_records_hold_nothing() -> None:
    """A transactional producer's markers: the broker returns 10, 11, 13 then 16."""
    gaps = FetchGaps()
    assert gaps.returned(TOPIC_PARTITION, [10, 11, 13]) == [(12, 13)]
    assert gaps.returned(TOPIC_PARTITION, [16]) == [(14, 16)]  # across fetches too


def test_after_a_seek_the_first_records_returned_mark_no_gap() -> None:
    """A seek forward (or back) is not the broker stepping over anything."""
    gaps = FetchGaps()
    gaps.returned(TOPIC_PARTITION, [10, 11])
    gaps.forget()
    assert gaps.returned(TOPIC_PARTITION, [40, 41]) == []
    assert gaps.returned(TOPIC_PARTITION, [5]) == []  # never a gap backwards


def test_a_gap_marked_empty_lets_the_commit_point_pass_it() -> None:
    empty = EmptyOffsets()
    gaps = FetchGaps()
    for start, stop in gaps.returned(TOPIC_PARTITION, [3, 4, 6]):
        empty.add(start, stop)
    assert first_unsettled(3, [3, 4, 6], empty) == 7


class _Thread:
    """The consumer thread's side of a commit: the broker's answer."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer

    async def commit(self, offsets: Any) -> bool:
        return self.answer

    def assignment(self) -> set[TP]:
        return {TOPIC_PARTITION}


def test_the_commit_confirmed_is_the_one_the_broker_answered() -> None:
    """Found by review, stop 36 (A): the claims memory learns from each claim how far its
    declarations partition can no longer be read again, which is from the offset the
    broker confirmed committed: neither the one being committed (a crash before the
    broker answers reads again from the older one) nor one faust records although the
    broker refused it (faust sets its committed offset whatever the answer)."""
    consumer = _strict(committed=10, handled=[10, 11, 12])
    consumer._confirmed[TOPIC_PARTITION] = 10  # as sought at the assignment
    assert consumer._new_offset(TOPIC_PARTITION) == 13  # handed to faust to commit
    assert consumer.confirmed_commit(TOPIC_PARTITION) == 10
    consumer._thread = _Thread(answer=False)  # "already rebalanced"
    assert not asyncio.run(consumer._commit({TOPIC_PARTITION: 13}))
    assert consumer.confirmed_commit(TOPIC_PARTITION) == 10
    consumer._thread = _Thread(answer=True)
    assert asyncio.run(consumer._commit({TOPIC_PARTITION: 13}))
    assert consumer.confirmed_commit(TOPIC_PARTITION) == 13
    consumer._fetched, consumer._sought, consumer._reseeking = {}, {}, set()
    consumer.throttled = set()
    consumer._forget_partitions({TOPIC_PARTITION})
    assert consumer.confirmed_commit(TOPIC_PARTITION) is None  # learnt again when assigned
