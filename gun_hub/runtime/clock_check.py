"""Is this worker's clock right? ``gun_hub_clock_offset_seconds``, and the log when it is not.

A case's deadline is the wall clock of the worker that opened it plus the request deadline,
compared with the wall clock of whichever worker holds its partition at the tick
(pipeline/deadlines.py, runtime/deadline_sweep.py). A worker whose clock runs minutes
ahead times out the cases it takes over early: degraded decisions while the partners
answer, their answers then late. One more than the envelope skew (300 s) off has
everything it seals refused: its requests by the adapters (IAT_SKEW, so degraded mode),
its decisions by the clearance reader. Nothing in the hub looked at its own clock (found by
review, stop 36; heartbeats judge only the other parties').

The broker stamps each record of the envelope topics with its log-append time, on its own
clock (ADR 0006). When the clocks agree, a record is read no earlier than it was appended:
read time - log-append time is the delay, at least zero. So the least of that difference
over the records read recently is the worker's offset plus the shortest delay (a fetch's,
well under a second): negative, the worker runs behind the broker; a large positive
least, ahead. Only records found at the end of their partition count (at most
``END_SLACK`` records before it, a transaction's marker): a backlog read an hour late says
nothing of the clock, and would read as a clock an hour ahead. Nor does the tail of one:
a record counts only if it was appended after this worker's previous fetch of its
partition found that partition's end (a worker back from lunch reads each partition's
backlog to its end, and when nothing was written since, its last record is at the end
but an hour old: an ERROR and a page for a clock that was right; found by review, stop
53). With several brokers the offset is from the one whose clock runs furthest ahead.

The worker's consumer gives every fetch to :data:`CLOCK` (runtime/strict_consumer.py),
which sets the gauge every ``REPORT_EVERY_S`` and logs a warning beyond ``WARN_S``, an
error beyond the envelope skew (again every ``LOG_EVERY_S`` while it lasts).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from gun_contract.envelope import broker_accepted_at
from gun_hub import metrics

log = logging.getLogger(__name__)

WARN_S = 5.0  # beyond this, deadlines of cases taken over are noticeably off
ENVELOPE_SKEW_S = 300.0  # security.max_clock_skew_s's default (configured by the hub)
WINDOW_S = 300.0  # the readings the estimate is the least of
SLICE_S = 10.0  # the estimate keeps the least reading of each slice of its window
MIN_READINGS = 5  # fewer in the window: no estimate (the gauge keeps the last)
END_SLACK = 2  # records between one read and its partition's end for it to count as fresh
REPORT_EVERY_S = 30.0
LOOK_KEPT_S = 30.0  # a partition's last look at its end tells what arrived since
LOG_EVERY_S = 600.0  # an offset that lasts is logged again this often


class ClockOffset:
    """The least of the readings (read time - log-append time) of the last ``window_s``
    seconds, kept as the least of each ``slice_s`` (a busy worker reads thousands of
    records a second)."""

    def __init__(
        self,
        *,
        window_s: float = WINDOW_S,
        slice_s: float = SLICE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._slice_s = slice_s
        self._slices_kept = max(1, math.ceil(window_s / slice_s))
        self._monotonic = monotonic
        self._slices: deque[list[float]] = deque()  # [slice number, least, readings]

    def saw(self, difference: float) -> None:
        now = math.floor(self._monotonic() / self._slice_s)
        if self._slices and self._slices[-1][0] == now:
            last = self._slices[-1]
            last[1] = min(last[1], difference)
            last[2] += 1
        else:
            self._slices.append([now, difference, 1])
        self._age(now)

    def least(self) -> float | None:
        self._age(math.floor(self._monotonic() / self._slice_s))
        return min((s[1] for s in self._slices), default=None)

    def readings(self) -> int:
        self._age(math.floor(self._monotonic() / self._slice_s))
        return int(sum(s[2] for s in self._slices))

    def _age(self, now: int) -> None:
        while self._slices and self._slices[0][0] <= now - self._slices_kept:
            self._slices.popleft()


class ClockCheck:
    """This worker's wall clock against the broker's (module docstring)."""

    def __init__(
        self,
        *,
        warn_s: float = WARN_S,
        envelope_skew_s: float = ENVELOPE_SKEW_S,
        window_s: float = WINDOW_S,
        slice_s: float = SLICE_S,
        min_readings: int = MIN_READINGS,
        report_every_s: float = REPORT_EVERY_S,
        log_every_s: float = LOG_EVERY_S,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.warn_s = warn_s
        self.envelope_skew_s = envelope_skew_s
        self._offset = ClockOffset(window_s=window_s, slice_s=slice_s, monotonic=monotonic)
        self._min_readings = min_readings
        self._report_every_s = report_every_s
        self._log_every_s = log_every_s
        self._wall = wall
        self._monotonic = monotonic
        self._reported = -math.inf
        self._logged = -math.inf
        self._level = logging.NOTSET  # of the last offset logged
        # Each partition's end (high watermark) as its last fetch with records found it,
        # and when: a record at or past it was appended since, while this worker was
        # reading, if that look is recent (a partition revoked, or throttled, and read
        # again later has a backlog past an old look).
        self._ends: dict[Any, tuple[int, float]] = {}

    def configure(self, *, envelope_skew_s: float) -> None:
        """The envelope skew in force (``security.max_clock_skew_s``)."""
        self.envelope_skew_s = envelope_skew_s

    def fetched(
        self,
        records: Mapping[Any, Sequence[Any]],
        end: Callable[[Any], int | None],
        looked: Iterable[Any] = (),
    ) -> None:
        """A fetch's records (aiokafka's, by partition, oldest first); ``end``: the
        partition's end offset (its high watermark) as the fetch found it, None or an
        error when unknown (the partition revoked meanwhile); ``looked``: the partitions
        the fetch asked for, their ends looked at though it brought nothing of them (a
        partition written once a minute had no recent look, and no record of it
        counted: the check went blind at low traffic; review of stop 53's change)."""
        now = self._wall()
        for tp in looked:
            if tp not in records:
                self._look(tp, end)
        for tp, batch in records.items():
            if not batch:
                continue
            newest = batch[-1]
            at = broker_accepted_at(newest.timestamp, newest.timestamp_type)
            if at is None:
                continue  # a CreateTime: the producer's choice, not the broker's clock
            before = self._ends.get(tp)
            ends_at = self._look(tp, end)
            if ends_at is None:
                continue
            if ends_at - newest.offset - 1 > END_SLACK:
                continue  # not at the end of its partition: a backlog
            if (
                before is None
                or newest.offset < before[0]
                or self._monotonic() - before[1] > LOOK_KEPT_S
            ):
                continue  # there before the last look at the end: a backlog's tail
            self._offset.saw(now - at)
        if self._monotonic() - self._reported >= self._report_every_s:
            self.report()

    def _look(self, tp: Any, end: Callable[[Any], int | None]) -> int | None:
        """``tp``'s end as this fetch found it, remembered with when; None if unknown."""
        try:
            ends_at = end(tp)
        except Exception as error:  # noqa: BLE001 - a clock check never fails a fetch
            log.debug("clock check: the end of %s is unknown (%r)", tp, error)
            return None
        if ends_at is not None:
            self._ends[tp] = (ends_at, self._monotonic())
        return ends_at

    def estimate(self) -> float | None:
        """The offset in seconds (positive: this worker's clock is ahead of the broker's),
        or None with too few fresh readings to judge."""
        if self._offset.readings() < self._min_readings:
            return None
        return self._offset.least()

    def report(self) -> float | None:
        """The gauge set to the estimate, and the log told when it is off."""
        self._reported = self._monotonic()
        offset = self.estimate()
        if offset is None:
            return None
        metrics.CLOCK_OFFSET.set(offset)
        level = logging.NOTSET
        if abs(offset) > self.envelope_skew_s:
            level = logging.ERROR
        elif abs(offset) > self.warn_s:
            level = logging.WARNING
        now = self._monotonic()
        if level == logging.NOTSET:
            if self._level != logging.NOTSET:
                log.info("this worker's clock is within %.1fs of the broker's again", offset)
            self._level = level
            return offset
        if level > self._level or now - self._logged >= self._log_every_s:
            self._logged = now
            log.log(level, _say(offset, self.envelope_skew_s, level))
        self._level = level
        return offset


def _say(offset: float, envelope_skew_s: float, level: int) -> str:
    way = "ahead of" if offset > 0 else "behind"
    said = (
        f"this worker's clock runs {abs(offset):.1f}s {way} the broker's (its log-append "
        "times of the records read last): "
    )
    if level >= logging.ERROR:
        return said + (
            f"beyond the envelope skew ({envelope_skew_s:.0f}s), the partners and the "
            "clearance reader refuse what it seals (requests IAT_SKEW, so degraded "
            "decisions); set its clock right (NTP)"
        )
    early_or_late = "early" if offset > 0 else "late"
    return said + (
        f"the deadlines of cases it takes over from another worker pass {early_or_late} "
        "by as much; set its clock right (NTP)"
    )


# The worker's: its consumer gives it every fetch (runtime/strict_consumer.py).
CLOCK = ClockCheck()
