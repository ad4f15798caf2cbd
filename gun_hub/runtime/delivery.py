"""Sending what one event caused: every record on the event's partition, every delivery
checked.

* **Partition.** The producer of a declaration chose its partition (contract section 2:
  Java's murmur2, librdkafka's CRC32, or a partition named outright). Every record the
  hub sends about that declaration goes to the same partition number (requests, status,
  facts, the decision outbox, dead letters, deadline ticks), and the adapters answer on
  the partition of the request: so an answer and a tick meet the case where it lives,
  and the hub never re-derives a partition from the key with a hash of its own.
* **Delivery.** Every send is awaited and its outcome checked, whether or not something
  waits for it: a failure the broker may recover from is retried with backoff; a record
  the broker will never take (too large, invalid) becomes a dead letter saying so, so one
  record cannot stop the worker or crash-loop it; and ``after_delivery`` runs only once
  every record is acknowledged, and only while the event's partition is still this
  worker's (ownership.py; ``if_undelivered`` otherwise).
* **Pipelined.** :func:`send_outbox` queues the records (in order, so the producer keeps
  the order of events per partition) and returns what settles them: the agent goes on with
  the next record while the broker acknowledges, and marks a record handled only once its
  own records are settled (runtime/settling.py). One round trip to the broker per batch the
  producer makes, not per event.
* **State first, for a decision** (:class:`StateFirst`). The records of a handling that
  decided leave once its table writes (the decided case) are on the broker, and every
  later handling's records on that partition wait behind them. Sent side by side, a
  worker dying between the two left the decision on the broker and the case undecided:
  decided again, maybe otherwise, its follow-up following a decision nobody published
  (review stop 38). Now a crash in between leaves a decided case with no decision, which
  the record read again announces again, the same decision (ADR 0013's second addendum).
  Its audit links wait with it, but a case write that failed still hands them to their
  lane: later links are built on them (review stop 38-sf, SF1). "That partition" is the
  case's partition number, whichever co-partitioned topic the event came from, but the
  claims topic's partitions have lines of their own (SF2).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka.errors import KafkaError, KafkaTimeoutError
from faust.exceptions import ProducerSendError

from gun_contract.dead_letter import ErrorClass, SourcePosition, add_dead_letter
from gun_contract.effects import Effects, OutgoingRecord
from gun_hub import metrics
from gun_hub.runtime import ownership
from gun_hub.runtime.ownership import PartitionGivenUp

log = logging.getLogger(__name__)

Send = Callable[[OutgoingRecord], Awaitable[Awaitable[Any]]]

COMPONENT = "hub.delivery"
UNDELIVERABLE = "UNDELIVERABLE"


class DeliveryFailed(RuntimeError):
    """Records the broker kept refusing with errors it may recover from."""


def pinned(outbox: Effects, partition: int) -> list[OutgoingRecord]:
    """The outbox's records, each on ``partition`` unless it names one itself."""
    return [
        record
        if record.partition is not None
        else OutgoingRecord(record.topic, record.key, record.value, record.headers, partition)
        for record in outbox.records
    ]


def _retriable(error: BaseException) -> bool:
    """A failure the broker may recover from (a leader moving, a broker restarting)."""
    if isinstance(error, (KafkaTimeoutError, TimeoutError, ConnectionError)):
        return True
    return isinstance(error, KafkaError) and bool(getattr(error, "retriable", False))


Queued = list[Awaitable[Any] | BaseException]


async def _queue(send: Send, records: Sequence[OutgoingRecord]) -> Queued:
    """Hand ``records`` to the producer, in order; what acknowledges each (or why it was
    refused before it was queued)."""
    queued: Queued = []
    for record in records:
        try:
            queued.append(await send(record))
        except ProducerSendError as wrapped:
            # faust's producer wraps aiokafka's refusal in its own error: the cause says
            # whether it may pass (a timeout) or never will (too large). Not caught, it
            # restarted the agent on the same record again and again (stop 30).
            cause = wrapped.__cause__
            queued.append(cause if isinstance(cause, KafkaError) else wrapped)
        except (KafkaError, ValueError, TypeError) as error:  # refused before queueing
            queued.append(error)
        except AssertionError as error:
            # aiokafka refuses a partition the topic does not have with an assert (a forged
            # claim naming partition 4096 crashed the claims agent again and again, stop 34);
            # any other assertion is a bug, and stays one.
            if "partition" not in str(error):
                raise
            queued.append(ValueError(f"refused by the producer: {error}"))
    return queued


