"""Retention: a decided, announced case that holds nothing leaves the hot ``cases`` table.

Nothing else ever removes a case, so the table grew by one case per declaration for ever
(issue 12, "bounded state"). A case is *finalised* when it is decided, the broker has
every decision it carries (``Case.unconfirmed`` is empty), it holds no reservation at any
partner (``lifecycle.held_reservations``: a case kept for a control is not finalised) and
nothing waits on it (no ``open-cases`` entry). ``case_retention_s`` after its decision,
such a case is deleted from the table (a changelog tombstone: a restarted worker does not
bring it back) and replaced by a **marker**: the case stripped to what the versions rule
needs (reference, version, stage, outcome, the position it was opened from, the ids of
the requests sent) and to the documents written off that an invalidation gives back
(``lifecycle.written_off``; found by review, stop 36), without the quoted documents,
results or the declarant: a few hundred bytes, sealed with the hub's state key (a
licence written off is confidential). A marker written before then is in clear and has
no documents written off: it still loads, and an invalidation then gives back what it
quotes, as for a declaration the hub never saw (or forgot: after ``decided_marker_s``).

Why a marker, and for how long (``decided_marker_s``):
- A declaration record about the reference may still come after the sweep: a stale
  version the clearance system sent late, a version waiting in a backlog, the record that
  opened the case read again (a lost commit, a redrive). Without anything for its
  reference the intake would take it as NEW: requests again, and a second decision for a
  version already decided. With the marker, the intake classifies it exactly as with the
  case (``STALE``: ignored and recorded; ``REDELIVERED``: already decided, nothing sent),
  and a higher version supersedes it as it would the case (nothing held, nothing carried).
- Such a record is on the declarations topic, which keeps records for 7 days
  (``topics.py``); Kafka deletes a segment only once its newest record is that old, and a
  segment rolls after the same time, so a record can be read up to about twice the
  retention after it was appended. A copy of a record the hub already read is refused by
  the replay memory while it could be fresh, and as expired after (ADR 0008). The marker
  is therefore kept ``decided_marker_s`` (default 14 days) after the sweep; a record
  appended more than that after the decision is a new message from the clearance system
  naming an old version, which the hub no longer knows: that is the limit of the rule.
- A late answer to a request of the case (a write-off replayed after a partner was down
  for days) is still solicited (the marker keeps the request ids); its status is recorded,
  and a confirmed write-off is counted with the quantities the marker remembers written
  off (``correlation._quoted``; review stop 37-s, F6).

Memory: none that grows with the table. The worker keeps every entry's key in due order
on its disk (``RetentionIndex`` over ``runtime/due_keys.py``), written as entries are and
read from the table only when its partitions change; the table holds one small entry per
retained case and per marker, on disk.

The sweep that finds due entries runs on a timer (``gun_hub/runtime/retention_sweep.py``) and,
like the deadline sweep, only sends a tick on the deadlines topic to the case's partition:
faust writes a table only in an event's context, and the tick handler (here) decides,
so every write and tombstone goes to the right changelog partition.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from gun_contract.effects import Effects
from gun_hub import metrics
from gun_hub.domain.case import Case
from gun_hub.domain.lifecycle import (
    held_reservations,
    kept_for_control,
    write_offs_known,
    written_off,
)
from gun_hub.domain.trader_stages import customs_acted_on
from gun_hub.pipeline.decision_outbox import declarant_tag_of
from gun_hub.pipeline.hub_context import due_time

log = logging.getLogger(__name__)

# The value of a deadlines-topic tick that asks the case's partition to look at its
# retention entry (a deadline tick's value is the version number).
RETENTION_TICK = b"retention"
DEFAULT_CASE_RETENTION_S = 3 * 24 * 3600.0
DEFAULT_MARKER_S = 14 * 24 * 3600.0

_SCHEDULED = b"S"
_MARKER = b"M"


class _Store(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def __setitem__(self, key: bytes, value: bytes) -> None: ...

    # Positional, the default always given: as a dict's ``pop`` (what stands in for the
    # faust tables in the tests) and faust's take it.
    def pop(self, key: bytes, default: bytes | None, /) -> bytes | None: ...


class _LiveCases(_Store, Protocol):
    """The live cases as the worker keeps them (``SealedStore``): a value that does not
    open can be removed unopened."""

    def discard(self, key: bytes) -> None: ...


class _Cipher(Protocol):
    """What seals a marker at rest (the hub's ``StateCipher``)."""

    def seal(self, table: str, key: bytes | str, value: bytes) -> bytes: ...

    def open(self, table: str, key: bytes | str, sealed: bytes) -> bytes: ...


# The table a marker is sealed for (its associated data: a marker copied under another
# key or into another table does not open).
RETENTION_TABLE = "case-retention"
# A marker written before markers were sealed (stop 36) is the case's JSON, in clear.
_PLAIN_MARKER = b"{"


def seal_marker(cipher: _Cipher | None, key: bytes, marker: bytes) -> bytes:
    return marker if cipher is None else cipher.seal(RETENTION_TABLE, key, marker)


def open_marker(cipher: _Cipher | None, key: bytes, stored: bytes) -> bytes:
    """A marker as written: sealed, or in clear (written before markers were sealed, or
    by a store without a cipher: the unit tests)."""
    if cipher is None or stored.startswith(_PLAIN_MARKER):
        return stored
    return cipher.open(RETENTION_TABLE, key, stored)


@dataclass(frozen=True, slots=True)
class RetentionEntry:
    """What the ``case-retention`` table holds for a reference: when its case is due to
    be looked at (``marker is None``), or its marker and when that is forgotten."""

    due: float
    partition: int
    marker: bytes | None = None

    def to_bytes(self) -> bytes:
        head = f"{self.due}|{self.partition}|".encode()
        return (_MARKER + head + self.marker) if self.marker is not None else _SCHEDULED + head

    @staticmethod
    def due_and_partition(value: bytes) -> tuple[float, int]:
        """An entry's due time and partition, its marker left unread (the index's read
        of the whole table: a third less time than ``from_bytes``)."""
        first = value.index(b"|", 1)
        second = value.index(b"|", first + 1)
        return due_time(value[1:first]), int(value[first + 1 : second])

    @staticmethod
    def marker_in(value: bytes) -> bytes | None:
        """An entry's marker, its due time left unread (the versions rule needs the
        marker whatever its due time says)."""
        if value[:1] != _MARKER:
            return None
        return value[1:].split(b"|", 2)[2]

    @classmethod
    def from_bytes(cls, value: bytes) -> RetentionEntry:
        kind, rest = value[:1], value[1:]
        due, partition, marker = rest.split(b"|", 2)
        return cls(due_time(due), int(partition), marker if kind == _MARKER else None)


def marker_of(case: Case) -> Case:
    """``case`` stripped to what the versions rule, a late answer and an invalidation
    need: no quoted documents, results, risk findings or declarant (its tag only); only
    the documents written off and not given back (:func:`lifecycle.written_off`: what an
    invalidation gives back), and those its requests asked each authority (``Case.asked``:
    what a late answer may speak of, review stop 37, i3), which is why the worker seals
    the marker."""
    known = written_off(case)
    return case.model_copy(
        update={
            # None (a past the hub does not know) stays unknown: read as "nothing", an
            # invalidation would give nothing back (found by the review of stop 36's change).
            "written_off": known,
            # Then its own write-offs apart, which its documents no longer tell (a
            # takeover notice's give-back: review of stop 52).
            "own_written_off": write_offs_known(case) if known is None else [],
            "declarant_eori": "",
            "declarant_tag": declarant_tag_of(case),  # the checks of later versions
            # Before the decision goes: a trader's later version is still not taken.
            "customs_acted": customs_acted_on(case),
            "procedure": "",
            "awaiting": [],
            "expected": [],
            "results": [],
            "risk": [],
            "decision": None,
            "announced": True,
            "pending_announcements": [],
            "override_items": [],
            "dropped": [],  # deleted when the version was read; not again days later
            "shadow_results": [],
        }
    )


class DueKeys(Protocol):
    """Keys of each partition in the order they fall due: every retention entry the
    worker holds, days of them (on disk in the hub: ``runtime/due_keys.py``)."""

    def put(self, partition: int, due: float, key: bytes) -> None: ...

    def load(self, rows: list[tuple[int, float, bytes]]) -> None:
        """``put`` each of ``rows``, none held yet (a read of the table into partitions
        just dropped), in one go."""
        ...

    def take(
        self, partition: int, now: float, within_s: float | None, at_least: int
    ) -> list[bytes]:
        """Remove and return, oldest first and each once, the keys due by ``now``; with
        ``within_s``, only those due within that long of the oldest, yet ``at_least``
        while that many are due."""
        ...

    def drop(self, partition: int) -> None: ...

    def __len__(self) -> int: ...


def window_end(now: float, oldest: float, within_s: float | None) -> float:
    """The last due time a look takes without counting (``DueKeys.take``): ``now``, or
    within ``within_s`` of the ``oldest`` key waiting if that is earlier."""
    return now if within_s is None else min(now, oldest + within_s)


def takes(due: float, now: float, until: float, taken: int, at_least: int) -> bool:
    """Whether a look that took ``taken`` keys takes the next, due at ``due``."""
    return due <= now and (due <= until or taken < at_least)


class HeapDueKeys:
    """``DueKeys`` in memory, a heap a partition: for the unit tests and the benchmarks
    that stand in for the hub's store."""

    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[float, bytes]]] = {}
        self._held: set[tuple[int, float, bytes]] = set()  # one each, as rows on disk

    def __len__(self) -> int:
        return len(self._held)

    def put(self, partition: int, due: float, key: bytes) -> None:
        if (partition, due, key) not in self._held:
            self._held.add((partition, due, key))
            heapq.heappush(self._heaps.setdefault(partition, []), (due, key))

    def load(self, rows: list[tuple[int, float, bytes]]) -> None:
        for partition, due, key in rows:
            self.put(partition, due, key)

    def take(
        self, partition: int, now: float, within_s: float | None, at_least: int
    ) -> list[bytes]:
        heap = self._heaps.get(partition, [])
        if not heap:
            return []
        until = window_end(now, heap[0][0], within_s)
        keys: dict[bytes, None] = {}
        while heap and takes(heap[0][0], now, until, len(keys), at_least):
            due, key = heapq.heappop(heap)
            self._held.discard((partition, due, key))
            keys[key] = None
        return list(keys)

    def drop(self, partition: int) -> None:
        for due, key in self._heaps.pop(partition, []):
            self._held.discard((partition, due, key))


