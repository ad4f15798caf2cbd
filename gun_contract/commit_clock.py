"""How far back a partition can be read again, in broker time.

A consumer reads a partition again from the offset the broker confirmed committed (after
a crash, a rebalance, a restart), and an adapter's commit is held at its oldest pending
operation while it reads ahead (ADR 0014). So a replay memory may forget an id only once
no copy of it can be read again: once every partition is *committed* past the copies'
broker times, not merely read past them (ADR 0008; the hub's claims memory learnt it in
stop 36, the adapters' and the clearance reader's in stop 39).

:class:`CommitClock` keeps the broker time of the records read since each partition's
commit point, and says, for a confirmed commit, the broker time below which the
partition can no longer be read again: the time of the record at the committed offset if
it was read, else of the latest record read before it (the broker's times grow along a
partition). A record without a broker time (a topic not stamped ``LogAppendTime``) says
nothing.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable


class CommitClock:
    """Broker times of the records read, per partition, from its commit point on."""

    # Times kept per partition before they are thinned: a reader held at an old commit
    # reads a whole backlog ahead. Thinned, a commit point is given the time of a record
    # before it, which is never later than its own, so forgetting only waits longer.
    KEEP = 4096

    def __init__(self) -> None:
        # Partition -> offsets read (ascending) and their broker times.
        self._offsets: dict[int, list[int]] = {}
        self._times: dict[int, list[float]] = {}

    def saw(self, partition: int, offset: int, broker_time: float | None) -> None:
        """The record at ``offset`` of ``partition`` was read, appended at ``broker_time``."""
        if broker_time is None:
            return
        offsets = self._offsets.setdefault(partition, [])
        times = self._times.setdefault(partition, [])
        if not offsets or offset > offsets[-1]:
            offsets.append(offset)
            times.append(broker_time)
        else:  # read again (a seek back): in its place, once
            at = bisect.bisect_left(offsets, offset)
            if at < len(offsets) and offsets[at] == offset:
                return
            offsets.insert(at, offset)
            times.insert(at, broker_time)
        if len(offsets) > 2 * self.KEEP:
            # Every other one, the oldest and the newest kept: the latest time read stays
            # exact, and a commit at the oldest offset read still has a time.
            kept = [0, *range(len(offsets) - 1, 0, -2)[::-1]]
            self._offsets[partition] = [offsets[i] for i in kept]
            self._times[partition] = [times[i] for i in kept]

    def readable_from(self, partition: int, committed: int) -> float | None:
        """The broker time below which ``partition`` can no longer be read again, its
        commit at ``committed`` confirmed by the broker; None: no record at or before it
        was read. The times before it are dropped, the latest of them kept."""
        offsets = self._offsets.get(partition)
        if not offsets:
            return None
        times = self._times[partition]
        at = bisect.bisect_right(offsets, committed)  # offsets[:at] <= committed
        if at == 0:
            return None
        said = times[at - 1]
        keep_from = at - 1  # the one said: a later commit at the same place says it again
        del offsets[:keep_from], times[:keep_from]
        return said

    def kept(self, partition: int) -> int:
        """How many times are kept for ``partition``."""
        return len(self._offsets.get(partition, []))

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions taken from this reader: read again from their commit if they come
        back."""
        for partition in partitions:
            self._offsets.pop(partition, None)
            self._times.pop(partition, None)
