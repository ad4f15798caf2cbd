"""Which offset of a partition may be committed: only past records the hub handled.

faust 0.15 counts a record as done when its stream acknowledges it, and a stream also
acknowledges the records it skips while a rebalance suspends the flow; its commit rule
then steps over one missing offset at the head (faust-streaming #606), and its gap
bookkeeping marks the record being delivered as a gap. Each of those commits past a
record that was never handled: after the next restart it is lost (a declaration never
decided), and until then the commit stalls (an answer never read, a spurious deadline).

The rule here is the plain at-least-once one: from the committed offset, advance over
offsets that were handled or are known to hold no record (a transaction marker, a
compacted or expired record), and stop at the first other one. Known-empty offsets come
only from the broker itself (the watchdog reads the range), never from guesses.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field


@dataclass(slots=True)
class EmptyOffsets:
    """Offsets of one partition known to hold no record, as sorted disjoint [start, stop)."""

    _spans: list[tuple[int, int]] = field(default_factory=list)

    def add(self, start: int, stop: int) -> None:
        if stop <= start:
            return
        merged: list[tuple[int, int]] = []
        for span_start, span_stop in self._spans:
            if span_stop < start or span_start > stop:
                merged.append((span_start, span_stop))
            else:
                start, stop = min(start, span_start), max(stop, span_stop)
        merged.append((start, stop))
        self._spans = sorted(merged)

    def end_of_span_at(self, offset: int) -> int | None:
        """The first offset past the empty span holding ``offset`` (None: not empty)."""
        index = bisect_right(self._spans, (offset, float("inf"))) - 1
        if index >= 0:
            start, stop = self._spans[index]
            if start <= offset < stop:
                return stop
        return None

    def next_span_start(self, offset: int) -> int | None:
        """The start of the first empty span beginning after ``offset`` (None: none)."""
        index = bisect_right(self._spans, (offset, float("inf")))
        return self._spans[index][0] if index < len(self._spans) else None

    def forget_below(self, offset: int) -> None:
        """Spans wholly below the committed offset are no longer needed."""
        self._spans = [(a, b) for a, b in self._spans if b > offset]

    def __bool__(self) -> bool:
        return bool(self._spans)


def first_unsettled(start: int, handled: Iterable[int], empty: EmptyOffsets) -> int:
    """The first offset from ``start`` that was neither handled nor known empty.

    Everything before it may be committed; it is where a consumer must read again if
    it has gone past it without handling it.
    """
    done = set(handled)
    offset = start
    while True:
        if offset in done:
            offset += 1
            continue
        past_empty = empty.end_of_span_at(offset)
        if past_empty is None:
            return offset
        offset = past_empty


@dataclass(slots=True)
class FetchGaps:
    """Offsets the broker stepped over between the records it returned: they hold none.

    A fetch returns a partition's records in offset order from the consumer's position,
    and the position moves only past what was returned; so, between two seeks, an
    offset between two records returned one after the other holds nothing readable
    (a transaction marker, an aborted or compacted record, one deleted by retention
    under a position reset). faust's filtering happens after this: a record faust
    drops was returned, so it is never taken for a gap.
    """

    _last: dict[Hashable, int] = field(default_factory=dict)

    def forget(self) -> None:
        """A seek or a new assignment: the next records may come from anywhere."""
        self._last.clear()

    def returned(self, tp: Hashable, offsets: Iterable[int]) -> list[tuple[int, int]]:
        """The empty [start, stop) spans before and between ``offsets`` (ascending)."""
        gaps: list[tuple[int, int]] = []
        last = self._last.get(tp)
        for offset in offsets:
            if last is not None and offset > last + 1:
                gaps.append((last + 1, offset))
            if last is None or offset > last:
                last = offset
        if last is not None:
            self._last[tp] = last
        return gaps


def unsettled_spans(
    start: int, stop: int, handled: Iterable[int], empty: EmptyOffsets
) -> list[range]:
    """The runs of offsets in [start, stop) neither handled nor known empty, in order:
    what a partition's records there were never dealt with (stepped over one offset
    span at a time, never one offset at a time: a gap retention made can be millions)."""
    done = sorted(o for o in set(handled) if start <= o < stop)
    spans: list[range] = []
    offset = start
    while offset < stop:
        while done and done[0] < offset:
            done.pop(0)  # inside an empty span stepped over
        past_empty = empty.end_of_span_at(offset)
        if past_empty is not None:
            offset = past_empty
            continue
        if done and done[0] == offset:
            done.pop(0)
            offset += 1
            continue
        # Up to the next offset handled or known empty.
        following = done[:1]
        next_empty = empty.next_span_start(offset)
        if next_empty is not None:
            following.append(next_empty)
        end = min([stop, *following])
        spans.append(range(offset, end))
        offset = end
    return spans
