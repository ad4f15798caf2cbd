"""What retention deleted from the hub's inputs before any worker read it is named once:
one dead letter per run of offsets lost (INPUT_AGED_OUT_OF_THE_LOG), an error line and a
counter by topic; internal topics are not named (review stop 38, L1)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import pytest
from aiokafka import TopicPartition
from faust.types import TP
from prometheus_client import REGISTRY

from gun_contract.dead_letter import (
    HEADER_COMPONENT,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_TOPIC,
    header_value,
)
from gun_contract.effects import OutgoingRecord
from gun_hub.runtime.aged_out import INPUT_AGED_OUT, InputsAgedOut
from gun_hub.runtime.offsets import EmptyOffsets, FetchGaps, unsettled_spans
from gun_hub.runtime.strict_consumer import StrictOffsetsConsumer
from gun_hub.runtime.watchdog import OffsetWatchdog

DECLARATIONS = "gun.declarations"


def test_the_runs_lost_leave_out_what_was_handled_or_known_empty() -> None:
    empty = EmptyOffsets()
    empty.add(5, 8)
    assert unsettled_spans(0, 20, {2, 3, 9, 25}, empty) == [
        range(0, 2),
        range(4, 5),
        range(8, 9),
        range(10, 20),
    ]
    assert unsettled_spans(6, 7, (), empty) == []
    # a gap of millions of offsets is one span, found at once
    assert unsettled_spans(10, 10_000_000, (), EmptyOffsets()) == [range(10, 10_000_000)]


def aged_out_count(topic: str) -> float:
    return REGISTRY.get_sample_value("gun_hub_inputs_aged_out_total", {"topic": topic}) or 0.0


@pytest.mark.asyncio
async def test_each_gap_is_one_dead_letter_an_error_and_a_count_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[OutgoingRecord] = []

    async def send(record: OutgoingRecord) -> None:
        sent.append(record)

    named = InputsAgedOut({DECLARATIONS: "declarations never decided"}, "gun.dlq", send)
    tp = TP(DECLARATIONS, 2)
    before = aged_out_count(DECLARATIONS)
    with caplog.at_level(logging.ERROR):
        await named.deleted_unread(tp, [range(3, 10), range(12, 15)])
        # found again (the assignment's check, then the watchdog's look): not named twice
        await named.deleted_unread(tp, [range(3, 15)])
        await named.deleted_unread(TP("gun.claims", 2), [range(0, 100)])

    assert [header_value(r.headers, HEADER_SOURCE_OFFSET) for r in sent] == ["3", "12"]
    for record in sent:
        assert record.topic == "gun.dlq"
        assert record.value == b""
        assert header_value(record.headers, HEADER_ERROR_KIND) == INPUT_AGED_OUT
        assert header_value(record.headers, HEADER_SOURCE_TOPIC) == DECLARATIONS
        assert header_value(record.headers, HEADER_COMPONENT) == "hub.inputs"
    reason = header_value(sent[0].headers, HEADER_ERROR_REASON) or ""
    assert f"records 3 to 9 of {DECLARATIONS}/2" in reason
    assert aged_out_count(DECLARATIONS) - before == 10
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "declarations never decided" in errors[0]


@pytest.mark.asyncio
async def test_a_dead_letter_the_broker_did_not_take_is_named_again() -> None:
    attempts: list[OutgoingRecord] = []

    async def refuse_once(record: OutgoingRecord) -> None:
        attempts.append(record)
        if len(attempts) == 1:
            raise TimeoutError("no acknowledgement")

    named = InputsAgedOut({DECLARATIONS: "declarations never decided"}, "gun.dlq", refuse_once)
    with pytest.raises(TimeoutError):
        await named.deleted_unread(TP(DECLARATIONS, 0), [range(0, 4)])
    await named.deleted_unread(TP(DECLARATIONS, 0), [range(0, 4)])
    assert len(attempts) == 2


# -- the offset watchdog names only what no worker read (review stop 38-g, G2) ----------

INPUT = TP(DECLARATIONS, 0)


class _Conductor:
    def __init__(self) -> None:
        self._topic_name_index: dict[str, set[Any]] = {}  # no agent queue here


class _NoQueues:
    def __init__(self) -> None:
        self.topics = _Conductor()


class _KeptCommits(StrictOffsetsConsumer):
    """Keeps the commits it is asked for in ``commits`` instead of sending them."""

    commits: list[dict[TP, int]]

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        self.commits.append(dict(offsets))
        return True


def _consumer(committed_when_assigned: int) -> Any:
    """A ``StrictOffsetsConsumer``'s state, no broker: the broker had committed
    ``committed_when_assigned`` when the partition was assigned; the commits it is asked
    for are kept in ``commits``."""
    consumer = object.__new__(_KeptCommits)
    consumer._acked = defaultdict(list)
    consumer._acked_index = defaultdict(set)
    consumer._gap = defaultdict(lambda: None)
    consumer._committed_offset = defaultdict(lambda: None, {INPUT: committed_when_assigned})
    consumer._handled = defaultdict(set)
    consumer._empty = defaultdict(EmptyOffsets)
    consumer._start = {}
    consumer._committing = {}
    consumer._confirmed = {}
    consumer._held = set()
    consumer._unacked_messages = set()
    consumer._delivering = None
    consumer._fetched = {}
    consumer.app = _NoQueues()
    consumer._committed_when_assigned = {INPUT: committed_when_assigned}
    consumer.assignment = lambda: {INPUT}
    consumer.commits = []
    return consumer


def _watchdog(consumer: Any, log_start: int) -> tuple[OffsetWatchdog, list[str]]:
    """The watchdog over ``consumer``, the input's log starting at ``log_start``, and
    the reasons of the dead letters it sends."""
    reasons: list[str] = []

    async def send(record: OutgoingRecord) -> None:
        reasons.append(header_value(record.headers, HEADER_ERROR_REASON) or "")

    aged = InputsAgedOut({DECLARATIONS: "declarations never decided"}, "gun.dlq", send)
    watchdog = OffsetWatchdog(lambda: consumer, None, {DECLARATIONS}, 10.0, aged_out=aged)  # type: ignore[arg-type]

    async def log_starts(tps: list[TP]) -> dict[TP, int]:
        return dict.fromkeys(tps, log_start)

    watchdog._log_starts = log_starts  # type: ignore[method-assign]
    return watchdog, reasons


@pytest.mark.asyncio
async def test_records_read_or_on_their_way_since_the_assignment_are_not_named_deleted() -> None:
    """Committed at 100 when assigned; before the watchdog's first tick 100-199 were
    handled and committed past, 200-249 are on their way (held until their cases are on
    the broker), and retention moved the log start to 250. Each was read: nothing is
    'deleted before the hub read it', and nothing is committed past a record on its way
    (ADR 0009)."""
    consumer = _consumer(committed_when_assigned=100)
    consumer._handled[INPUT].update(range(100, 200))
    assert consumer._new_offset(INPUT) == 200
    consumer._committed_offset[INPUT] = 200  # the broker answered
    consumer._held = {(INPUT, offset) for offset in range(200, 250)}
    watchdog, reasons = _watchdog(consumer, log_start=250)

    await watchdog._check_new_assignments(consumer, [INPUT])

    assert reasons == []
    assert all(offsets[INPUT] <= 200 for offsets in consumer.commits)
    assert consumer.first_unsettled(INPUT) == 200


@pytest.mark.asyncio
async def test_what_was_deleted_past_the_records_on_their_way_is_named_then_committed() -> None:
    """Committed at 100 when assigned; 100-119 fetched and on their way, and the log now
    starts at 250: 120-249 were deleted unread (one dead letter), and the partition is
    committed past them once the records on their way are handled, not before."""
    consumer = _consumer(committed_when_assigned=100)
    consumer._held = {(INPUT, offset) for offset in range(100, 120)}
    watchdog, reasons = _watchdog(consumer, log_start=250)

    await watchdog._check_new_assignments(consumer, [INPUT])

    assert len(reasons) == 1
    assert f"records 120 to 249 of {DECLARATIONS}/0 (130 offsets)" in reasons[0]
    assert consumer.commits == []
    for offset in range(100, 120):
        consumer.mark_handled_at(INPUT, offset)
    assert consumer._new_offset(INPUT) == 250


@pytest.mark.asyncio
async def test_a_partition_whose_offsets_were_all_deleted_unread_is_committed_past_them() -> None:
    consumer = _consumer(committed_when_assigned=100)
    watchdog, reasons = _watchdog(consumer, log_start=250)

    await watchdog._check_new_assignments(consumer, [INPUT])

    assert len(reasons) == 1
    assert f"records 100 to 249 of {DECLARATIONS}/0 (150 offsets)" in reasons[0]
    assert consumer.commits == [{INPUT: 250}]


class _EmptyProbe:
    """The watchdog's look at the broker: the log starts at ``start`` and holds nothing
    more (everything before it deleted)."""

    def __init__(self, start: int) -> None:
        self._start = start

    def assign(self, _: Any) -> None:
        pass

    def seek(self, *_: Any) -> None:
        pass

    async def beginning_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return dict.fromkeys(tps, self._start)

    end_offsets = beginning_offsets

    async def position(self, _: Any) -> int:
        return self._start


@pytest.mark.asyncio
async def test_a_look_at_a_dropped_head_below_the_log_start_names_it_not_the_records_held() -> None:
    """The head (100) was fetched and dropped by faust; 101-149 are on their way; the log
    now starts at 150. Only 100 was never dealt with: named, and the records on their way
    are neither named nor marked empty (the commit waits for them)."""
    consumer = _consumer(committed_when_assigned=100)
    consumer._committed_when_assigned = {}  # checked at the assignment already
    consumer._fetched = {INPUT: 149}
    consumer._held = {(INPUT, offset) for offset in range(101, 150)}
    watchdog, reasons = _watchdog(consumer, log_start=150)
    probe = _EmptyProbe(150)

    async def probe_consumer() -> Any:
        return probe

    watchdog._probe_consumer = probe_consumer  # type: ignore[method-assign]
    for now in (0.0, 100.0):  # suspect at one look, judged at the next
        await watchdog._look_at(consumer, INPUT, now, consumer.on_the_way)

    assert len(reasons) == 1
    assert f"records 100 to 100 of {DECLARATIONS}/0 (1 offsets)" in reasons[0]
    assert consumer.first_unsettled(INPUT) == 101
    assert all(offsets[INPUT] <= 101 for offsets in consumer.commits)


# -- a partition never committed is committed at its start as it is assigned -------------
# The gap a worker names is measured from a commit. A partition the group never committed
# used to get one only at the watchdog's first tick after the assignment (and no handled
# record was committed before it: the commit point's start was unknown), so a worker that
# lived less than that left it uncommitted, and what retention deleted from it before the
# next worker came went unnamed (review stop 38-L, L1's rest).


class _Thread:
    """faust's consumer thread, no broker: the broker has committed nothing on INPUT."""

    async def seek_to_committed(self) -> dict[Any, int | None]:
        return {TopicPartition(DECLARATIONS, 0): None}


