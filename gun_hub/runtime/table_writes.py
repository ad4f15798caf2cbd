"""Table writes a record caused, awaited before the record is marked handled.

faust sends each table write to the table's changelog through its producer buffer and
never waits for it: ``Table.on_key_set`` drops the future. Before committing, faust
flushes that buffer but gives up after 0.1 s without a send (``flush_atmost``), and a
write the broker refused is only logged. So a record could be committed over while the
write of its case was still on its way, or lost: after a crash the worker restored a
table without the case, though its requests had left (found by review in stop 30).

Here the hub's tables keep each write's future by the event that made it (faust's
``current_event()``, a stand-in event for work outside one, faust_app.py
``as_if_handling``); the settling of a record (settling.py) awaits them, with those made
while it settles (``after_delivery``), before the record is marked handled. Keyed
weakly: the writes of an event are forgotten with it.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import faust
from faust.types import FutureMessage

_WRITES: weakref.WeakKeyDictionary[object, list[FutureMessage]] = weakref.WeakKeyDictionary()


class WriteAwaitedTable(faust.Table):  # type: ignore[misc]
    """faust's table, each changelog write kept for the settling of its event."""

    def send_changelog(self, *args: Any, **kwargs: Any) -> FutureMessage:
        sent: FutureMessage = super().send_changelog(*args, **kwargs)
        event = faust.current_event()
        if event is not None:
            _WRITES.setdefault(event, []).append(sent)
        return sent


def pending(event: object) -> bool:
    """Whether ``event`` made table writes the broker has not acknowledged yet (or
    refused: ``written`` raises why)."""
    return event is not None and any(not _acknowledged(w) for w in _WRITES.get(event, ()))


def _acknowledged(write: FutureMessage) -> bool:
    return write.done() and not write.cancelled() and write.exception() is None


async def written(event: object) -> None:
    """Until every table write ``event`` made is acknowledged by the broker, those made
    meanwhile included; raise the first failure.

    Every record settled within one event waits for all of that event's writes (a
    verdict admitting several declarations: each waits for the others' too), never for
    only those not yet awaited by another: so none is marked before its own write."""
    writes = _WRITES.get(event) if event is not None else None
    awaited = 0
    while writes is not None and awaited < len(writes):
        batch, awaited = writes[awaited:], len(writes)
        await asyncio.gather(*batch)
