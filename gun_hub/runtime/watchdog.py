"""The offset watchdog: a record faust read but never handed over is read again.

faust can drop a record it has fetched (a rebalance cancels its delivery, or clears the
queue it waited in) while the partition stays assigned, so nothing seeks back to it.
With the hub's commit rule (``strict_consumer.py``) such a record holds the commit back
instead of being committed over; this watchdog notices and repairs it without a restart.

Each tick, for every partition of the agents' topics: the first offset neither handled
nor known empty (the head) is suspect when faust has fetched up to or past it and it is
not on its way (waiting in an agent's queue, taken by a stream, held by an agent, its
effects being delivered: ``StrictOffsetsConsumer.on_the_way``), two ticks in a row. A suspect
head is judged by the broker itself (a plain consumer reads the range): absent offsets
before a present record hold nothing (transaction markers, expired records) and are
marked empty; a present head is read again (seek). Handling is idempotent, so reading
again what follows the head costs time, never a duplicate.

Offsets below the log's start were deleted by retention: on the hub's inputs
(declarations, partners' answers) they are named (``aged_out.py``: a dead letter, an error
line, a counter) before they are stepped over, at the first tick after an assignment and
wherever a look finds the head below the log's start. Only those no worker dealt with:
records handled, or fetched before the deletion and still on their way, are not named,
and nothing is committed past a record on its way (review stop 38-g, G2).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

from gun_contract.counters import export_at_zero
from gun_contract.kafka.client import Connect, consumer_options
from gun_hub import metrics
from gun_hub.runtime.aged_out import InputsAgedOut
from gun_hub.runtime.strict_consumer import ISOLATION_LEVEL, StrictOffsetsConsumer

log = logging.getLogger(__name__)

# How much of a partition one look at the broker reads at most.
PROBE_MAX_RECORDS = 2000


@dataclass(slots=True)
class _Suspect:
    offset: int
    since: float
    looked: bool = False  # the broker was asked what follows this head


class OffsetWatchdog:
    """Ticked by the hub's timer (``tick``); ``read_again`` counts its repairs.

    ``consumer`` returns the app's consumer (faust creates it late)."""

    def __init__(
        self,
        consumer: Callable[[], Any],
        connect: Connect,
        topics: set[str],
        stall_s: float,
        clock: Any = time.monotonic,
        aged_out: InputsAgedOut | None = None,
    ) -> None:
        self._consumer = consumer
        self._connect = connect
        self._topics = topics
        export_at_zero(metrics.RECORDS_READ_AGAIN, topic=topics)
        self._stall_s = stall_s
        self._clock = clock
        self._aged_out = aged_out
        self._suspects: dict[TP, _Suspect] = {}
        self._sought: dict[TP, _Suspect] = {}
        self._stalls: dict[TP, _Suspect] = {}
        # (head, read position) a look at the broker found nothing to repair at: not
        # looked at again until one of them moves (a quiet partition at its end).
        self._settled_quiet: dict[TP, tuple[int, int]] = {}
        self._probe: AIOKafkaConsumer | None = None
        self.read_again = 0
        self.marked_empty = 0

    async def tick(self) -> None:
        consumer = self._consumer()
        if not isinstance(consumer, StrictOffsetsConsumer):
            return
        assigned = [tp for tp in consumer.assignment() if tp.topic in self._topics]
        await consumer.learn_starts(assigned)
        await self._check_new_assignments(consumer, assigned)
        now = self._clock()
        snapshot: list[set[tuple[TP, int]]] = []

        def on_the_way() -> set[tuple[TP, int]]:
            if not snapshot:  # taken once per look, and only when a head needs it
                snapshot.append(consumer.on_the_way())
            return snapshot[0]

        for tp in assigned:
            await self._look_at(consumer, tp, now, on_the_way)
        for memory in (self._suspects, self._sought, self._settled_quiet, self._stalls):
            for tp in [tp for tp in memory if tp not in assigned]:
                del memory[tp]

    async def _check_new_assignments(
        self, consumer: StrictOffsetsConsumer, assigned: list[TP]
    ) -> None:
        """Each input partition newly assigned: committed below the log's start, what
        lies between is named, stepped over and committed past at once; never committed,
        its start is committed, so that what retention deletes while the hub is away is
        measured from there (the adapters' request partitions are the same, ADR 0014).
        The consumer commits that start at the assignment already
        (``StrictOffsetsConsumer.seek_to_committed``); this is for a commit it was refused.

        Measured from where the partition's commit point stands at this tick, not from
        the offset committed at the assignment: records handled since were committed past
        (their handled marks forgotten), and records on their way are being decided;
        neither was deleted unread (review stop 38-g, G2)."""
        if self._aged_out is None:
            return
        inputs = [tp for tp in assigned if tp.topic in self._aged_out.inputs]
        committed = consumer.take_committed_when_assigned(inputs)
        if not committed:
            return
        try:
            starts = await self._log_starts(list(committed))
            past: dict[TP, int] = {}
            on_the_way: set[tuple[TP, int]] | None = None
            for tp, offset in committed.items():
                start = starts[tp]
                if offset is None:
                    past[tp] = start
                    continue
                since = max(offset, consumer.commit_start(tp) or offset)
                if since < start:
                    if on_the_way is None:
                        on_the_way = consumer.on_the_way()
                    point = await self._step_over_deleted(
                        self._aged_out, consumer, tp, since, start, on_the_way
                    )
                    if point is not None:
                        past[tp] = point
            await consumer.commit_from(past)
        except Exception:  # the looks at the heads name it later
            log.warning(
                "the input partitions assigned could not be compared with their log "
                "starts: what retention deleted is named when the watchdog looks at them",
                exc_info=True,
            )

    async def _step_over_deleted(
        self,
        aged_out: InputsAgedOut,
        consumer: StrictOffsetsConsumer,
        tp: TP,
        since: int,
        log_start: int,
        on_the_way: set[tuple[TP, int]],
    ) -> int | None:
        """The offsets of the input ``tp`` in [since, log_start), deleted by retention,
        that no worker dealt with (neither handled nor on their way: fetched and held
        until their effects are on the broker) are named, then known empty. Where the
        partition may be committed now (None: not past where it is): up to the first
        record still on its way, never past it (ADR 0009); the normal commit passes the
        rest once those records are handled."""
        lost = [
            part
            for span in consumer.unsettled_spans(tp, since, log_start)
            for part in _leaving_out(span, {o for t, o in on_the_way if t == tp})
        ]
        await aged_out.deleted_unread(tp, lost)
        for span in lost:
            consumer.mark_empty(tp, span.start, span.stop)
            self.marked_empty += len(span)
        point = consumer.first_unsettled(tp)
        if point is None or point <= (consumer.commit_start(tp) or 0):
            return None
        return min(point, log_start)

    async def _log_starts(self, tps: list[TP]) -> dict[TP, int]:
        probe = await self._probe_consumer()
        partitions = [TopicPartition(tp.topic, tp.partition) for tp in tps]
        async with asyncio.timeout(10):
            starts = await probe.beginning_offsets(partitions)
        return {TP(tp.topic, tp.partition): int(starts[tp]) for tp in partitions}

    async def _look_at(
        self,
        consumer: StrictOffsetsConsumer,
        tp: TP,
        now: float,
        on_the_way: Callable[[], set[tuple[TP, int]]],
    ) -> None:
        head = consumer.first_unsettled(tp)
        fetched = consumer.fetched_up_to(tp)
        if head is not None and (fetched is None or fetched < head):
            await self._look_for_a_stall(consumer, tp, head, now, on_the_way)
            return
        if head is None or fetched is None or (tp, head) in on_the_way():
            self._suspects.pop(tp, None)
            return
        if self._settled_quiet.get(tp) == (head, fetched):
            return
        sought = self._sought.get(tp)
        if sought is not None and sought.offset == head and now - sought.since < 6 * self._stall_s:
            return  # read again already: let it come round
        suspect = self._suspects.get(tp)
        if suspect is None or suspect.offset != head:
            # Fetched, yet neither handled, queued nor held by a stream: dropped, unless
            # it is between the fetch and its queue this very moment. Judged next time.
            self._suspects[tp] = _Suspect(head, now)
            return
        if now - suspect.since < self._stall_s:
            return
        present, covered = await self._present(
            tp, head, fetched + 1, consumer=consumer, on_the_way=on_the_way
        )
        self._mark_absent(consumer, tp, head, present, covered)
        if head in present:
            log.warning(
                "%s[%d] offset %d was fetched but never handled (dropped by faust): read "
                "again (%s)",
                tp.topic,
                tp.partition,
                head,
                consumer.describe(tp, head),
            )
            await consumer.seek(tp, head)
            self.read_again += 1
            metrics.RECORDS_READ_AGAIN.labels(topic=tp.topic).inc()
            self._sought[tp] = _Suspect(head, now)
        elif consumer.first_unsettled(tp) == head:
            self._settled_quiet[tp] = (head, fetched)
        self._suspects.pop(tp, None)

    async def _look_for_a_stall(
        self,
        consumer: StrictOffsetsConsumer,
        tp: TP,
        head: int,
        now: float,
        on_the_way: Callable[[], set[tuple[TP, int]]],
    ) -> None:
        """Nothing fetched past the head: caught up, or faust stopped fetching this
        partition (seen at start-up when records arrive during the first assignment:
        the partition stays out of faust's active set). After a long enough wait with the
        broker holding records past the head, fetch it again from the head."""
        if (tp, head) in on_the_way() or tp in consumer.throttled:
            self._stalls.pop(tp, None)
            return
        stall = self._stalls.get(tp)
        if stall is None or stall.offset != head:
            self._stalls[tp] = _Suspect(head, now)
            return
        # A partition faust still fetches may just be behind under load (a backlog, the
        # broker slow): reading it again would only throw away what is on its way, so
        # it gets much longer than one faust stopped fetching.
        patience = 3 * self._stall_s if not consumer.fetching(tp) else 15 * self._stall_s
        # The broker is asked after one stall time, not the whole patience: what follows
        # the head may hold no record at all (a transaction's marker or an aborted
        # transaction last in the log), and it is stepped over at once.
        if now - stall.since < self._stall_s:
            return
        if not stall.looked:
            end = await self._end_offset(tp)
            if end is None or end <= head:
                # Caught up: asked again in three stall times (one request a partition).
                self._stalls[tp] = _Suspect(head, now + 2 * self._stall_s)
                return
            present, covered = await self._present(
                tp, head, end, first_only=True, consumer=consumer, on_the_way=on_the_way
            )
            if covered <= head:
                return  # the look timed out: nothing learnt, looked at again next tick
            self._mark_absent(consumer, tp, head, present, covered)
            if consumer.first_unsettled(tp) != head:
                self._stalls.pop(tp, None)  # stepped over offsets that hold nothing
                return
            stall.looked = True  # a record waits there: fetched again after the patience
        if now - stall.since < patience:
            return
        log.warning(
            "%s[%d]: records from offset %d wait on the broker but are not fetched "
            "(faust %s): fetched again",
            tp.topic,
            tp.partition,
            head,
            "fetches it" if consumer.fetching(tp) else "stopped fetching it",
        )
        consumer.fetch_again(tp)
        await consumer.seek(tp, head)
        self.read_again += 1
        metrics.RECORDS_READ_AGAIN.labels(topic=tp.topic).inc()
        self._stalls.pop(tp, None)

    def _mark_absent(
        self,
        consumer: StrictOffsetsConsumer,
        tp: TP,
        head: int,
        present: set[int],
        covered: int,
    ) -> None:
        """Offsets in [head, covered) the broker returned no record at hold none: the
        look read them all (what a committed read skips: a transaction's markers, what
        an aborted one wrote; what retention deleted)."""
        absent_from = head
        for offset in [*sorted(present), covered]:
            if offset > absent_from:
                consumer.mark_empty(tp, absent_from, offset)
                self.marked_empty += offset - absent_from
            absent_from = max(absent_from, offset + 1)

    async def _end_offset(self, tp: TP) -> int | None:
        probe = await self._probe_consumer()
        partition = TopicPartition(tp.topic, tp.partition)
        try:
            async with asyncio.timeout(10):
                ends = await probe.end_offsets([partition])
        except TimeoutError:
            return None
        return int(ends[partition])

    async def _present(
        self,
        tp: TP,
        start: int,
        stop: int,
        *,
        first_only: bool = False,
        consumer: StrictOffsetsConsumer | None = None,
        on_the_way: Callable[[], set[tuple[TP, int]]] = set,
    ) -> tuple[set[int], int]:
        """Offsets in [start, stop) that hold a record, read from the broker, and how far
        the look went (every offset below it that is not among them holds none): at most
        ``PROBE_MAX_RECORDS`` offsets, never past where a committed read ends.

        Offsets below the log's start (deleted by retention: a worker back after longer
        than the topic keeps records) hold none: the look starts at the log's start, or
        the probe, sought below it, was reset to the log's end and found nothing at all,
        and the commit point stayed below the log start for ever (stop 30, found by
        review); on the hub's inputs they are named first (``aged_out.py``), and the
        partition committed past them. A look that timed out, or whose dead letter the
        broker did not take, learnt nothing: it went nowhere. ``first_only``:
        stop at the first records returned (whether a record waits, not which).

        Only a timeout is caught: aiokafka steps over a record it cannot return (too
        large, corrupt) and raises, and a look that went on past it would mark a record
        empty."""
        probe = await self._probe_consumer()
        partition = TopicPartition(tp.topic, tp.partition)
        probe.assign([partition])
        beginning = (await probe.beginning_offsets([partition]))[partition]
        looked_from = start
        # Records below the log's start the hub still has on their way were fetched
        # before retention deleted them: they hold a record, being handled (review stop
        # 38-g, G2: they were named deleted unread, and committed past).
        held = {o for t, o in on_the_way() if t == tp and start <= o < beginning}
        if beginning > start and self._aged_out is not None and consumer is not None:
            try:
                if tp.topic in self._aged_out.inputs:
                    point = await self._step_over_deleted(
                        self._aged_out, consumer, tp, start, beginning, {(tp, o) for o in held}
                    )
                    if point is not None:
                        await consumer.commit_from({tp: point})
            except Exception:  # not stepped over: looked at again next tick
                log.warning(
                    "%s[%d]: offsets %d-%d deleted by retention could not be named; looked "
                    "at again",
                    *tp,
                    start,
                    beginning,
                    exc_info=True,
                )
                return set(), looked_from
        start = max(start, beginning)
        probe.seek(partition, start)
        stop = min(stop, start + PROBE_MAX_RECORDS)
        present: set[int] = held  # never marked empty
        end = (await probe.end_offsets([partition]))[partition]
        try:
            async with asyncio.timeout(10):
                while True:
                    position = await probe.position(partition)
                    if position >= min(stop, end):
                        break
                    batch = await probe.getmany(partition, timeout_ms=500)
                    for record in batch.get(partition, ()):
                        if record.offset < stop:
                            present.add(record.offset)
                    if first_only and present:
                        position = await probe.position(partition)
                        break
        except TimeoutError:
            log.warning("%s[%d]: the look at offsets %d-%d timed out", *tp, start, stop)
            return set(), looked_from  # nothing learnt: judged again next tick
        return present, max(start, min(position, stop))

    async def _probe_consumer(self) -> AIOKafkaConsumer:
        if self._probe is None:
            probe = AIOKafkaConsumer(
                **consumer_options(self._connect),
                enable_auto_commit=False,
                # Deleted meanwhile below where it looks: from the log's start, never its end.
                auto_offset_reset="earliest",
                # The same isolation as the hub's consumer: the same offsets are records
                # for both (an aborted transaction's hold none).
                isolation_level=ISOLATION_LEVEL,
            )
            try:
                await probe.start()
            except BaseException:
                await probe.stop()  # a broker away: no half-started client left behind
                raise
            self._probe = probe
        return self._probe

    async def stop(self) -> None:
        if self._probe is not None:
            await self._probe.stop()
            self._probe = None


def _leaving_out(span: range, offsets: set[int]) -> list[range]:
    """The runs of ``span`` without ``offsets``."""
    runs: list[range] = []
    start = span.start
    for offset in sorted(o for o in offsets if o in span):
        if offset > start:
            runs.append(range(start, offset))
        start = offset + 1
    if start < span.stop:
        runs.append(range(start, span.stop))
    return runs
