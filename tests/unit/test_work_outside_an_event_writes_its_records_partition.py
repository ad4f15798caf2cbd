"""Work the hub does outside any event writes its tables as if it handled its record
(gun_hub/runtime/faust_app.py ``as_if_handling``).

faust finds the partition of a table write (its changelog's, its store's) from the event
being handled, ``faust.current_event()`` (``Table.partition_for_key``, the RocksDB
store's ``_set``), and refuses a write without one: "Cannot modify table key from outside
of stream iteration". The admission recheck runs on a timer: a declaration it released
(held only for offsets that turned out to hold nothing, such as a transaction's commit
marker) was decided outside any event, its first table write raised that TypeError, and
the valid declaration was dead-lettered as unhandled. Found by review in stop 30.
"""

from __future__ import annotations

import asyncio

import faust
from faust.types import EventT

from gun_hub.runtime.faust_app import as_if_handling

TOPIC = "gun.declarations"


async def test_within_the_tables_see_the_record_s_topic_and_partition() -> None:
    assert faust.current_event() is None  # outside any event: faust would refuse a write
    with as_if_handling(TOPIC, 3, 41):
        event = faust.current_event()
        assert event is not None
        assert (event.message.topic, event.message.partition) == (TOPIC, 3)
    assert faust.current_event() is None  # only within


async def test_a_task_started_within_that_holds_the_event_sees_it() -> None:
    """The settling of the record's deliveries runs in a task of its own and writes the
    case once the broker has its decision; faust keeps the event by a weak reference, so
    the settling holds it meanwhile (runtime/settling.py)."""
    seen: list[int] = []

    async def later(held: EventT) -> None:
        await asyncio.sleep(0)
        event = faust.current_event()
        assert event is held
        seen.append(event.message.partition)

    with as_if_handling(TOPIC, 5, 7):
        task = asyncio.ensure_future(later(faust.current_event()))
    await task
    assert seen == [5]