class RetentionIndex:
    """Due times of the retention entries of this worker's partitions, in due order,
    shared by the tick handler (which schedules) and the sweep (which takes what is due).

    The table holds days of entries (every retained case and marker: some 147 million at
    production's 100 declarations a second), so the index keeps them in ``keys``, on the
    worker's disk in the hub, not in memory. It reads the table only when its partitions
    change and after each rebalance's recovery (``invalidate``: another worker may have
    changed their entries, which came back through the changelog); between those, every
    entry written reaches it through ``push`` (stop 44: it used to hold only the next
    hour's and read the whole table again every half hour, a quarter of a core at
    production's volume: docs/bounded-state.md).

    A read builds each partition again from the table, entries already due included: one
    still there past its time lost its tick (the worker stopped before sending it), and
    is ticked again. A key may be held more than once, or for an entry since rewritten:
    the sweep checks the table's entry, and puts back the due time it finds."""

    _YIELD_EVERY = 5000

    def __init__(self, keys: DueKeys | None = None) -> None:
        self._keys: DueKeys = HeapDueKeys() if keys is None else keys
        self._held: set[int] = set()
        self._stale = True
        self.rebalances = 0  # rebalances this index was told of (``invalidate``)
        self._pushed_while_reading: list[tuple[int, float, bytes]] | None = None

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def partitions(self) -> set[int]:
        return set(self._held)

    def invalidate(self) -> None:
        """Read every partition again at the next refresh (after a rebalance: a partition
        may have come back with entries recovered from the changelog). A flag: a read
        under way when it comes does not count."""
        self._stale = True
        self.rebalances += 1

    def push(self, partition: int, due: float, key: bytes) -> None:
        """Schedule ``key`` on ``partition`` (one this worker holds: another's is read
        from the table if it comes here)."""
        if self._pushed_while_reading is not None:
            self._pushed_while_reading.append((partition, due, key))  # held once it ends
        elif partition in self._held:
            self._keys.put(partition, due, key)

    def needs_reading(self, partitions: set[int]) -> bool:
        return self._stale or self._held != partitions

    async def refresh(self, partitions: set[int], entries: Callable[[], Iterable[Any]]) -> None:
        """Follow the assignment: when it changed, or after a rebalance, every partition
        of ``partitions`` built again from the table's ``entries``, with what was pushed
        while they were read. A read that fails is tried again at the next refresh; what
        it read and what was pushed meanwhile are kept."""
        if not self.needs_reading(partitions):
            return
        self._stale = False
        for partition in self._held | partitions:
            self._keys.drop(partition)
        self._held = set(partitions)
        self._pushed_while_reading = []
        rows: list[tuple[int, float, bytes]] = []
        unreadable: list[bytes] = []
        try:
            for read, (key, value) in enumerate(entries(), 1):
                if read % self._YIELD_EVERY == 0:
                    self._keys.load(rows)
                    rows = []
                    await asyncio.sleep(0)  # a large table: the agents go on meanwhile
                try:
                    due, partition = RetentionEntry.due_and_partition(bytes(value))
                except (ValueError, IndexError):
                    unreadable.append(bytes(key))
                    continue
                if partition in partitions:
                    rows.append((partition, due, bytes(key)))
            _say_unreadable(unreadable)
        except BaseException:
            self._stale = True
            raise
        finally:
            self._keys.load(rows)
            pushed, self._pushed_while_reading = self._pushed_while_reading, None
            for partition, due, key in pushed:
                self.push(partition, due, key)

    def due(
        self, partition: int, now: float, *, within_s: float | None = None, at_least: int = 0
    ) -> list[bytes]:
        """Keys of ``partition`` whose entry is due by ``now``, taken off the index, each
        once, oldest first. ``within_s``: only those due within that long of the oldest
        (the rest stay for a later call), yet ``at_least`` keys while that many are due."""
        return self._keys.take(partition, now, within_s, at_least)


