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
(faust_app.py ``before_revoking``), it stops, no more links are taken for the partition
(an agent finishing the event in hand would build on this worker's old head), and the
producer is flushed, so that a batch it was handed is in before the next owner reads
the tail (found by review in stop 32: a batch landing after that resync forked the chain).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from gun_contract.effects import OutgoingRecord
from gun_contract.kafka.client import ClientConfig

log = logging.getLogger(__name__)

BATCH = 200  # links in one record batch at most (a resync reads more than this)
BATCH_BYTES = 256 * 1024  # and at most this many bytes of them (the producer's batch: 1 MiB)

# Sends ``links`` (all of one partition) as one record batch; what completes once the
# broker has appended it.
SendBatch = Callable[[int, list[OutgoingRecord]], Awaitable[Awaitable[Any]]]


@dataclass
class _Lane:
    queued: list[tuple[OutgoingRecord, asyncio.Future[None]]] = field(default_factory=list)
    sending: list[tuple[OutgoingRecord, asyncio.Future[None]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class AuditLanes:
    def __init__(
        self,
        topic: str,
        send_batch: SendBatch,
        flush: Callable[[], Awaitable[None]],
        *,
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.topic = topic
        self._send_batch = send_batch
        self._flush = flush
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._lanes: dict[int, _Lane] = {}
        self._open: set[int] = set()

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
        cancel what they were given (its events are read again by the next owner), and
        flush the producer, so that a batch it was handed is in before that owner reads
        the tail."""
        self._open -= set(partitions)
        stopped = False
        for partition in partitions:
            lane = self._lanes.pop(partition, None)
            if lane is None:
                continue
            stopped = True
            if lane.task is not None:
                lane.task.cancel()
                await asyncio.wait([lane.task])  # its end; a cancellation of ours is raised
            for _, future in lane.sending + lane.queued:
                future.cancel()
        if stopped:
            await self._flush()

    async def stop(self) -> None:
        """Give every partition up (the worker stops): open ones without a lane too."""
        await self.give_up(set(self._lanes) | self._open)

    async def _run(self, partition: int, lane: _Lane) -> None:
        while lane.queued:
            lane.sending, lane.queued = _batch(lane.queued)
            await self._deliver(partition, [link for link, _ in lane.sending])
            for _, future in lane.sending:
                if not future.done():
                    future.set_result(None)
            lane.sending = []

    async def _deliver(self, partition: int, links: list[OutgoingRecord]) -> None:
        """Until the broker has appended ``links`` (one record batch, whole)."""
        tries = 0
        while True:
            try:
                await (await self._send_batch(partition, links))
            except asyncio.CancelledError:
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
    """A producer of the hub's own for the audit links: each lane batch one Kafka record
    batch (aiokafka ``send_batch``), appended by the broker whole or not at all. Made and
    started at its first batch (aiokafka makes its clients inside the running loop)."""

    def __init__(self, connect: ClientConfig, topic: str) -> None:
        self._connect = connect
        self._topic = topic
        self._producer: AIOKafkaProducer | None = None
        self._started: asyncio.Task[None] | None = None

    async def _ready(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._producer = AIOKafkaProducer(
                **self._connect.options(),
                client_id="gun-hub-audit-links",
                acks="all",
                # A batch not appended within this is failed (and sent again by its lane):
                # what bounds the flush of a give-up, well within a rebalance's patience.
                request_timeout_ms=15_000,
                max_batch_size=4 * BATCH_BYTES,
                max_request_size=4 * BATCH_BYTES,
            )
        started = self._started
        if started is None or (started.done() and (started.cancelled() or started.exception())):
            started = self._started = asyncio.ensure_future(self._producer.start())
        await asyncio.shield(started)
        return self._producer

    async def send_batch(self, partition: int, links: list[OutgoingRecord]) -> Awaitable[Any]:
        producer = await self._ready()
        batch = producer.create_batch()
        for link in links:
            appended = batch.append(
                timestamp=None, key=link.key, value=link.value, headers=link.headers
            )
            if appended is None:  # cannot happen under BATCH_BYTES; never half a batch
                raise ValueError(f"{len(links)} audit links do not fit one record batch")
        sent: Awaitable[Any] = await producer.send_batch(batch, self._topic, partition=partition)
        return sent

    async def flush(self) -> None:
        started = self._started
        ready = (
            started is not None
            and started.done()
            and not started.cancelled()
            and started.exception() is None
        )
        if self._producer is not None and ready:
            await self._producer.flush()

    async def stop(self) -> None:
        if self._producer is not None and self._started is not None:
            await self._producer.stop()
