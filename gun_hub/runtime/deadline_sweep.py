"""The deadline timer: ticks the due cases of this worker's partitions.

It only reads: the tick goes to the hub's deadlines topic, on the partition the
declaration arrived on, and the deadlines agent decides in event context
(pipeline/deadlines.py). A case waiting for answers is ticked only once its inputs (its
declarations partition and every response partition of its partition) have been read to
the end the broker reports as it sweeps (pipeline/answer_progress.py): after a long stop,
the backlog is read before any deadline fires. Under a steady flow some records are
always on their way when the ends are asked, so the sweep waits a little
(``_CATCH_UP_S``) for the worker to read past them rather than finding the partitions
never read (deadlines would then never fire under load). A case waiting for a control's
result is ticked when the report falls due, on the same condition: that result is a
declaration, which may wait in the backlog (review stop 38, L4). An entry that does not
read as a deadline is ticked too, on the partition holding it, for its handler to replace
or remove it (review stop 40, open item 1). A reference may have an entry on several
partitions (the producer chooses: ADR 0005 addendum): each is looked at.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from faust.types import TP

from gun_contract.topics import TopicRegistry
from gun_contract.trace import trace_header
from gun_hub.pipeline.answer_progress import AnswerProgress, inputs_of
from gun_hub.pipeline.deadlines import DeadlineIndex
from gun_hub.pipeline.hub_context import OpenCaseEntry
from gun_hub.runtime.table_store import values_by_partition

log = logging.getLogger(__name__)

_RETICK_S = 5.0  # a tick not yet acted on is sent again after this long
_CATCH_UP_S = 2.0  # how long a sweep waits for the records on their way to be read
_CATCH_UP_LOOK_S = 0.05
# The tick of an entry that does not read: it names no version (read as 0 by the agent).
_NO_VERSION = b"0"


class DeadlineSweep:
    def __init__(
        self,
        app: Any,
        topics: TopicRegistry,
        open_cases: Any,
        progress: AnswerProgress,
        index: DeadlineIndex,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._app = app
        self._clock = clock
        self._topics = topics
        self._open_cases = open_cases
        self._progress = progress
        self._index = index
        self._revocations = 0  # partitions_revoked calls so far

    def answers_read(self, partition: int, authorities: Collection[str] | None = None) -> bool:
        """Nothing that was in the log of the inputs of ``partition`` at the last sweep
        (its declarations, the responses of ``authorities``, None: of every one) waits
        unread (asked again as the tick is handled: the worker read on since)."""
        inputs = inputs_of(self._topics, partition, authorities)
        self._refresh_read_positions(inputs)
        return self._progress.all_read(inputs)

    def partitions_revoked(self, revoked: Iterable[TP]) -> None:
        """What was read of the partitions revoked, and where they ended, is forgotten: a
        tick read on one given back (another worker's sweep sent it, or this one's before
        the rebalance) waits until this worker has asked its end again and read through
        it (pipeline/answer_progress.py ``forget``)."""
        self._revocations += 1
        self._progress.forget((tp.topic, tp.partition) for tp in revoked)

    async def run(self) -> None:
        # Counted from the start: a revocation while the table is read (it yields) or an
        # unreadable entry ticked, before the broker is asked, forgets nothing the ends
        # asked after it would bring back (a review of stop 58).
        revocations = self._revocations
        if self._app.rebalancing or self._app.in_recovery:
            return  # the partitions are changing hands: look once they have
        now = self._clock()
        if self._index.needs_reading(now):
            # RocksDB iterates a snapshot, so the read may yield to the agents as it goes.
            await self._index.read(self._open_cases.items, now)
        keys = self._index.due(now)
        try:
            await self._look_at(keys, now, revocations)
        except BaseException:
            # Taken off the index but maybe not ticked (the broker unreachable): next sweep.
            for key in keys:
                self._index.push(key, now)
            raise

    async def _look_at(self, keys: list[bytes], now: float, revocations: int) -> None:
        """Tick what is due of ``keys``' entries, on each partition holding one: a
        reference may be on several (ADR 0005 addendum), and an entry found on one
        partition says nothing of another's (looked up outside any event, faust's store
        answered from one partition: CI, stop 41)."""
        due: list[tuple[bytes, int, OpenCaseEntry]] = []
        unreadable: list[tuple[bytes, int | None]] = []
        for key in keys:
            for held, value in values_by_partition(self._open_cases, key):
                try:
                    entry = OpenCaseEntry.from_bytes(value)
                except (ValueError, UnicodeDecodeError):
                    unreadable.append((key, held))
                    continue
                # Ticked where the entry is (its handler reads that partition's store),
                # which is where its handling wrote it: the partition it names.
                partition = entry.partition if held is None else held
                if entry.due <= now and partition is not None:
                    due.append((key, partition, entry))  # else rewritten later: pushed then
        await self._tick_unreadable(unreadable, now)
        if not due:
            return
        # A control's result comes as a declaration: its report waits for the inputs
        # to be read through, as an answer's deadline does. Each entry's inputs are its
        # partition's declarations and the answers of the authorities it waits for.
        inputs = {
            key: inputs_of(self._topics, partition, entry.awaiting) for key, partition, entry in due
        }
        if not await self._refresh_progress(inputs.values(), revocations):
            for key, _, _ in due:
                self._index.push(key, now)  # the partitions changed hands: next sweep
            return
        await self._catch_up(inputs.values())
        for key, partition, entry in due:
            if not self._progress.all_read(inputs[key]):
                self._index.push(key, now)  # answers or results may wait unread: next sweep
                continue
            # Looked at again in a while: a tick lost, or not acted on, is sent again.
            self._index.push(key, now + _RETICK_S)
            await self._app.producer.send(
                self._topics.deadlines,
                key,
                str(entry.version).encode(),
                partition,
                None,
                [trace_header(key.decode("utf-8", "replace"), entry.version)],
            )

    async def _tick_unreadable(self, found: list[tuple[bytes, int | None]], now: float) -> None:
        """Tick each entry that does not read as a deadline, on the partition holding it:
        its handler puts what the case waits for in its place, or removes it, and
        dead-letters the tick (pipeline/deadlines.py). Skipped, it stayed for ever (review
        stop 40, open item 1). Its value names no partition: a store that does not say
        where it holds it (an in-memory one) has the tick sent to every deadlines
        partition this worker holds, each handled against its own partition's store, so
        only the one holding the entry finds it. It names no version (0): the handler
        decides nothing on it."""
        if not found:
            return
        for key, _ in found:
            self._index.push(key, now + _RETICK_S)  # still there then: ticked again
        held: list[int] = []
        if any(partition is None for _, partition in found):
            try:
                held = sorted(
                    tp.partition
                    for tp in self._app.assignor.assigned_actives()
                    if tp.topic == self._topics.deadlines
                )
            except Exception:  # the assignment is changing (a rebalance): the next look
                log.debug("partition assignment unknown; unreadable entries wait", exc_info=True)
                return
        for key, partition in found:
            partitions = held if partition is None else [partition]
            log.warning(
                "open-case entry for %r does not read as a deadline: ticked on partitions "
                "%s for its handler to replace or remove it",
                key,
                partitions,
            )
            for each in partitions:
                await self._app.producer.send(
                    self._topics.deadlines,
                    key,
                    _NO_VERSION,
                    each,
                    None,
                    [trace_header(key.decode("utf-8", "replace"), 0)],
                )

    async def _refresh_progress(
        self, each: Iterable[list[tuple[str, int]]], revocations: int
    ) -> bool:
        """Ask the broker where each input partition ends, and the consumer how far
        each was handled without a hole. False, nothing kept, when partitions were
        revoked since the sweep began (``revocations``: the count then) or while the
        broker answered: its ends may be of partitions given away, and kept they would
        outlive the forgetting (``partitions_revoked``)."""
        inputs = sorted({tp for entry_inputs in each for tp in entry_inputs})
        if not inputs:
            return True
        ends = await self._app.consumer.highwaters(*(TP(topic, p) for topic, p in inputs))
        if self._revocations != revocations:
            return False
        for tp, end in ends.items():
            if end is not None:
                self._progress.set_end(tp.topic, tp.partition, int(end))
        self._refresh_read_positions(inputs)
        return True

    async def _catch_up(self, each: Iterable[list[tuple[str, int]]]) -> None:
        """Wait, briefly, until the records on their way at the sweep have been read."""
        distinct = {tuple(inputs): inputs for inputs in each}.values()  # entries share them
        waiting = [inputs for inputs in distinct if not self._progress.all_read(inputs)]
        deadline = time.monotonic() + _CATCH_UP_S
        while waiting and time.monotonic() < deadline:
            await asyncio.sleep(_CATCH_UP_LOOK_S)  # no event marks a partition read through
            for inputs in waiting:
                self._refresh_read_positions(inputs)
            waiting = [inputs for inputs in waiting if not self._progress.all_read(inputs)]

    def _refresh_read_positions(self, inputs: list[tuple[str, int]]) -> None:
        consumer = self._app.consumer
        for topic, partition in inputs:
            offset = consumer.first_unsettled(TP(topic, partition))
            if offset is not None:
                self._progress.set_read_up_to(topic, partition, int(offset))