_UNREADABLE_NAMED = 5
"""Keys of unreadable entries a read names in its log line (the gauge counts them all)."""


def _say_unreadable(keys: list[bytes]) -> None:
    """After a whole read of the table: how many of its entries do not read. They are
    left alone for ever (their cases never retired), so one line a read and a gauge, not
    a traceback per entry at every start and rebalance (stop 46)."""
    metrics.RETENTION_ENTRIES_UNREADABLE.set(len(keys))
    if keys:
        log.warning(
            "%d retention entries do not read (a damaged changelog record?): left alone, "
            "their cases never retired; the first: %s",
            len(keys),
            ", ".join(repr(key) for key in keys[:_UNREADABLE_NAMED]),
        )


class RetainedCases:
    """The case store the pipeline reads: the live case, else the marker of a retired
    one. Writes go to the live cases. ``cipher``: what sealed the markers."""

    def __init__(self, cases: _LiveCases, entries: _Store, cipher: _Cipher | None = None) -> None:
        self._cases = cases
        self._entries = entries
        self._cipher = cipher

    def get(self, key: bytes) -> bytes | None:
        live = self._cases.get(key)
        if live is not None:
            return live
        raw = self._entries.get(key)
        if raw is None:
            return None
        marker = RetentionEntry.marker_in(bytes(raw))
        return None if marker is None else open_marker(self._cipher, key, marker)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._cases[key] = value

    def pop(self, key: bytes, default: bytes | None = None) -> bytes | None:
        return self._cases.pop(key, default)

    def discard(self, key: bytes) -> None:
        """Forget everything held for ``key``, unopened: the live case and its retention
        entry (a schedule, or a retired case's marker). What ``get`` could not open is
        either of them (ADR 0022)."""
        self._cases.discard(key)
        self._entries.pop(key, None)


