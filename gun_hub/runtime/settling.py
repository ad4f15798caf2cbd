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
from collections.abc import Awaitable, Callable

import faust

from gun_hub.runtime import table_writes

log = logging.getLogger(__name__)


class Settling:
    def __init__(self, limit: int = 1000) -> None:
        self._limit = limit
        self._in_flight = 0
        self._room = asyncio.Event()
        self._room.set()
        self._failure: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()

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
        task = asyncio.ensure_future(self._settle(settled, then, otherwise, faust.current_event()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
    ) -> None:
        try:
            await settled
            await table_writes.written(event)
            then()
        except asyncio.CancelledError:
            otherwise()  # never settled here: whoever reads it next settles it
            raise
        except BaseException as failure:
            log.exception("a delivery failed for good; the agent stops at its next record")
            self._failure = failure
            otherwise()
        finally:
            del event  # no longer needed by the table writes of ``settled``
            self._in_flight -= 1
            self._room.set()
