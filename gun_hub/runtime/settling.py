"""Records whose effects are on their way to the broker: the agents' delivery window.

An agent hands each record's effects to the producer (delivery.py ``send_outbox``) and goes
on with the next record; the record is marked handled (runtime/offsets.py: only handled
records are committed over) once the broker acknowledged every effect, its table writes
included (runtime/table_writes.py). So the broker's
round trip is paid once per batch the producer makes instead of once per record, and the
commit rule is unchanged: a record is never committed over before its effects are on the
broker.

The window is bounded (``limit`` records in flight): a slow broker slows the agents down
instead of letting memory grow. A delivery that fails for good (``DeliveryFailed``: the
broker kept refusing) is raised in the agent at its next record, as it was when each
delivery was awaited in line: the worker stops and its restart reads the record again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

import faust
from faust.types import TP

from gun_hub.runtime import ownership, table_writes
from gun_hub.runtime.ownership import PartitionGivenUp

log = logging.getLogger(__name__)


class Settling:
    def __init__(self, limit: int = 1000) -> None:
        self._limit = limit
        self._in_flight = 0
        self._room = asyncio.Event()
        self._room.set()
        self._failure: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Each partition's ownership by this worker, by generation: moved on at each
        # revocation. A partition being revoked (until it is assigned again) has none.
        self._generations: dict[TP, int] = {}
        self._revoking: set[TP] = set()

    def __len__(self) -> int:
        return self._in_flight

    def check(self) -> None:
        """Raise the failure of a delivery that could not be completed, once: the agent
        stops (faust's supervisor starts it again) and the record it could not settle is
        read again (the commit never passes it)."""
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    async def room(self) -> None:
        """Wait until fewer than ``limit`` records are in flight."""
        self.check()
        while self._in_flight >= self._limit:
            self._room.clear()
            await self._room.wait()
            self.check()

    def track(
        self,
        settled: Awaitable[None],
        then: Callable[[], None],
        otherwise: Callable[[], None] = lambda: None,
    ) -> None:
        """Run ``then`` (mark the record handled) once ``settled`` completes and the
        table writes of the event being handled are on the broker (table_writes.py), or
        ``otherwise`` (let go of the record) if either fails for good.

        The settling runs in the context of the event being handled (a task copies it),
        where faust finds the partition a table write goes to; faust keeps that event
        by a weak reference only, so it is held here until the settling is done.
        """
        self._in_flight += 1
        event = faust.current_event()
        still_ours = self.tenure(event)
        task = asyncio.ensure_future(self._settle(settled, then, otherwise, event, still_ours))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def give_up(self, revoked: Iterable[TP]) -> None:
        """Partitions being revoked (before faust waits for the agents to finish the event
        in hand): no settling of their records acts for them any more, those tracked from
        now until they are assigned again included."""
        for tp in revoked:
            self._generations[tp] = self._generations.get(tp, 0) + 1
            self._revoking.add(tp)

    def take(self, assigned: Iterable[TP]) -> None:
        """Partitions assigned: the records read from now on are this worker's to settle."""
        self._revoking.difference_update(assigned)

    def tenure(self, event: object) -> Callable[[], bool]:
        """Whether the partition of ``event``'s record is still this worker's as it is now
        (always, for work outside any event)."""
        message = getattr(event, "message", None)
        if message is None:
            return lambda: True
        tp = TP(message.topic, message.partition)
        if tp in self._revoking:
            return lambda: False
        generation = self._generations.get(tp, 0)
        return lambda: self._generations.get(tp, 0) == generation

    async def drained(self) -> None:
        """Until every record in flight is settled (or one failed)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))
        self.check()

    async def _settle(
        self,
        settled: Awaitable[None],
        then: Callable[[], None],
        otherwise: Callable[[], None],
        event: object,
        still_ours: Callable[[], bool],
    ) -> None:
        ownership.settling_for(still_ours)  # this task's context: asked by delivery.py
        try:
            await settled
            await table_writes.written(event)
            _refuse_if_given_up(still_ours)
            then()
        except asyncio.CancelledError:
            otherwise()  # never settled here: whoever reads it next settles it
            raise
        except BaseException as failure:
            if isinstance(failure, PartitionGivenUp) or not still_ours():
                # Neither settled nor failed here, whatever went wrong: the partition's
                # owner reads the record again (a held declaration's own effects, let go
                # at the revocation, failed its decision's settling and stopped the agent).
                log.info("a record's partition was revoked while it settled; let go")
            else:
                log.exception("a delivery failed for good; the agent stops at its next record")
                self._failure = failure
            otherwise()
        finally:
            del event  # no longer needed by the table writes of ``settled``
            self._in_flight -= 1
            self._room.set()


def _refuse_if_given_up(ours: Callable[[], bool]) -> None:
    if not ours():
        raise PartitionGivenUp("its partition was revoked while it settled")
