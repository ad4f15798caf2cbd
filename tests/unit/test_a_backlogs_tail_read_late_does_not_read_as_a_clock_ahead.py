"""A hub worker back after lunch reads the backlog that waited for it to the end of each
partition. When nothing was written since the backlog's last record (a lull: the offices
at lunch, a night, a quiet authority), that last record is at the end of its partition
but was appended an hour ago. Found by review, stop 53: ``ClockCheck.fetched`` counted it
as a fresh reading (it only checked ``END_SLACK``), so the estimate was the backlog's age,
the worker's clock was said to run an hour ahead (ERROR: beyond the envelope skew), the
gauge was set to 3600 and kept there, and ``GunHubClockFarOff`` paged for a clock that
was right. A record counts now only if it was appended after the previous look at its
partition's end.
"""

from __future__ import annotations

import logging

import pytest
from faust.types import TP

from gun_hub import metrics
from tests.unit.test_the_hub_checks_its_clock_against_the_brokers import (
    DECLARATIONS,
    RESPONSES,
    Clocks,
    appended,
    check,
)

PARTITIONS = [TP("gun.declarations", p) for p in range(4)] + [
    TP("gun.responses.dgal", p) for p in range(4)
]


def test_a_backlogs_tail_appended_an_hour_ago_says_nothing_of_the_clock(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics.CLOCK_OFFSET.set(0.0)  # whatever an earlier test left in the process's gauge
    clocks = Clocks()  # this worker's clock agrees with the broker's
    hub = check(clocks)
    # The worker stopped at 12:00; ten records per partition were written until 12:10,
    # then nothing (a lull). It is back at 13:10: it reads each partition's backlog to
    # its end, the last fetch of each holding its partition's last record.
    ends = dict.fromkeys(PARTITIONS, 10)
    records = {
        tp: [appended(offset, 3600 + (9 - offset) * 60, clocks) for offset in range(5, 10)]
        for tp in PARTITIONS
    }
    with caplog.at_level(logging.WARNING, logger="gun_hub.runtime.clock_check"):
        hub.fetched(records, ends.get)
        offset = hub.report()
    # Nothing fresh was read: nothing to judge the clock by, nothing said of it.
    assert offset is None or abs(offset) < 60, (
        f"a clock that agrees with the broker's was estimated {offset:.0f}s ahead"
    )
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    gauge = metrics.CLOCK_OFFSET._value.get()
    assert not abs(gauge) > 60, f"gun_hub_clock_offset_seconds set to {gauge:.0f}"


def test_the_first_record_appended_after_the_catch_up_reads_the_clock() -> None:
    """Once caught up, what is appended next is read at once: the clock is judged again."""
    clocks = Clocks(offset_s=20.0)
    hub = check(clocks)
    hub.fetched(
        {tp: [appended(9, 3600, clocks)] for tp in PARTITIONS}, dict.fromkeys(PARTITIONS, 10).get
    )
    for n in range(10, 16):
        clocks.pass_s(1)
        hub.fetched(
            {tp: [appended(n, 0.05, clocks)] for tp in PARTITIONS},
            dict.fromkeys(PARTITIONS, n + 1).get,
        )
    assert hub.report() == pytest.approx(20.0, abs=0.1)


def test_a_worker_ten_minutes_ahead_is_seen_when_each_partition_gets_a_record_a_minute() -> None:
    """A partition is looked at by every fetch that asks for it, records or none (found by
    the review of stop 53's change: looked at only when a fetch brought records of it, a
    partition written once a minute never had a recent look, and the check went blind)."""
    clocks = Clocks(offset_s=600.0)
    hub = check(clocks)
    for n in range(10):  # ten minutes, one record a minute on each partition, read at once
        hub.fetched(
            {
                DECLARATIONS: [appended(100 + n, 0.05, clocks)],
                RESPONSES: [appended(7 + n, 0.05, clocks)],
            },
            {DECLARATIONS: 101 + n, RESPONSES: 8 + n}.get,
        )
        for _ in range(60):  # polled every second meanwhile: nothing new (no records)
            clocks.pass_s(1)
            hub.fetched(
                {}, {DECLARATIONS: 101 + n, RESPONSES: 8 + n}.get, {DECLARATIONS, RESPONSES}
            )
    offset = hub.report()
    assert offset is not None, "20 fresh records read 50 ms after their append: no estimate"
    assert offset == pytest.approx(600.0, abs=1.0)
