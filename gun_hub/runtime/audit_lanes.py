"""Audit links reach the audit topic in chain order: one lane per audit partition.

Each link names the one before it (security/audit.py), so the audit topic must hold every
link before any link built on it. Sent in each event's outbox like any record, they did
not (found by review in stop 32): a delivery that failed for good stopped the agent, its
supervisor started it again in the same process with the same head, and the next link
pointed at one never written, a hole no restart repairs; a link the broker refused
outright was dead-lettered and the chain went on past it; a link retried by the delivery
could land after the links built on it, even after a resync.

So each audit partition has one lane here. Its links leave in order, a batch at a time,
each batch one Kafka record batch (appended whole or not at all, sent again whole: a
link retried can never land after the ones that follow it, nor be missing behind them);
the next batch only once the broker has the last; a batch the broker does not take is
sent again without end (logged: the hub must not decide without its audit), never
dead-lettered; and what a lane was given completes only once its batch is in, so no
event is marked handled (and committed over) while a link before its own is missing.
The topic holds a prefix of each chain (and exact copies of a batch sent again, which
verify takes as one).

A lane takes links only for the partitions it was opened for (at assignment, once the
chain is resynced). Given up at a revocation, before faust waits for its agents
(faust_app.py ``before_revoking``), it stops and no more links are taken for the
partition (an agent finishing the event in hand would build on this worker's old head).

Only the partition's owner may add to its chain. Each audit partition has a transactional
producer of its own (:class:`AuditLinkProducer`, one transaction per batch), taken at
assignment before the chain is resynced: taking it fences any former owner's and ends its
open transaction, so that a worker expelled from its group (a long pause, a network cut)
cannot append from its old head after the next owner read the tail, and a batch its
producer gave up on cannot land after that resync (both forks left open by stop 32); the
trail's readers read committed records only.

A lane fenced does not take its producer again at once: taken by a worker that has not
yet heard it was expelled, it would fence the rightful owner and append from the old head
(ADR 0019). The fence does not say who fenced it: another worker taking the partition, or
the transaction coordinator aborting a transaction older than its timeout (the broker
frozen or unreachable that long: review stop 39-Z, Z1, where every fence was read as the
first and the worker crashed, its log naming a worker that did not exist). The group
tells them apart (transactions.py ``RETAKE_FENCED_AFTER_S``): a lane whose partition is
still assigned here 30 s later takes it again (``retake``: a new producer, whose
InitProducerId ends the aborted transaction, then the committed tail read) and goes on
with the links it holds, nothing cancelled: the batch whose commit was refused is sent
again (or not, when the tail holds it after all), then what was built on it. A tail that
does not lead to those links (another worker wrote meanwhile), or a retake that fails,
loses the lane: what it was given is cancelled, and the worker is told (``on_lost``; the
hub crashes it, and it starts again, rejoins its group and resyncs what it is given).

A taking under way when its partition is revoked is given up (letting the partition go
cancels it): aiokafka retries InitProducerId until the coordinator answers, and a slow
coordinator took the old owner's after the next owner's, fencing the rightful owner,
which crashed, and its restart caused another rebalance (found by review, stop 36). And a
lane fenced once its partition is no longer this worker's (given up, or no longer
assigned to it by the group) gives the partition up without telling the worker: the
newer owner is the rightful one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import ProducerFenced
from aiokafka.producer.message_accumulator import BatchBuilder

from gun_contract.effects import OutgoingRecord
from gun_contract.kafka.client import ClientConfig
from gun_hub.runtime.transactions import (
    RETAKE_FENCED_AFTER_S,
    TRANSACTION_RETRY_BACKOFF_MS,
    fenced_by_its_coordinator,
    fenced_while_assigned,
    paced,
    producer_is_broken,
    retaken_after_a_fence,
    retrieve_fatal_error,
)

log = logging.getLogger(__name__)

BATCH = 200  # links in one record batch at most (a resync reads more than this)
BATCH_BYTES = 256 * 1024  # and at most this many bytes of them (the producer's batch: 1 MiB)
# A give-up waits this long for a lane to end before it cancels it again, and for the
# producers it lets go to stop; what is still stopping then stops in the background.
GIVE_UP_WAIT_S = 1.0
# How long a lane's transaction may stay open before its coordinator aborts it (and fences
# its producer): aiokafka's default, the broker's ``transaction.max.timeout.ms`` too.
TRANSACTION_TIMEOUT_MS = 60_000

# Appends ``links`` (all of one partition) as one record batch, in a transaction of the
# partition's producer; returns once it is committed.
SendBatch = Callable[[int, list[OutgoingRecord]], Awaitable[None]]
# Told that a partition's lane stopped for good (its producer fenced).
OnLost = Callable[[int, BaseException], Awaitable[None]]
# Whether the group still assigns a partition to this worker.
Owns = Callable[[int], bool]
# Takes a partition's producer again after a fence by its transaction coordinator and
# tells how many of the links the lane held (the batch whose commit was refused) the topic
# already holds; AuditLaneLost when the chain went on without them (audit_resync.py
# ``retaker``).
Retake = Callable[[int, Sequence[bytes]], Awaitable[int]]


# Why a lane's producer can no longer write: the fence does not say by whom.
FENCED = (
    "producer fenced (another worker took the partition, or the transaction coordinator "
    "aborted a transaction older than its timeout)"
)


def _always(_partition: int) -> bool:
    return True


class AuditLaneLost(Exception):
    """This worker can no longer add to ``partition``'s chain with the producer it has:
    fenced (another worker took the partition, or the transaction coordinator aborted a
    transaction older than its timeout) or broken. Taking a new one at once could fence
    the rightful owner: the lane waits to see whether the group still assigns it here."""

    def __init__(self, partition: int, reason: str = FENCED) -> None:
        super().__init__(f"audit partition {partition}: {reason}")
        self.partition = partition
        self.reason = reason


class AuditTakingGivenUp(Exception):
    """The taking of these partitions' producers was given up before it was done (their
    producers let go: a revocation); no producer of theirs is kept."""

    def __init__(self, partitions: Collection[int]) -> None:
        super().__init__(f"audit partitions {sorted(partitions)}: taking given up")
        self.partitions = sorted(partitions)


@dataclass
class _Lane:
    queued: list[tuple[OutgoingRecord, asyncio.Future[None]]] = field(default_factory=list)
    sending: list[tuple[OutgoingRecord, asyncio.Future[None]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    began: float = float("-inf")  # when its last transaction began (the loop's clock)


class AuditLanes:
    def __init__(
        self,
        topic: str,
        send_batch: SendBatch,
        release: Callable[[Collection[int]], Awaitable[None]],
        *,
        on_lost: OnLost,
        owns: Owns = _always,
        retake: Retake | None = None,
        retake_fenced_after_s: float = RETAKE_FENCED_AFTER_S,
        interval_s: float = 0.0,
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
    ) -> None:
        """``interval_s``: a lane begins a transaction at most this often; what it is
        given meanwhile goes into its next one (a full batch does not wait). ``owns``:
        whether the group still assigns a partition here; a lane fenced when it does not
        gives the partition up without ``on_lost``. ``retake``: a lane fenced while its
        partition is assigned here, and still ``retake_fenced_after_s`` later, takes it
        again with it and goes on (fenced by its transaction coordinator, not by another
        worker); None: such a lane is lost at once (``on_lost``)."""
        self.topic = topic
        self._send_batch = send_batch
        self._release = release
        self._on_lost = on_lost
        self._owns = owns
        self._retake = retake
        self._retake_fenced_after_s = retake_fenced_after_s
        self._interval_s = interval_s
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._lanes: dict[int, _Lane] = {}
        self._open: set[int] = set()
        self._fenced: set[int] = set()  # waiting to see who fenced them (readiness)
        self.revocations = 0  # partitions given up so far, counted by give-up

    def fenced(self) -> list[int]:
        """The partitions whose lanes, fenced while assigned here, wait to be taken again
        (their links wait with them: the worker is not processing those partitions)."""
        return sorted(self._fenced)

    def open(self, partitions: Collection[int]) -> None:
        """Take links for ``partitions`` (assigned, their chains resynced)."""
        self._open |= set(partitions)

    def send(self, links: Sequence[OutgoingRecord]) -> asyncio.Future[list[None]]:
        """Queue ``links`` (each on its partition, in chain order); what completes once
        the broker has them and every link queued before them (cancelled: a partition
        not open, or given up)."""
        loop = asyncio.get_running_loop()
        taken: list[asyncio.Future[None]] = []
        for link in links:
            if link.partition is None:
                raise ValueError("an audit link names its partition")
            future: asyncio.Future[None] = loop.create_future()
            taken.append(future)
            if link.partition not in self._open:
                future.cancel()  # its event is read again by the partition's owner
                continue
            lane = self._lanes.setdefault(link.partition, _Lane())
            lane.queued.append((link, future))
            if lane.task is None or lane.task.done():
                lane.task = asyncio.ensure_future(self._run(link.partition, lane))
        return asyncio.gather(*taken)

    async def give_up(self, partitions: Collection[int]) -> None:
        """Stop the lanes of ``partitions`` (being revoked): take no more links for them,
        cancel what they were given (its events are read again by the next owner), and let
        their producers go (a batch one holds is the next owner's to end: taking the
        partition aborts it before the resync)."""
        self.revocations += 1  # a takeover in progress opens no lane (audit_resync.py)
        self._open -= set(partitions)
        lanes = [lane for p in partitions if (lane := self._lanes.pop(p, None)) is not None]
        try:
            for lane in lanes:
                if lane.task is not None:
                    await _ended(lane.task)
        finally:  # the give-up itself cancelled: what the lanes hold is let go all the same
            for lane in lanes:
                _cancel(lane)
            await self._release(partitions)

    async def stop(self) -> None:
        """Give every partition up (the worker stops): open ones without a lane too."""
        await self.give_up(set(self._lanes) | self._open)

    async def _run(self, partition: int, lane: _Lane) -> None:
        while True:
            try:
                await self._send_all(partition, lane)
            except AuditLaneLost as lost:
                if not await self._taken_again(partition, lane, lost):
                    return
            else:
                return

    async def _send_all(self, partition: int, lane: _Lane) -> None:
        while lane.queued:
            # Only the settling of the links' events waits, not their decisions.
            full = len(lane.queued) >= BATCH
            lane.began = await paced(lane.began, self._interval_s, full=full)
            lane.sending, lane.queued = _batch(lane.queued)
            await self._deliver(partition, [link for link, _ in lane.sending])
            for _, future in lane.sending:
                if not future.done():
                    future.set_result(None)
            lane.sending = []

    async def _taken_again(self, partition: int, lane: _Lane, lost: AuditLaneLost) -> bool:
        """Whether the lane, its producer fenced (or broken), goes on with a new one.

        Given up meanwhile, or no longer assigned here: the next owner is the rightful
        one (its links cancelled, its events read again by that owner). Still assigned:
        the fence does not say who fenced it, the group does (transactions.py
        ``RETAKE_FENCED_AFTER_S``): still assigned that much later, the transaction
        coordinator fenced it (a transaction older than its timeout: the broker stalled or
        unreachable that long; review stop 39-Z, Z1, where the worker crashed and its log
        blamed a worker that did not exist). The partition is then taken again
        (``retake``), and what the lane holds goes on, nothing of it cancelled: the links
        of the aborted batch are sent again, unless the topic holds them after all; later
        links were built on them. A retake that fails, or a chain on the topic that went
        on without those links (a worker expelled that never heard of it: another one
        wrote), loses the lane (``on_lost``: the hub crashes the worker, which starts
        again and resyncs), as a lane without ``retake`` is at once."""
        if self._lanes.get(partition) is not lane:  # given up meanwhile (a revocation)
            _cancel(lane)
            log.warning(
                "audit partition %d fenced as it was given up: its next owner's (%s)",
                partition,
                lost,
            )
            return False
        if not self._still_owned(partition):
            await self._given_away(partition, lane)
            return False
        if self._retake is None:
            await self._lose(partition, lane, lost)
            return False
        what = f"audit partition {partition}"
        log.warning(
            "%s; %d link(s) held%s",
            fenced_while_assigned(what, self._retake_fenced_after_s),
            len(lane.sending) + len(lane.queued),
            "" if lost.reason == FENCED else f" ({lost.reason})",
        )
        self._fenced.add(partition)
        try:
            by_its_coordinator = await fenced_by_its_coordinator(
                lambda: self._lanes.get(partition) is lane and self._still_owned(partition),
                self._retake_fenced_after_s,
            )
        finally:
            self._fenced.discard(partition)
        if not by_its_coordinator:
            if self._lanes.get(partition) is lane:
                await self._given_away(partition, lane)
            else:
                _cancel(lane)  # given up meanwhile (its give-up cancels this wait anyway)
            return False
        log.warning(retaken_after_a_fence(what, self._retake_fenced_after_s))
        held = [link.value for link, _ in lane.sending]
        try:
            landed = await self._retake(partition, held)
        except asyncio.CancelledError:
            raise  # given up meanwhile: the give-up cancels what the lane holds
        except Exception as failure:  # noqa: BLE001 - the worker is told, as before
            if self._lanes.get(partition) is lane:
                await self._lose(partition, lane, failure)
            else:
                _cancel(lane)  # given up meanwhile: its next owner's
            return False
        for _, future in lane.sending[:landed]:
            if not future.done():
                future.set_result(None)
        # Sent again first, in chain order: the links queued since were built on them.
        lane.queued = lane.sending[landed:] + lane.queued
        lane.sending = []
        log.warning(
            "%s taken again: %d link(s) of the batch its fenced producer held were on the "
            "topic, %d sent again, then %d queued since",
            what,
            landed,
            len(held) - landed,
            len(lane.queued) - (len(held) - landed),
        )
        return True

    def _close(self, partition: int, lane: _Lane) -> None:
        """No more links for ``partition`` until it is opened again."""
        if self._lanes.get(partition) is lane:  # not a lane opened since
            del self._lanes[partition]
            self._open.discard(partition)

    async def _given_away(self, partition: int, lane: _Lane) -> None:
        """The group gave the partition to another worker already (its revocation still
        to come): that owner is the rightful one; crashing would only cause another
        rebalance (found by review, stop 36)."""
        _cancel(lane)
        self._close(partition, lane)
        log.warning(
            "audit partition %d fenced by its next owner (no longer assigned here): "
            "given up, its links are the next owner's",
            partition,
        )
        await self._release([partition])

    async def _lose(self, partition: int, lane: _Lane, lost: BaseException) -> None:
        _cancel(lane)
        self._close(partition, lane)
        log.error(
            "audit partition %d lost (%s): its links are the next owner's",
            partition,
            lost,
            exc_info=lost,
        )
        await self._on_lost(partition, lost)

    def _still_owned(self, partition: int) -> bool:
        """``owns``, and owned when it cannot say (the worker is told, as before)."""
        try:
            return self._owns(partition)
        except Exception:
            log.exception("audit partition %d: whether it is still assigned is unknown", partition)
            return True

    async def _deliver(self, partition: int, links: list[OutgoingRecord]) -> None:
        """Until the broker has appended ``links`` (one record batch, whole)."""
        tries = 0
        while True:
            try:
                await self._send_batch(partition, links)
            except (asyncio.CancelledError, AuditLaneLost):
                raise
            except Exception as error:  # noqa: BLE001 - dropped, its links would be holes
                failure = error
            else:
                return
            delay = min(self._max_backoff_s, self._backoff_s * 2**tries)
            tries += 1
            log.log(
                logging.WARNING if tries < 8 else logging.ERROR,
                "audit partition %d: %d link(s) not taken by the broker (%s, try %d); "
                "sent again in %.2fs, nothing after them before",
                partition,
                len(links),
                type(failure).__name__,
                tries,
                delay,
            )
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311


async def _ended(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` until it ends, a bounded wait at a time. Cancelled in its
    transaction, a lane aborts it, and aiokafka's abort waits for the batch already sent,
    which a transactional producer never expires while the partition's leader is away:
    a revocation (and faust's, behind it) hung there (found by review in stop 33). A
    cancellation again interrupts that wait; the next owner's taking ends the
    transaction."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=GIVE_UP_WAIT_S)


def _cancel(lane: _Lane) -> None:
    for _, future in lane.sending + lane.queued:
        future.cancel()


def _batch(
    queued: list[tuple[OutgoingRecord, asyncio.Future[None]]],
) -> tuple[
    list[tuple[OutgoingRecord, asyncio.Future[None]]],
    list[tuple[OutgoingRecord, asyncio.Future[None]]],
]:
    """The first links of ``queued`` that fit one record batch (at least one), the rest."""
    size, count = 0, 0
    for link, _ in queued[:BATCH]:
        size += len(link.value) + sum(len(k) + len(v) for k, v in link.headers) + 64
        if count and size > BATCH_BYTES:
            break
        count += 1
    return queued[:count], queued[count:]


class AuditLinkProducer:
    """The audit lanes' producers: one transactional producer per audit partition this
    worker owns, each lane batch one transaction holding one Kafka record batch (appended
    whole or not at all, visible to the trail's readers only once committed).
    Transactional ids ``<prefix>-<partition>``: the partition's owner, whichever worker
    it is, uses the same one, which is what fences a former owner."""

    def __init__(
        self,
        connect: ClientConfig,
        topic: str,
        transactional_prefix: str,
        *,
        transaction_timeout_ms: int = TRANSACTION_TIMEOUT_MS,
    ) -> None:
        self._connect = connect
        self._topic = topic
        self._prefix = transactional_prefix
        self._transaction_timeout_ms = transaction_timeout_ms
        self._producers: dict[int, AIOKafkaProducer] = {}
        self._taking: dict[int, asyncio.Task[None]] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    @staticmethod
    def transactional_id_of(prefix: str, partition: int) -> str:
        return f"{prefix}-{partition}"

    def transactional_id(self, partition: int) -> str:
        return self.transactional_id_of(self._prefix, partition)

    async def take(self, partitions: Collection[int]) -> None:
        """Own ``partitions``' chains from now on: any former owner's producer is fenced
        and its open transaction ended (committed or aborted, before this returns), so the
        tail read next is all that will ever precede this worker's links.

        Each partition is taken in a task of its own, which letting the partition go
        (:meth:`release`, at a revocation) cancels: its InitProducerId, retried until the
        coordinator answers, must not land after the next owner's and fence it (found by
        review, stop 36). :class:`AuditTakingGivenUp` when one was."""
        await self.release(partitions)  # a stale one of ours is fenced too: never reused
        wanted = list(partitions)
        takings = []
        for partition in wanted:
            taking = asyncio.create_task(self._take_one(partition))
            self._taking[partition] = taking
            taking.add_done_callback(functools.partial(self._taken, partition))
            takings.append(taking)
        outcomes = await asyncio.gather(*takings, return_exceptions=True)
        given_up = [
            p
            for p, o in zip(wanted, outcomes, strict=True)
            if isinstance(o, asyncio.CancelledError)
        ]
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(
                outcome, asyncio.CancelledError
            ):
                raise outcome
        if given_up:
            raise AuditTakingGivenUp(given_up)

    def _taken(self, partition: int, taking: asyncio.Task[None]) -> None:
        if self._taking.get(partition) is taking:
            del self._taking[partition]

    async def _take_one(self, partition: int) -> None:
        producer = AIOKafkaProducer(
            **self._connect.options(),
            client_id=f"gun-hub-audit-links-{partition}",
            transactional_id=self.transactional_id(partition),
            enable_idempotence=True,
            acks="all",
            retry_backoff_ms=TRANSACTION_RETRY_BACKOFF_MS,  # transactions.py
            # A request unanswered this long is retried; a batch it sent is never expired
            # (transactional): its lane waits, and a transaction older than the
            # coordinator's timeout (60 s) is aborted and this producer fenced, which stops
            # the worker (it starts again and resyncs).
            request_timeout_ms=15_000,
            max_batch_size=4 * BATCH_BYTES,
            max_request_size=4 * BATCH_BYTES,
            transaction_timeout_ms=self._transaction_timeout_ms,
        )
        try:
            await producer.start()  # init_transactions: fences, ends the former's
        except BaseException:
            await producer.stop()
            raise
        if self._taking.get(partition) is not asyncio.current_task():
            await producer.stop()  # let go meanwhile: never kept
            raise asyncio.CancelledError
        self._producers[partition] = producer

    async def send_batch(self, partition: int, links: list[OutgoingRecord]) -> None:
        producer = self._producers.get(partition)
        if producer is None or producer_is_broken(producer):
            raise AuditLaneLost(partition, "no usable producer (not taken, or broken)")
        batch = producer.create_batch()
        for link in links:
            appended = batch.append(
                timestamp=None, key=link.key, value=link.value, headers=link.headers
            )
            if appended is None:  # cannot happen under BATCH_BYTES; never half a batch
                raise ValueError(f"{len(links)} audit links do not fit one record batch")
        try:
            async with producer.transaction():
                await self._append(producer, batch, partition)
        except Exception as failure:
            if isinstance(failure, ProducerFenced) or producer_is_broken(producer):
                retrieve_fatal_error(producer)
                reason = (
                    FENCED
                    if isinstance(failure, ProducerFenced)
                    else f"producer in a fatal state ({type(failure).__name__})"
                )
                raise AuditLaneLost(partition, reason) from failure
            raise  # aborted: nothing of it is visible; its lane sends it again

    async def _append(
        self, producer: AIOKafkaProducer, batch: BatchBuilder, partition: int
    ) -> None:
        """``batch`` appended, inside its transaction. Awaited before the commit:
        aiokafka commits a transaction whose produce the broker refused (publisher.py)."""
        await (await producer.send_batch(batch, self._topic, partition=partition))

    async def release(self, partitions: Collection[int]) -> None:
        """Let the producers of ``partitions`` go (revoked, or the worker stops), waiting
        at most ``GIVE_UP_WAIT_S`` for them to stop: aiokafka's stop flushes what a
        producer holds, which it never expires while the partition's leader is away (the
        next owner's taking ends an open transaction; a batch of the old epoch is refused
        once it did). A taking of one under way is cancelled (:meth:`take`)."""
        stopping: list[asyncio.Future[None]] = []
        for partition in partitions:
            taking = self._taking.pop(partition, None)
            if taking is not None and not taking.done():
                taking.cancel()  # its InitProducerId no longer retried
                stopping.append(taking)
        for partition in partitions:
            producer = self._producers.pop(partition, None)
            if producer is not None:
                stop = asyncio.ensure_future(producer.stop())
                stop.add_done_callback(_stopped)
                self._stopping.add(stop)
                stop.add_done_callback(self._stopping.discard)
                stopping.append(stop)
        if stopping:
            await asyncio.wait(stopping, timeout=GIVE_UP_WAIT_S)

    async def stop(self) -> None:
        await self.release(list(self._producers.keys() | self._taking.keys()))
        if self._stopping:  # the worker stops: what still stops gets a last moment
            await asyncio.wait(list(self._stopping), timeout=GIVE_UP_WAIT_S)


def _stopped(stop: asyncio.Future[None]) -> None:
    if not stop.cancelled() and stop.exception() is not None:
        log.info("an audit link producer let go stopped with %r", stop.exception())
