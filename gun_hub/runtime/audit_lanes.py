"""Audit links reach the audit topic in chain order: one lane per audit partition.

Each link names the one before it (security/audit.py), so the audit topic must hold every
link before any link built on it. Sent in each event's outbox like any record, they did
not (found by review in stop 32): a delivery that failed for good stopped the agent, its
supervisor started it again in the same process with the same head, and the next link
pointed at one never written, a hole no restart repairs; a link the broker refused
outright was dead-lettered and the chain went on past it; a link retried by the delivery
could land after the links built on it, even after a resync.

So each audit partition has one lane here. Its links leave in order, a batch at a time;
the next batch only once the broker has every link of the last; a link the broker does
not take is sent again without end (logged: the hub must not decide without its audit),
never dead-lettered; and what a lane was given completes only once its whole batch is in,
so no event is marked handled (and committed over) while a link before its own is
missing. The topic holds a prefix of the chain; only within the last batch may a link
sent again land after the ones that follow it, which is why a resync takes the highest
link among the last records (security/audit.py ``resync``). A partition given up stops its
lane: its links not yet sent are the next owner's to build again from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from gun_contract.effects import OutgoingRecord
from gun_hub.runtime.delivery import Send, attempt

log = logging.getLogger(__name__)

BATCH = 200  # links sent together at most (a resync reads more than this from the tail)


@dataclass
class _Lane:
    queued: list[tuple[OutgoingRecord, asyncio.Future[None]]] = field(default_factory=list)
    sending: list[tuple[OutgoingRecord, asyncio.Future[None]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class AuditLanes:
    def __init__(
        self, topic: str, send: Send, *, backoff_s: float = 0.1, max_backoff_s: float = 5.0
    ) -> None:
        self.topic = topic
        self._send = send
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._lanes: dict[int, _Lane] = {}

    def send(self, links: Sequence[OutgoingRecord]) -> asyncio.Future[list[None]]:
        """Queue ``links`` (each on its partition, in chain order); what completes once
        the broker has them and every link queued before them."""
        loop = asyncio.get_running_loop()
        taken: list[asyncio.Future[None]] = []
        for link in links:
            if link.partition is None:
                raise ValueError("an audit link names its partition")
            lane = self._lanes.setdefault(link.partition, _Lane())
            future: asyncio.Future[None] = loop.create_future()
            lane.queued.append((link, future))
            taken.append(future)
            if lane.task is None or lane.task.done():
                lane.task = asyncio.ensure_future(self._run(link.partition, lane))
        return asyncio.gather(*taken)

    async def give_up(self, partitions: Collection[int]) -> None:
        """Stop the lanes of ``partitions`` (given up at a rebalance): what they were
        given is cancelled (its events are read again by the partitions' next owner)."""
        for partition in partitions:
            lane = self._lanes.pop(partition, None)
            if lane is None:
                continue
            if lane.task is not None:
                lane.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.task
            for _, future in lane.sending + lane.queued:
                future.cancel()

    async def stop(self) -> None:
        await self.give_up(list(self._lanes))

    async def _run(self, partition: int, lane: _Lane) -> None:
        try:
            while lane.queued:
                lane.sending, lane.queued = lane.queued[:BATCH], lane.queued[BATCH:]
                await self._deliver(partition, [link for link, _ in lane.sending])
                for _, future in lane.sending:
                    if not future.done():
                        future.set_result(None)
                lane.sending = []
        except Exception as error:  # a fault of ours: nothing waits for ever on it
            log.exception("audit lane of partition %d stopped", partition)
            for _, future in lane.sending + lane.queued:
                if not future.done():
                    future.set_exception(error)
            lane.sending, lane.queued = [], []

    async def _deliver(self, partition: int, links: list[OutgoingRecord]) -> None:
        """Until the broker has every one of ``links``."""
        pending = links
        tries = 0
        while pending:
            outcomes = await attempt(self._send, pending)
            failed = [(link, e) for link, e in zip(pending, outcomes, strict=True) if e]
            if not failed:
                return
            pending = [link for link, _ in failed]
            delay = min(self._max_backoff_s, self._backoff_s * 2**tries)
            tries += 1
            log.log(
                logging.WARNING if tries < 8 else logging.ERROR,
                "audit partition %d: %d link(s) not taken by the broker (%s, try %d); "
                "sent again in %.2fs, nothing after them before",
                partition,
                len(pending),
                type(failed[0][1]).__name__,
                tries,
                delay,
            )
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311
