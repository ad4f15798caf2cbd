"""The retention timer: ticks the cases and markers of this worker's partitions that are
due to leave (pipeline/retention.py).

Like the deadline sweep it only reads and sends: the tick goes to the hub's deadlines
topic on the case's partition, and the deadlines agent acts on it in event context, so
deletions reach the right changelog partition as tombstones. It looks at the due times
the worker keeps in due order on its disk (``RetentionIndex``), never at the cases
themselves: one look costs what is due, and the small retention entries are read again
only when the worker's partitions change.

A look spreads its ticks over half the sweep's period, in slices (stop 43): every case
and marker due since the last look, some 6,000 at production's minute and 100
declarations a second, sent at once reached the deadlines agent as one burst of
tombstones that overflowed faust's changelog buffer, which pauses every stream while it
empties, and held the declarations behind it. Spread, the same ticks go at about twice
the rate cases become due, and never slower than they can be sent.

A look sends what became due within twice the period of the oldest entry waiting, oldest
first (stop 44): in steady running, everything due; after an outage, about twice the
flow, so a backlog shrinks by a period's worth of due times at every look instead of
going at once (an hour away at 100 declarations a second: 360,000 ticks, each writing
three or four tombstones, ahead of the declarations the hub also had to catch up on). A
backlog spread thinly over days still goes ``BACKLOG_FLOOR`` ticks a look.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gun_contract.topics import TopicRegistry
from gun_hub import metrics
from gun_hub.pipeline.retention import RETENTION_TICK, RetentionEntry, RetentionIndex
from gun_hub.runtime.table_store import value_on

log = logging.getLogger(__name__)

# A tick sent is looked at again after this long: one lost (a send that failed once
# queued, a tick dead-lettered) is sent again; one acted on has moved its entry on (the
# entry is gone or due later), and nothing is sent.
_RETICK_S = 300.0

# Ticks sent together in a look that spreads them: a slice's handlings write a few hundred
# changelog records, about what faust's changelog buffer (100) empties in one go.
TICKS_PER_SLICE = 20

# The least a look sends of a backlog whose window of due times holds fewer (entries days
# apart): some tens a second over the spread of production's look of a minute.
BACKLOG_FLOOR = 50 * TICKS_PER_SLICE


class RetentionSweep:
    def __init__(
        self,
        app: Any,
        topics: TopicRegistry,
        entries_table: Any,
        index: RetentionIndex,
        clock: Callable[[], float] = time.time,
        *,
        spread_s: float = 0.0,
        window_s: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``spread_s``: a look's ticks are sent over this long (half the sweep's period,
        so that a look ends before the next begins); 0 sends them at once. ``window_s``:
        a look sends what became due within this long of the oldest entry waiting (twice
        the sweep's period: a backlog is worked off a period's worth at every look), at
        least ``BACKLOG_FLOOR``; None sends everything due."""
        self._app = app
        self._topics = topics
        self._entries = entries_table
        self._index = index
        self._clock = clock
        self._spread_s = spread_s
        self._window_s = window_s
        self._sleep = sleep
        self._monotonic = monotonic

    def owned(self) -> set[int] | None:
        """The deadlines partitions this worker handles now (None: a rebalance is on)."""
        try:
            return {
                tp.partition
                for tp in self._app.assignor.assigned_actives()
                if tp.topic == self._topics.deadlines
            }
        except Exception:  # the assignment is being changed: next time
            log.debug("partition assignment unknown; retention waits", exc_info=True)
            return None

    async def run(self) -> None:
        if self._app.rebalancing or self._app.in_recovery:
            return  # the partitions' entries are being recovered: look once they are
        owned = self.owned()
        if owned is None:
            return
        # Each partition's RocksDB iterates a snapshot, so the read may yield to the
        # agents as it goes; faust's walk from one partition's database to the next does
        # not survive a rebalance meanwhile.
        rebalances = self._index.rebalances
        try:
            await self._index.refresh(owned, self._entries.items)
        except RuntimeError:
            if not self._overtaken(owned, rebalances):
                raise
            # A rebalance took or gave partitions during the read (minutes at production's
            # volume): read again once it is over, not a failure of the timer (stop 45).
            log.info("the retention index's read was overtaken by a rebalance: read again")
            return
        metrics.CASES_RETAINED.set(len(self._index))
        # After the read, which may take minutes: what came due meanwhile goes in this
        # look, and each tick's look-again time is counted from when it is sent.
        now = self._clock()
        due: list[tuple[int, bytes]] = []
        for partition in sorted(owned):
            try:
                keys = self._index.due(
                    partition, now, within_s=self._window_s, at_least=BACKLOG_FLOOR
                )
            except Exception:  # rocksdict raises its own errors as Exception
                # Taken keys leave the index: those taken from the partitions before this
                # one are sent, not lost for the worker's run (review stop 45).
                log.warning(
                    "retention index of partition %d not read; looked at again at the next look",
                    partition,
                    exc_info=True,
                )
                continue
            due += [(partition, key) for key in keys]
        began = self._monotonic()
        slices = -(-len(due) // TICKS_PER_SLICE)
        for sent, (partition, key) in enumerate(due):
            if sent and sent % TICKS_PER_SLICE == 0:
                # Each slice's time is fixed from the look's beginning: slices that took
                # longer to send than their share are followed at once, never slowed.
                wait = began + self._spread_s * (sent // TICKS_PER_SLICE) / slices
                await self._sleep(max(0.0, wait - self._monotonic()))
                if self._app.rebalancing or self._app.in_recovery:
                    # The partitions may be moving: the rest goes at the next look (the
                    # index is read again after the rebalance), to whoever holds them.
                    self._push_back(due[sent:], now)
                    return
            try:
                await self._tick_if_due(partition, key, now)
            except Exception:
                # faust's producer raises its own error for the broker's: any error.
                log.warning(
                    "retention ticks of partition %d not sent; sent at the next look",
                    partition,
                    exc_info=True,
                )
                self._push_back(due[sent:], now)
                return

    def _overtaken(self, read_for: set[int], rebalances: int) -> bool:
        """Whether a rebalance came during a read for ``read_for`` (the index had been told
        of ``rebalances``): faust's walk raises only when it moves to the next partition's
        database, minutes later at production's volume, and the partitions may be the
        same again by then (given to another worker and back: a rolling deploy)."""
        return (
            self._app.rebalancing
            or self._app.in_recovery
            or self._index.rebalances != rebalances
            or self.owned() != read_for
        )

    def _push_back(self, unsent: list[tuple[int, bytes]], now: float) -> None:
        for partition, key in unsent:
            self._index.push(partition, now, key)

    async def _tick_if_due(self, partition: int, key: bytes, now: float) -> None:
        # The entry on that partition: a reference may have one on several (ADR 0005
        # addendum), and a read outside any event found one partition's only.
        value = value_on(self._entries, key, partition)
        if value is None:
            return  # forgotten meanwhile
        try:
            due = RetentionEntry.from_bytes(bytes(value)).due
        except (ValueError, IndexError):
            log.exception("unreadable retention entry for %r: left alone", key)
            return
        if due > now:
            # Scheduled again later, or written back by a failed handling's undo (which
            # does not go through the index): held again at the due time it has now.
            self._index.push(partition, due, key)
            return
        self._index.push(partition, now + _RETICK_S, key)
        await self._app.producer.send(
            self._topics.deadlines, key, RETENTION_TICK, partition, None, None
        )