async def _outcomes(queued: Queued) -> list[BaseException | None]:
    outcomes: list[BaseException | None] = []
    for future in queued:
        if isinstance(future, BaseException):
            outcomes.append(future)
            continue
        try:
            await future
        except (TimeoutError, KafkaError, ConnectionError) as error:
            outcomes.append(error)
        else:
            outcomes.append(None)
    return outcomes


async def attempt(send: Send, records: Sequence[OutgoingRecord]) -> list[BaseException | None]:
    """Send ``records`` once: each one's failure, or None once the broker has it."""
    return await _outcomes(await _queue(send, records))


@dataclass(frozen=True, slots=True)
class Retries:
    """How long a failure the broker may recover from is retried (with jittered backoff)."""

    attempts: int = 8
    backoff_s: float = 0.1
    max_backoff_s: float = 5.0


class ChainLinks(Protocol):
    """Where the audit links go instead (runtime/audit_lanes.py): in chain order, never
    dead-lettered."""

    topic: str

    def send(self, links: Sequence[OutgoingRecord]) -> Awaitable[object]: ...


def _no_writes() -> Awaitable[None]:
    return asyncio.sleep(0)


def _always_ours() -> Callable[[], bool]:
    return lambda: True


Queueing = tuple[Queued, Awaitable[object] | None, list[OutgoingRecord]]


@dataclass(slots=True)
class _Held:
    """One handling's records in its partition's line, and what they wait for."""

    send: Send
    records: list[OutgoingRecord]
    links: ChainLinks | None
    writes: Awaitable[None] | None  # a decision's table writes; None: it decided nothing
    ours: Callable[[], bool]
    queued: asyncio.Future[Queueing]


@dataclass(slots=True)
class _Line:
    """A partition's handlings whose records wait, in the order they were handled, and
    the one task that queues them."""

    waiting: deque[_Held] = field(default_factory=deque)
    draining: asyncio.Task[None] | None = None


@dataclass(slots=True)
class StateFirst:
    """Holds the records of a handling that decided until its table writes are
    acknowledged, and each partition's later records behind them (in order).

    ``decisions_topic``: a handling whose records go there decided (or announced a
    decision again). ``writes``: the table writes of the event being handled so far,
    acknowledged (the first failure raised; table_writes.py ``so_far``). ``tenure``: asked
    at the handling, whether the partition of its event is still this worker's when asked
    later (settling.py): a held handling whose partition changed hands meanwhile sends
    nothing (the new owner may have restored the case without the decision, and decides
    the version itself; and its audit links, built on this worker's old head, would fork
    the chain the new owner resynced).

    ``held_apart``: topics whose records concern the cases of other partitions (the
    claims topic: a verdict read on claims partition q admits a declaration of partition
    p); each of their partitions has a line of its own. Every other topic is
    co-partitioned with the cases, and a partition's line is shared by all of them: each
    builds links on that partition's audit chain, and a link built after a held one must
    not reach the lane before it (review stop 38-sf, SF2).

    One line per partition, drained by one task (not a task per record waiting), and
    forgotten once drained (SF3, SF4)."""

    decisions_topic: str
    writes: Callable[[], Awaitable[None]] = _no_writes
    tenure: Callable[[], Callable[[], bool]] = _always_ours
    held_apart: frozenset[str] = frozenset()
    _lines: dict[tuple[str | None, int], _Line] = field(default_factory=dict)

    def hold(
        self,
        source: SourcePosition,
        send: Send,
        records: list[OutgoingRecord],
        links: ChainLinks | None,
    ) -> asyncio.Future[Queueing] | None:
        """Where ``records`` (the event's at ``source``) will be queued, once what they
        wait for is done; None: they wait for nothing, queue them at once."""
        line_of = (source.topic if source.topic in self.held_apart else None, source.partition)
        line = self._lines.get(line_of)
        decided = any(record.topic == self.decisions_topic for record in records)
        if line is None and not decided:
            return None
        held = _Held(
            send,
            records,
            links,
            self.writes() if decided else None,
            self.tenure(),
            asyncio.get_running_loop().create_future(),
        )
        if line is None:
            line = self._lines[line_of] = _Line()
            line.waiting.append(held)
            line.draining = asyncio.ensure_future(self._drain(line_of, line))
        else:
            line.waiting.append(held)
        return held.queued

    def holding(self) -> int:
        """How many partitions have records waiting."""
        return len(self._lines)

    async def _drain(self, line_of: tuple[str | None, int], line: _Line) -> None:
        try:
            while line.waiting:
                held = line.waiting[0]
                try:
                    queued = await _in_turn(held)
                except asyncio.CancelledError:
                    if _being_cancelled():
                        raise
                    held.queued.cancel()  # a write cancelled: never sent, as a failure
                except BaseException as failure:  # noqa: BLE001 - its own settling's
                    held.queued.add_done_callback(_retrieved)  # its settling may be gone
                    held.queued.set_exception(failure)
                else:
                    held.queued.set_result(queued)
                line.waiting.popleft()
        finally:
            # No await since the line was found empty: a handling appends to a line that
            # drains, or finds none and starts one.
            if self._lines.get(line_of) is line:
                del self._lines[line_of]
            for held in line.waiting:  # the drain itself cancelled (the worker stops)
                _close(held.writes)
                held.queued.cancel()