class CaseRetention:
    """Schedules decided cases and handles the retention ticks, in event context."""

    def __init__(
        self,
        *,
        cases: _Store,
        entries: _Store,
        open_cases: _Store,
        index: RetentionIndex,
        clock: Callable[[], datetime],
        retention_s: float = DEFAULT_CASE_RETENTION_S,
        marker_s: float = DEFAULT_MARKER_S,
        cipher: _Cipher | None = None,
    ) -> None:
        """``cipher``: seals the markers (they keep the documents written off, war
        material included); None only where nothing is at rest (unit tests)."""
        self._cases = cases
        self._cipher = cipher
        self._entries = entries
        self._open_cases = open_cases
        self.index = index
        self._clock = clock
        self._retention_s = retention_s
        self._marker_s = marker_s

    def decided(self, reference: str, partition: int) -> None:
        """A decision of ``reference`` was announced: look at its case after the
        retention (from now: an announcement made again only delays it)."""
        self._schedule(reference.encode(), self._clock().timestamp() + self._retention_s, partition)

    def remember(self, marker: Case, partition: int) -> None:
        """``marker`` kept as a retired case's is, for as long (``marker_s``): a version
        read on another partition, where this partition holds no case of its reference
        (pipeline/takeover.py): a lower version read here after it is stale."""
        key = marker.reference.encode()
        forget_at = self._clock().timestamp() + self._marker_s
        self._entries[key] = RetentionEntry(
            forget_at,
            partition,
            seal_marker(self._cipher, key, marker.model_dump_json(exclude_defaults=True).encode()),
        ).to_bytes()
        self.index.push(partition, forget_at, key)

    def _schedule(self, key: bytes, due: float, partition: int) -> None:
        self._entries[key] = RetentionEntry(due, partition).to_bytes()
        self.index.push(partition, due, key)

    def handle(
        self, reference: str, partition: int, announce_again: Callable[[Effects, Case], bool]
    ) -> Effects:
        """A retention tick for ``reference`` on ``partition``. ``announce_again``: the
        context's ``announce_again_if_lost`` (which schedules again what it announces)."""
        outbox = Effects()
        key = reference.encode()
        raw = self._entries.get(key)
        if raw is None:
            return outbox
        entry = RetentionEntry.from_bytes(bytes(raw))
        now = self._clock().timestamp()
        if entry.due > now:
            return outbox  # scheduled again later: its own tick comes then
        if entry.marker is not None:
            self._entries.pop(key, None)  # the versions rule no longer needs it
            metrics.CASE_MARKERS_FORGOTTEN.inc()
            return outbox
        stored = self._cases.get(key)
        if stored is None:
            self._entries.pop(key, None)  # nothing left to retire
            return outbox
        case = Case.from_bytes(stored)
        if announce_again(outbox, case):
            return outbox  # not finalised yet: looked at again after the retention
        if not self._finalised(key, case, now):
            self._schedule(key, now + self._retention_s, partition)
            return outbox
        self._cases.pop(key, None)  # a tombstone in the changelog
        forget_at = now + self._marker_s
        self._entries[key] = RetentionEntry(
            # Defaults left out: a third less, read back the same (pydantic fills them).
            forget_at,
            partition,
            seal_marker(
                self._cipher, key, marker_of(case).model_dump_json(exclude_defaults=True).encode()
            ),
        ).to_bytes()
        self.index.push(partition, forget_at, key)
        metrics.CASES_RETIRED.inc()
        return outbox

    def _finalised(self, key: bytes, case: Case, now: float) -> bool:
        """Decided, every decision confirmed, nothing reserved, nothing waiting, and
        decided at least the retention ago."""
        return (
            case.decided
            and case.decision is not None
            and not case.unconfirmed()
            and not held_reservations(case)
            and not kept_for_control(case)
            and self._open_cases.get(key) is None
            and case.decision.decided_at.timestamp() + self._retention_s <= now
        )