def _assigned_never_committed(log_start: int, *, commit: str = "taken") -> Any:
    consumer = _consumer(committed_when_assigned=0)
    consumer._committed_when_assigned = {}
    consumer._committed_offset = defaultdict(lambda: None)
    consumer._positions_moved = 0
    consumer._gaps = FetchGaps()
    consumer._reseeking = set()
    consumer._sought = {}
    consumer._thread = _Thread()
    sought: list[tuple[TP, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        sought.append((tp, offset))

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        return dict.fromkeys(tps, log_start)

    consumer.seek = seek
    consumer.earliest_offsets = earliest_offsets
    consumer.sought = sought

    async def refuse(offsets: Mapping[TP, int]) -> bool:
        if commit == "raises":
            raise RuntimeError("rebalance in progress")
        return False  # faust's answer to a commit the broker did not take

    if commit != "taken":
        consumer._commit = refuse
    return consumer


@pytest.mark.asyncio
async def test_a_partition_never_committed_is_committed_at_its_start_as_it_is_assigned() -> None:
    consumer = _assigned_never_committed(log_start=40)

    await consumer.seek_to_committed()

    assert consumer.sought == [(INPUT, 40)]
    assert consumer.commits == [{INPUT: 40}]  # before any watchdog tick
    assert consumer.commit_start(INPUT) == 40
    # The watchdog's first tick measures from that commit: nothing committed again.
    assert consumer.take_committed_when_assigned([INPUT]) == {INPUT: 40}


@pytest.mark.asyncio
async def test_a_fresh_partition_is_committed_at_0_as_it_is_assigned() -> None:
    consumer = _assigned_never_committed(log_start=0)

    await consumer.seek_to_committed()

    assert consumer.commits == [{INPUT: 0}]
    assert consumer.commit_start(INPUT) == 0  # faust keeps None for a committed 0


@pytest.mark.asyncio
@pytest.mark.parametrize("commit", ["raises", "refused"])
async def test_a_refused_commit_at_the_assignment_leaves_it_to_the_watchdog(
    commit: str, caplog: pytest.LogCaptureFixture
) -> None:
    consumer = _assigned_never_committed(log_start=40, commit=commit)

    await consumer.seek_to_committed()  # the assignment goes on

    assert consumer.sought == [(INPUT, 40)]
    assert consumer.take_committed_when_assigned([INPUT]) == {INPUT: None}
    assert "at the watchdog's first tick" in caplog.text