async def _in_turn(held: _Held) -> Queueing:
    """Once the handlings before it are queued: ``held``'s records queued, once its
    table writes are acknowledged if it decided."""
    if held.writes is not None:
        try:
            await held.writes
        except BaseException as failure:
            if isinstance(failure, asyncio.CancelledError) and _being_cancelled():
                raise  # the worker stops: the case may yet be written, the link not
            if not held.ours():
                raise PartitionGivenUp(
                    "its partition changed hands, its case not written"
                ) from failure
            # The trail's head moved past its links when the handler built them, and the
            # partition's later links are built on them: held back, the chain would have a
            # hole there for good. The case stays in this worker's store (its refused write
            # sent again by the next settling), and the record read again announces the
            # same decision, the one the link attests (review stop 38-sf, SF1).
            _hand_links_over(held.records, held.links)
            raise
    if not held.ours():
        raise PartitionGivenUp("its partition changed hands while its records waited")
    return await _queue_with_links(held.send, held.records, held.links)


def _hand_links_over(records: list[OutgoingRecord], links: ChainLinks | None) -> None:
    if links is None:
        return
    chained = [record for record in records if record.topic == links.topic]
    if chained:
        linked = links.send(chained)
        if isinstance(linked, asyncio.Future):
            linked.add_done_callback(_retrieved)  # the settling fails: nobody awaits it


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _close(writes: Awaitable[None] | None) -> None:
    if isinstance(writes, Coroutine):
        writes.close()  # never awaited: the worker stops


async def send_outbox(
    send: Send,
    outbox: Effects,
    source: SourcePosition,
    dlq_topic: str,
    retries: Retries = Retries(),
    *,
    links: ChainLinks | None = None,
    state_first: StateFirst | None = None,
) -> Coroutine[Any, Any, None]:
    """Queue ``outbox`` for the event at ``source``; return what, awaited, completes once
    the broker has every record (or its dead letter) and ``after_delivery`` ran. It must be
    awaited (runtime/settling.py tracks it). ``links``: the audit links' lanes; their
    records go there, and the outbox completes once they are in too. ``state_first``: a
    decision's records wait for the event's table writes (:class:`StateFirst`)."""
    records = pinned(outbox, source.partition)
    if state_first is not None:
        held = state_first.hold(source, send, records, links)
        if held is not None:
            return _settle_once_queued(held, send, outbox, source, dlq_topic, retries)
    queued, linked, records = await _queue_with_links(send, records, links)
    return _settle(send, outbox, records, queued, source, dlq_topic, retries, linked)


async def _queue_with_links(
    send: Send, records: list[OutgoingRecord], links: ChainLinks | None
) -> Queueing:
    """The audit links handed to their lanes and the other records queued: what
    acknowledges each, and the records queued."""
    linked: Awaitable[object] | None = None
    if links is not None and any(record.topic == links.topic for record in records):
        linked = links.send([record for record in records if record.topic == links.topic])
        records = [record for record in records if record.topic != links.topic]
    return await _queue(send, records), linked, records


