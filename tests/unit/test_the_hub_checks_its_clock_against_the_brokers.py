"""A hub worker compares its wall clock with the broker's log-append times of the records it
reads, exposes the difference (``gun_hub_clock_offset_seconds``) and says in its log when
it is off (gun_hub/runtime/clock_check.py).

Found by review, stop 36 (item 2): a case's deadline is the wall clock of the worker that
opened it plus the request deadline, compared with the wall clock of whichever worker
holds its partition at the tick. A worker minutes ahead times out the cases it takes over
early (degraded decisions while the partners answer; their answers then come late); a
worker more than the envelope skew (300 s) off has everything it seals refused (its
requests IAT_SKEW at the adapters, its decisions at the clearance reader). Nothing in
the hub checked its own clock: heartbeats check only the other parties'.

A record's log-append time is no later than its reading when the clocks agree, so the
least (read time - log-append time) over recent records found at the end of their
partition (fresh: a backlog read late says nothing of the clock) is the worker's offset
plus a fetch's delay: negative, the worker runs behind the broker; a large positive
least, ahead.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from gun_contract.dead_letter import SourcePosition
from gun_contract.envelope import LOG_APPEND_TIME
from gun_contract.model.verdicts import Verdict
from gun_hub import metrics
from gun_hub.domain.routing import RoutingTable
from gun_hub.runtime import clock_check
from gun_hub.runtime.clock_check import ENVELOPE_SKEW_S, ClockCheck, ClockOffset
from gun_hub.runtime.offsets import EmptyOffsets, FetchGaps
from gun_hub.runtime.strict_consumer import StrictOffsetsConsumer
from tests.unit.test_deadlines_and_lifecycle import REF, TWO_AUTHORITIES
from tests.unit.test_pipeline import SOURCE, Hub

BROKER_NOW = 1_780_000_000.0  # the broker's clock, seconds
DECLARATIONS = TP("gun.declarations", 0)
RESPONSES = TP("gun.responses.dgal", 0)


class Clocks:
    """This worker's wall clock (``offset_s`` from the broker's) and a monotonic one."""

    def __init__(self, offset_s: float = 0.0) -> None:
        self.broker = BROKER_NOW
        self.offset_s = offset_s
        self.ticks = 0.0

    def wall(self) -> float:
        return self.broker + self.offset_s

    def monotonic(self) -> float:
        return self.ticks

    def pass_s(self, seconds: float) -> None:
        self.broker += seconds
        self.ticks += seconds


@dataclass
class Record:
    """What aiokafka's fetch returns of a record (timestamps in milliseconds)."""

    offset: int
    timestamp: int | None
    timestamp_type: int = LOG_APPEND_TIME


def appended(offset: int, seconds_ago: float, clocks: Clocks) -> Record:
    return Record(offset, round((clocks.broker - seconds_ago) * 1000))


def check(clocks: Clocks, envelope_skew_s: float = ENVELOPE_SKEW_S) -> ClockCheck:
    return ClockCheck(wall=clocks.wall, monotonic=clocks.monotonic, envelope_skew_s=envelope_skew_s)


def fetch(check: ClockCheck, clocks: Clocks, *, delay_s: float = 0.05, behind_end: int = 0) -> None:
    """One fetch of each partition's newest record, appended ``delay_s`` ago by the
    broker's clock; ``behind_end``: that many records after it in the partition. Each
    fetch reads records appended since the last (a second later: one more per second)."""
    n = 2 * int(clocks.ticks)
    records = {
        DECLARATIONS: [appended(41 + n, delay_s + 0.2, clocks), appended(42 + n, delay_s, clocks)],
        RESPONSES: [appended(7 + n, delay_s, clocks)],
    }
    ends = {DECLARATIONS: 43 + n + behind_end, RESPONSES: 8 + n + behind_end}
    check.fetched(records, ends.get)


def test_a_worker_whose_clock_agrees_with_the_brokers_reads_an_offset_near_zero() -> None:
    clocks = Clocks()
    hub = check(clocks)
    for _ in range(10):
        fetch(hub, clocks)
        clocks.pass_s(1)
    offset = hub.report()
    assert offset is not None
    assert 0 <= offset < 0.1  # the fetch's delay, no more
    assert metrics.CLOCK_OFFSET._value.get() == offset


@pytest.mark.parametrize("offset_s", [120.0, -10.0])
def test_a_worker_ahead_of_or_behind_the_broker_reads_its_offset_and_warns(
    offset_s: float, caplog: pytest.LogCaptureFixture
) -> None:
    clocks = Clocks(offset_s)
    hub = check(clocks)
    for _ in range(10):
        fetch(hub, clocks)
        clocks.pass_s(1)
    with caplog.at_level(logging.WARNING, logger="gun_hub.runtime.clock_check"):
        offset = hub.report()
    assert offset == pytest.approx(offset_s, abs=0.1)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert ("ahead of" if offset_s > 0 else "behind") in caplog.text
    assert metrics.CLOCK_OFFSET._value.get() == pytest.approx(offset_s, abs=0.1)


def test_a_worker_off_by_more_than_the_envelope_skew_says_so_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Everything it seals is refused by the partners and the clearance reader."""
    clocks = Clocks(-400.0)
    hub = check(clocks, envelope_skew_s=300)
    for _ in range(10):
        fetch(hub, clocks)
        clocks.pass_s(1)
    with caplog.at_level(logging.WARNING, logger="gun_hub.runtime.clock_check"):
        hub.report()
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "300" in caplog.text


def test_a_backlog_read_late_does_not_read_as_a_clock_ahead(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Records read an hour after they were appended (a catch-up) are not at the end of
    their partition: they say nothing of the clock."""
    clocks = Clocks()
    hub = check(clocks)
    for _ in range(10):
        fetch(hub, clocks, delay_s=3600, behind_end=5000)
        clocks.pass_s(1)
    with caplog.at_level(logging.WARNING, logger="gun_hub.runtime.clock_check"):
        assert hub.report() is None
    assert caplog.records == []


