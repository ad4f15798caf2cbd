"""Batches of requests handled side by side, each declaration's records in order, and
marked handled in the order they were fetched.

Before, the adapter polled again only once the whole batch was handled: a request read
while a batch was under way waited for the batch's slowest declaration (a partner call
that takes its deadline and its retries, some 16 s, plus its turn for a connection), on
every partition, though the partner would answer it at once; it reached the hub past its
30 s deadline and was decided in degraded mode with the partner well (review of the
adapters, stop 57). Now the poll goes on while up to :data:`BATCHES_IN_FLIGHT` batches are
handled, and three rules keep what the single batch gave for free:

* **A declaration's records in order** (:class:`KeyChains`): a record waits for the
  records of its key in the batches fetched before it (a deletion never overtakes its
  reservation, a later version never an earlier one).
* **Marked in fetch order** (:class:`Turn`): a batch says how far it handled its
  partitions only once the batch before it did, so that a commit never passes a record
  an earlier batch still handles.
* **No mark past a record left** (:meth:`BatchPipeline.capped`): a batch that left
  records (its partitions revoked meanwhile, the replica stopping, a delivery that
  failed) holds every later batch's mark of those partitions at the first of them; the
  records answered past it are named in the commit, as within one batch
  (ownership.py).

A batch that fails stops every batch in flight (:attr:`BatchPipeline.stopping`: no further
record is handled or sent) and ends the poll loop at its next call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Hashable, Mapping

BATCHES_IN_FLIGHT = 4
"""Batches handled at once (each up to the poll's 500 records; the declarations they hold
run up to ``adapter.max_in_flight`` at a time). More only holds records in memory."""


class Turn:
    """A batch's place in the fetch order: :meth:`wait` until the batch before it has
    marked; :meth:`done` once this one has (or never will), never before the one before.
    ``before_on``: per partition of the batch, the turn of the last batch admitted before
    it that held that partition (:meth:`wait_on`)."""

    def __init__(
        self,
        before: asyncio.Future[None] | None,
        before_on: Mapping[int, asyncio.Future[None]] | None = None,
    ) -> None:
        self._before = before
        self._before_on = dict(before_on or {})
        self.marked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.settled = False  # its marks (or the records it left) were taken

    async def wait(self) -> None:
        if self._before is not None and not self._before.done():
            await asyncio.wait({self._before})

    async def wait_on(self, partitions: Collection[int]) -> None:
        """Until every batch before this one that held one of ``partitions`` has marked
        (what is known of those partitions is then up to date): not the batches of
        other partitions, which may be slow (a partition's first records waited for
        another partition's slow partner call; a review of stop 57's change)."""
        waiting = {
            turn
            for partition in partitions
            if (turn := self._before_on.get(partition)) is not None and not turn.done()
        }
        if waiting:
            await asyncio.wait(waiting)

    def done(self) -> None:
        def mark(_: object = None) -> None:
            if not self.marked.done():
                self.marked.set_result(None)

        if self._before is None or self._before.done():
            mark()
        else:
            self._before.add_done_callback(mark)


class KeyChains:
    """Per key, the end of the handling of its records in the batches admitted so far."""

    def __init__(self) -> None:
        self._tails: dict[Hashable, asyncio.Future[None]] = {}

    def link(self, key: Hashable) -> tuple[asyncio.Future[None] | None, asyncio.Future[None]]:
        """``(after, mine)``: the handling of ``key``'s records of a new batch begins once
        ``after`` is done, and ends by :meth:`unlink` of ``mine``."""
        after = self._tails.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key] = mine
        return after, mine

    def unlink(self, key: Hashable, mine: asyncio.Future[None]) -> None:
        if not mine.done():
            mine.set_result(None)
        if self._tails.get(key) is mine:
            del self._tails[key]


async def after(link: asyncio.Future[None] | None) -> None:
    """Once ``link`` (of :meth:`KeyChains.link`) is done, however it ended."""
    if link is not None and not link.done():
        await asyncio.wait({link})


class BatchPipeline:
    """The batches under way, at most :data:`BATCHES_IN_FLIGHT`."""

    def __init__(self, most: int = BATCHES_IN_FLIGHT) -> None:
        self._most = most
        self._running: deque[asyncio.Task[None]] = deque()
        self._last: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None
        # Per partition, the first record a batch left, and the generation it was
        # handled in (a mark of a later generation reads from the commit: not held).
        self._floors: dict[int, tuple[int, int]] = {}
        # Per partition, the offset after the last batch admitted (its generation), and
        # that batch's turn.
        self._fetched_to: dict[int, tuple[int, int]] = {}
        self._last_on: dict[int, tuple[int, asyncio.Future[None]]] = {}
        self.keys = KeyChains()
        self.stopping = asyncio.Event()  # a batch failed: nothing more is handled or sent
        # The replica stops: no further record begins (those under way end and are sent),
        # so that a stop hands over what was fetched ahead instead of asking it all
        # first, past its stop deadline (a review of stop 57's batches under way).
        self.winding_down = asyncio.Event()

    def check(self) -> None:
        """Raise what a batch failed with: the poll loop ends."""
        if self._failure is not None:
            raise self._failure

    async def room(self) -> None:
        """Until fewer than the most batches are under way; raises a batch's failure."""
        self.check()
        while len(self._running) >= self._most:
            await asyncio.wait(set(self._running), return_when=asyncio.FIRST_COMPLETED)
            self._forget_ended()
            self.check()

    def follows(self, firsts: Mapping[int, int], generation: int) -> set[int]:
        """Of the partitions a new batch begins at ``firsts``, those it follows the
        batch admitted before on without a gap (in ``generation``); each one's end
        is then :meth:`fetched` by the caller."""
        return {
            partition
            for partition, first in firsts.items()
            if self._fetched_to.get(partition) == (generation, first)
        }

    def fetched(self, ends: Mapping[int, int], generation: int) -> None:
        for partition, end in ends.items():
            self._fetched_to[partition] = (generation, end)

    def start(
        self,
        handle: Callable[[Turn], Awaitable[None]],
        partitions: Collection[int] = (),
        generation: int = 0,
    ) -> asyncio.Future[None]:
        """Handle a batch (of ``partitions``, fetched in ``generation``) in a task of its
        own, in its turn after those started before. Its :meth:`Turn.wait_on` waits for
        the batches before it on those partitions in that generation only: an earlier
        generation's marks are dropped, and waiting for them after a rebalance held a
        partition's first records behind another partition's slow call."""
        before_on = {}
        for partition in partitions:
            earlier = self._last_on.get(partition)
            if earlier is not None and earlier[0] == generation:
                before_on[partition] = earlier[1]
        turn = Turn(self._last, before_on)
        self._last = turn.marked
        for partition in partitions:
            self._last_on[partition] = (generation, turn.marked)
        task = asyncio.ensure_future(self._run(handle, turn))
        self._running.append(task)
        return task

    def failed(self, failure: BaseException) -> None:
        """A batch failed: every batch under way handles no further record, and the poll
        loop ends at its next call (the first failure is the one raised)."""
        self.stopping.set()
        if self._failure is None and not isinstance(failure, asyncio.CancelledError):
            self._failure = failure  # cancelled with the replica: nothing to raise

    async def _run(self, handle: Callable[[Turn], Awaitable[None]], turn: Turn) -> None:
        try:
            await handle(turn)
        except BaseException as failure:
            self.failed(failure)
            raise
        finally:
            turn.done()

    def capped(
        self, marks: Mapping[int, int], ends: Mapping[int, int], generation: int, turn: Turn
    ) -> dict[int, int]:
        """``marks`` (per partition, how far a batch of ``generation`` handled it), held
        at the first record an earlier batch left; a mark short of its batch's end
        (``ends``) holds the later ones in turn. Called in the batch's ``turn``."""
        turn.settled = True
        capped = {}
        for partition, mark in marks.items():
            floor = self._floors.get(partition)
            if floor is not None and floor[0] == generation:
                mark = min(mark, floor[1])
            capped[partition] = mark
            if mark < ends.get(partition, mark):
                self._floors[partition] = (generation, mark)
        return capped

    def left(self, firsts: Mapping[int, int], generation: int, turn: Turn) -> None:
        """A batch of ``generation`` marks nothing: every later one is held at its first
        records (``firsts``), or before. Called in the batch's ``turn``."""
        self.capped(firsts, {p: first + 1 for p, first in firsts.items()}, generation, turn)

    async def drain(self) -> None:
        """Until every batch under way ended; raises a batch's failure."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        self._forget_ended()
        self.check()

    async def drain_quietly(self) -> None:
        """Until every batch under way ended (the replica stops: their failure, if any,
        was raised already or is logged by the caller)."""
        with contextlib.suppress(Exception):
            await self.drain()

    def _forget_ended(self) -> None:
        for task in self._running:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: raised once, by check(), not logged again
        self._running = deque(task for task in self._running if not task.done())

    @property
    def under_way(self) -> int:
        """Batches started and not ended."""
        return sum(1 for task in self._running if not task.done())
