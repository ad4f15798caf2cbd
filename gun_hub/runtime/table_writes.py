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

A write refused for good stops the agent and its record is read again, but the value
stays in the worker's own store: the handler finds its case there and writes nothing, so
the changelog would never get it, and the partition's next owner would restore a table
without it (found by review in stop 31). So a table remembers each key whose write was
refused, the next settling sends the key's current value (or its deletion) again, and
every settling waits for what was sent again until the broker has it (the record that
made it included, whichever record's settling sent it). A partition the worker gives up takes its
refused keys with it: the store drops its copy, and the next owner writes its own.

A write to a changelog partition this worker does not own, or is giving up, is refused
before anything is written (``PartitionGivenUp``, logged): it would land after its new
owner's writes, and the partition's next recovery would restore this worker's stale value
(ownership.py; a settling that outlived its partition wrote one, found by the scale-out
review). faust writes the changelog before the store, so the store is left as it was too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import Any

import faust
import faust.streams as faust_streams
from faust.types import TP, FutureMessage

from gun_hub.runtime.ownership import PartitionGivenUp

log = logging.getLogger(__name__)
_WRITES: weakref.WeakKeyDictionary[object, list[FutureMessage]] = weakref.WeakKeyDictionary()
_WITH_REFUSED_WRITES: weakref.WeakSet[WriteAwaitedTable] = weakref.WeakSet()
# Refused writes sent again and not acknowledged yet: every settling waits for them, not
# only the one that sent them (the record that made one, read again, writes nothing).
_SENT_AGAIN: set[FutureMessage] = set()


class WriteAwaitedTable(faust.Table):  # type: ignore[misc]
    """faust's table, each changelog write kept for the settling of its event, and each
    key whose write was refused sent again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused: set[tuple[int, Any]] = set()  # (partition, key)
        # The changelog partitions this worker owns (None: not told yet, as in tests) and
        # those being revoked: a refusal there is the next owner's business, never sent
        # again from here (this worker's copy may be stale, or gone: a deletion).
        self._owned: set[int] | None = None
        self._revoking: set[int] = set()

    def get(self, key: Any, default: Any = None) -> Any:
        """``key``'s value, or ``default``, from one lookup of the store. faust's own
        (``Mapping.get`` through ``__getitem__``) asks the store whether the key is there
        and then reads it: two RocksDB reads for each of the several table reads a
        declaration makes. The same answer, faust's sensors told as before; a table with
        a ``default`` (none of the hub's) still makes it for a missing key."""
        if self.default is not None:
            return super().get(key, default)
        self.on_key_get(key)
        try:
            return self.data[key]
        except KeyError:
            return default

    def send_changelog(self, partition: int | None, *args: Any, **kwargs: Any) -> FutureMessage:
        if partition is not None and not self._owns(partition):
            log.error(
                "table %s: a write to changelog partition %d refused: not this worker's"
                " (revoked, or being revoked)",
                self.name,
                partition,
            )
            raise PartitionGivenUp(f"{self.name} partition {partition} is not this worker's")
        sent: FutureMessage = super().send_changelog(partition, *args, **kwargs)
        sent.add_done_callback(self._on_write_done)
        event = faust.current_event()
        if event is not None:
            _WRITES.setdefault(event, []).append(sent)
        return sent

    def _on_write_done(self, write: FutureMessage) -> None:
        if write.cancelled() or write.exception() is not None:
            partition = write.message.partition
            if not self._owns(partition):
                return  # refused after its partition was given up (found by review)
            self._refused.add((partition, write.message.key))
            _WITH_REFUSED_WRITES.add(self)

    def _owns(self, partition: int) -> bool:
        owned = self._owned is None or partition in self._owned
        return owned and partition not in self._revoking

    def give_up(self, revoked: set[TP]) -> None:
        """Partitions being revoked (before faust waits for its agents): their refused
        writes are no longer this worker's to send again, nor any refused from now."""
        mine = self.changelog_topic.topics
        self._revoking |= {tp.partition for tp in revoked if tp.topic in mine}
        self._refused = {(p, key) for p, key in self._refused if self._owns(p)}

    def send_refused_again(self) -> None:
        """Send the current value of every key whose write was refused, each once; a
        refusal again is remembered again."""
        refused, self._refused = self._refused, set()
        _WITH_REFUSED_WRITES.discard(self)
        for partition, key in refused:
            if not self._owns(partition):
                continue
            with _looking_in(partition):
                found = key in self.data
                value = self.data[key] if found else None
            if found:
                again = self.send_changelog(partition, key, value)
            else:
                again = self.send_changelog(partition, key, None, value_serializer="raw")
            _SENT_AGAIN.add(again)
            again.add_done_callback(_SENT_AGAIN.discard)  # refused: the key is refused again

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        mine = self.changelog_topic.topics
        self._owned = {tp.partition for tp in assigned if tp.topic in mine}
        self._revoking.clear()
        self._refused = {(p, key) for p, key in self._refused if self._owns(p)}
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)


@dataclass(frozen=True)
class _PartitionOnly:
    partition: int


@dataclass(frozen=True)
class _LookingIn:
    message: _PartitionOnly


@contextlib.contextmanager
def _looking_in(partition: int) -> Iterator[None]:
    """faust's RocksDB store looks a key up in the store of the partition of the event
    being handled, whichever record's settling sends a refused write again."""
    event = _LookingIn(_PartitionOnly(partition))  # held here: faust's reference is weak
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


def pending(event: object) -> bool:
    """Whether ``event`` made table writes the broker has not acknowledged yet (or
    refused: ``written`` raises why), or a refused write is still to be sent again."""
    if event is None:
        return False
    if _SENT_AGAIN or any(table._refused for table in _WITH_REFUSED_WRITES):
        return True
    return any(not _acknowledged(w) for w in _WRITES.get(event, ()))


def _acknowledged(write: FutureMessage) -> bool:
    return write.done() and not write.cancelled() and write.exception() is None


async def written(event: object) -> None:
    """Until every table write ``event`` made is acknowledged by the broker, those made
    meanwhile included; raise the first failure.

    Every record settled within one event waits for all of that event's writes (a
    verdict admitting several declarations: each waits for the others' too), never for
    only those not yet awaited by another: so none is marked before its own write."""
    for table in list(_WITH_REFUSED_WRITES):
        table.send_refused_again()
    if _SENT_AGAIN:
        await asyncio.gather(*_SENT_AGAIN)  # whoever sent them: the record that made one too
    writes = _WRITES.get(event) if event is not None else None
    awaited = 0
    while writes is not None and awaited < len(writes):
        batch, awaited = writes[awaited:], len(writes)
        await asyncio.gather(*batch)


def so_far(event: object) -> Awaitable[None]:
    """Until the table writes ``event`` made so far are acknowledged by the broker (the
    first failure raised): what a decision waits for before it leaves (delivery.py
    ``StateFirst``). Those it makes later (``after_delivery``) are not awaited here."""
    writes = list(_WRITES.get(event, ())) if event is not None else []
    return _all_of(writes)


async def _all_of(writes: list[FutureMessage]) -> None:
    if writes:
        await asyncio.gather(*writes)