async def _settle_once_queued(
    queueing: asyncio.Future[Queueing],
    send: Send,
    outbox: Effects,
    source: SourcePosition,
    dlq_topic: str,
    retries: Retries,
) -> None:
    try:
        queued, linked, records = await queueing
    except BaseException:
        _undo(outbox)  # never sent: the record read again announces it again
        raise
    await _settle(send, outbox, records, queued, source, dlq_topic, retries, linked)


async def deliver(
    send: Send,
    outbox: Effects,
    source: SourcePosition,
    dlq_topic: str,
    retries: Retries = Retries(),
) -> None:
    """Send ``outbox`` for the event at ``source``; return once the broker has every
    record (or its dead letter), then run ``after_delivery``."""
    await (await send_outbox(send, outbox, source, dlq_topic, retries))


async def _settle(
    send: Send,
    outbox: Effects,
    records: list[OutgoingRecord],
    queued: Queued,
    source: SourcePosition,
    dlq_topic: str,
    retries: Retries,
    linked: Awaitable[object] | None = None,
) -> None:
    try:
        await _settle_records(send, records, queued, source, dlq_topic, retries)
    except BaseException:
        if isinstance(linked, asyncio.Future):
            linked.add_done_callback(_retrieved)  # nobody awaits it now
        _undo(outbox)
        raise
    if linked is not None:
        try:
            await linked
        except BaseException:
            _undo(outbox)
            raise
    if not ownership.acts_for_its_partition():
        # Delivered, but its partition changed hands meanwhile: what ``after_delivery``
        # records (a case marked announced) is its new owner's to write, and written from
        # here it would land after the owner's own writes (ownership.py).
        _undo(outbox)
        raise PartitionGivenUp(f"{source.describe()} was revoked while its records were sent")
    for confirm in outbox.after_delivery:
        confirm()


def _undo(outbox: Effects) -> None:
    for undo in outbox.if_undelivered:
        undo()


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def _settle_records(
    send: Send,
    records: list[OutgoingRecord],
    queued: Queued,
    source: SourcePosition,
    dlq_topic: str,
    retries: Retries,
) -> None:
    attempts, backoff_s, max_backoff_s = retries.attempts, retries.backoff_s, retries.max_backoff_s
    pending = records
    undeliverable: list[tuple[OutgoingRecord, BaseException]] = []
    for tried in range(attempts):
        outcomes = await _outcomes(queued) if tried == 0 else await attempt(send, pending)
        failed = [(r, e) for r, e in zip(pending, outcomes, strict=True) if e is not None]
        undeliverable += [(r, e) for r, e in failed if not _retriable(e)]
        pending = [r for r, e in failed if _retriable(e)]
        if not pending:
            break
        delay = min(max_backoff_s, backoff_s * 2**tried) * random.uniform(0.5, 1.0)  # noqa: S311
        log.warning(
            "%d record(s) not yet acknowledged (%s); retrying in %.2fs",
            len(pending),
            type(failed[0][1]).__name__,
            delay,
        )
        await asyncio.sleep(delay)
    else:
        raise DeliveryFailed(f"{len(pending)} record(s) refused after {attempts} attempts")
    if undeliverable:
        await _dead_letter_undeliverable(send, undeliverable, source, dlq_topic)


async def _dead_letter_undeliverable(
    send: Send,
    refused: Sequence[tuple[OutgoingRecord, BaseException]],
    source: SourcePosition,
    dlq_topic: str,
) -> None:
    """Records the broker will never take: dead-lettered (a dead letter always fits)."""
    letters = Effects()
    for record, error in refused:
        log.error(
            "record for %s refused by the broker (%s): dead-lettered",
            record.topic,
            type(error).__name__,
        )
        metrics.DEAD_LETTERS.labels(kind=UNDELIVERABLE).inc()
        add_dead_letter(
            letters,
            dlq_topic,
            record.value,
            error_class=ErrorClass.PERMANENT,
            kind=UNDELIVERABLE,
            reason=f"{type(error).__name__} sending to {record.topic}: {error}",
            source=source,
            component=COMPONENT,
        )
    outcomes = await attempt(send, pinned(letters, source.partition))
    for outcome in outcomes:
        if outcome is not None:
            raise DeliveryFailed(f"a dead letter was refused too: {outcome!r}")