def test_the_offset_is_the_least_seen_so_a_slow_fetch_does_not_inflate_it() -> None:
    clocks = Clocks(-2.0)
    hub = check(clocks)
    for n in range(10):
        fetch(hub, clocks, delay_s=4.0 if n % 2 else 0.01)  # half of them read 4 s late
        clocks.pass_s(1)
    assert hub.report() == pytest.approx(-2.0, abs=0.05)


def test_a_clock_put_right_is_read_right_once_its_old_readings_have_aged_out() -> None:
    clocks = Clocks(-30.0)
    hub = check(clocks)
    for _ in range(10):
        fetch(hub, clocks)
        clocks.pass_s(1)
    assert hub.report() == pytest.approx(-30.0, abs=0.1)
    clocks.offset_s = 0.0  # NTP stepped it
    for _ in range(400):
        fetch(hub, clocks)
        clocks.pass_s(1)
    assert hub.report() == pytest.approx(0.0, abs=0.1)


def test_records_without_a_log_append_time_are_not_used() -> None:
    """A producer chooses a CreateTime freely: it says nothing of the broker's clock."""
    clocks = Clocks(200.0)
    hub = check(clocks)
    for n in range(10):
        create_time = Record(42 + n, round((clocks.broker - 1000) * 1000), timestamp_type=0)
        hub.fetched({DECLARATIONS: [create_time]}, {DECLARATIONS: 43 + n}.get)
        clocks.pass_s(1)
    assert hub.report() is None


def test_a_few_readings_are_not_enough_to_judge() -> None:
    clocks = Clocks(200.0)
    hub = check(clocks)
    hub.fetched({RESPONSES: [appended(7, 0.01, clocks)]}, {RESPONSES: 8}.get)
    assert hub.report() is None


def test_the_estimate_keeps_only_the_least_reading_of_each_slice_of_time() -> None:
    """A busy worker reads thousands of records a second: the estimate's memory is one
    reading per slice of its window, not one per record."""
    clocks = Clocks()
    estimate = ClockOffset(window_s=300, slice_s=10, monotonic=clocks.monotonic)
    for n in range(10_000):
        estimate.saw(0.5 + (n % 7) / 10)
        if n % 100 == 0:
            clocks.pass_s(1)
    assert len(estimate._slices) <= 31
    assert estimate.least() == 0.5


def test_a_worker_whose_clock_is_ahead_times_out_a_case_it_took_over_early_and_says_so(
    routing_table: RoutingTable, keys_dir: object, caplog: pytest.LogCaptureFixture
) -> None:
    """Documents review stop 36's scratch test (test_f2_clock.py): deadlines stay each
    worker's wall clock (intake sets them, the ticking worker compares them), so worker
    B, two minutes ahead, decides a case worker A opened in degraded mode 5 s after its
    intake. What is new is that B's clock check names the offset that causes it."""
    a = Hub(routing_table, keys_dir)  # type: ignore[arg-type]
    sent = a.intake.handle(TWO_AUTHORITIES, SOURCE)  # A opens the case: deadline A.now + 30 s
    a.answer(sent, "dgal", Verdict.VALID)
    a.now = a.now + timedelta(seconds=5) + timedelta(minutes=2)  # B's clock, same tables
    out = a.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 0))
    assert a.decisions(out) != []  # decided in degraded mode, by B's clock
    clocks = Clocks(offset_s=120.0)  # what B reads of the broker meanwhile
    b = check(clocks)
    for _ in range(10):
        fetch(b, clocks)
        clocks.pass_s(1)
    with caplog.at_level(logging.WARNING, logger="gun_hub.runtime.clock_check"):
        assert b.report() == pytest.approx(120.0, abs=0.1)
    assert "ahead of" in caplog.text


async def test_the_workers_consumer_feeds_the_clock_check_at_each_fetch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every fetch of the worker's consumer (faust's, runtime/strict_consumer.py) is read
    with the broker's ends of its partitions; a partition whose end is unknown (revoked
    meanwhile) is skipped, never a failed fetch."""
    clocks = Clocks(offset_s=60.0)
    hub = check(clocks)
    monkeypatch.setattr(clock_check, "CLOCK", hub)
    records: dict[TP, list[Record]] = {}

    async def fetch(_self: object, _active: object, _timeout: float) -> object:
        n = int(clocks.ticks)  # one record appended since the last fetch
        records.update(
            {
                DECLARATIONS: [appended(42 + n, 0.05, clocks)],
                RESPONSES: [appended(7 + n, 0.05, clocks)],
            }
        )
        return records

    def end(_self: object, tp: TP) -> int:
        if tp == RESPONSES:
            raise AssertionError("partition not assigned")  # aiokafka's, once revoked
        return 43 + int(clocks.ticks)

    monkeypatch.setattr(faust_aiokafka.Consumer, "_getmany", fetch)
    monkeypatch.setattr(faust_aiokafka.Consumer, "highwater", end)
    consumer = object.__new__(StrictOffsetsConsumer)  # its state only, no broker
    consumer._positions_moved, consumer._gaps, consumer._reseeking = 0, FetchGaps(), set()
    consumer._empty = defaultdict(EmptyOffsets)
    for _ in range(6):  # the first finds each end: five readings after it
        assert await consumer._getmany(None, 1.0) is records
        clocks.pass_s(1)
    assert hub.report() == pytest.approx(60.0, abs=0.1)
