"""Replay memory: a message id (``jti``) is accepted at one position of the log only.

A *replay* is a copy of a message published again (at another topic, partition or
offset): refused. A *redelivery* is the same record read again after a consumer crashed
before committing: accepted, because at-least-once processing depends on it and every
handler is idempotent. So each id is remembered with the position it was first read at.

An envelope is acceptable only until ``exp`` (plus the allowed clock skew), so an id
needs remembering only that long. The hub keeps ids in a faust table (changelog-backed,
so a restarted worker still knows them); adapters and readers keep them in SQLite.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from gun_contract.sqlite import open_database

# How long a record can stay readable after the broker accepted it, by default: twice
# the request topics' retention of seven days (a segment is deleted only once its newest
# record is past the retention), as the hub's claims memory (``hub.decided_marker_s``).
READABLE_S = 14 * 24 * 3600


class ReplayGuard(Protocol):
    def first_sighting(
        self,
        message_id: str,
        expires_at: int,
        position: str,
        seen_at: float | None = None,
        *,
        known_before_as: str | None = None,
    ) -> bool:
        """Record ``message_id`` read at ``position``; False if it was already read
        elsewhere (a replay). The same position again is a redelivery: True.
        ``seen_at``: the broker's log-append time of the record (the log's clock).
        ``known_before_as``: what a previous version of the memory kept the same id as
        (the bare ``jti``, before ids were kept with their sender): held at another
        position, it is a replay too."""
        ...


class FollowsCommits(Protocol):
    """A replay memory told each partition's confirmed commit point (``SqliteReplayGuard``)."""

    def committed(self, topic: str, partition: int, readable_from: float) -> None:
        """``partition`` of ``topic`` can no longer be read again below the broker time
        ``readable_from``."""
        ...


class MemoryReplayGuard:
    """For one-shot readers and unit tests: forgets everything at exit."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def first_sighting(
        self,
        message_id: str,
        expires_at: int,
        position: str,
        seen_at: float | None = None,
        *,
        known_before_as: str | None = None,
    ) -> bool:
        return self._seen.setdefault(message_id, position) == position


class NoReplayMemory:
    """For a topic only the reader's own party writes, whose records are deduplicated by
    content downstream (the hub's decision outbox: publisher.py). Accepts every sighting."""

    def first_sighting(
        self,
        message_id: str,
        expires_at: int,
        position: str,
        seen_at: float | None = None,
        *,
        known_before_as: str | None = None,
    ) -> bool:
        return True


class SqliteReplayGuard:
    """Durable memory for a process without faust tables (adapters, clearance reader).

    An id is forgotten once no copy of it can still be read, for the first time or
    again: every partition of the topics read is *committed* past its expiry (plus
    ``keep_after_expiry_s``), each by its own clock, the broker time below which it can
    no longer be read again (``committed``, from the reader's confirmed commits:
    :class:`gun_contract.commit_clock.CommitClock`). One clock for all (the latest broker
    time read anywhere) forgot, after a reader's absence, the ids of what one partition's
    short backlog had run past while a copy waited in another's longer one (found by
    review in stop 38, as stop 35 found it for the hub's claims memory); a clock moved by
    what was *read* forgot the ids of what an adapter read ahead of its commit, held at
    its oldest pending operation (ADR 0014), so a copy judged a replay there was a first
    sighting when a rebalance had the partition read again (stop 38, L3; the hub's in
    stop 36). ``partitions``: how many each topic read has (the ``kafka.partitions`` of
    every keyed topic); a partition whose commit this process has not heard of (idle,
    another replica's, a reader that reports no commits) holds the forgetting back, as
    does every partition when the count is not given, but never beyond ``readable_s``
    past an id's expiry (by the latest broker time read): by then no copy the broker
    accepted before the expiry is left in the log, so the memory stays bounded, by the
    rate of ids times ``readable_s`` at worst.
    """

    _PRUNE_EVERY = 1000

    def __init__(
        self,
        path: Path,
        *,
        keep_after_expiry_s: int,
        partitions: int | None = None,
        readable_s: int = READABLE_S,
    ) -> None:
        self._db = open_database(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seen "
            "(jti TEXT PRIMARY KEY, expires_at INTEGER, position TEXT)"
        )
        self._keep_s = keep_after_expiry_s
        self._partitions = partitions
        self._readable_s = readable_s
        self._inserts = 0
        self._log_clock = 0.0  # the latest broker time read, from any partition
        # Topic -> partition -> the latest broker time read from it.
        self._clocks: dict[str, dict[int, float]] = {}

    def first_sighting(
        self,
        message_id: str,
        expires_at: int,
        position: str,
        seen_at: float | None = None,
        *,
        known_before_as: str | None = None,
    ) -> bool:
        if known_before_as is not None and known_before_as != message_id:
            kept = self._db.execute(
                "SELECT position FROM seen WHERE jti = ?", (known_before_as,)
            ).fetchone()
            if kept is not None and kept[0] != position:
                return False  # read elsewhere, as a previous version kept it
        self._db.execute(
            "INSERT OR IGNORE INTO seen (jti, expires_at, position) VALUES (?, ?, ?)",
            (message_id, expires_at, position),
        )
        (first_position,) = self._db.execute(
            "SELECT position FROM seen WHERE jti = ?", (message_id,)
        ).fetchone()
        if seen_at is not None and math.isfinite(seen_at):
            # How far anything was read bounds the memory (``readable_s``), never a
            # partition's clock: that moves by its commit only (``committed``).
            self._log_clock = max(self._log_clock, seen_at)
        self._inserts += 1
        if self._inserts % self._PRUNE_EVERY == 0:
            self._prune()
        return bool(first_position == position)

    def committed(self, topic: str, partition: int, readable_from: float) -> None:
        """``partition`` of ``topic`` can no longer be read again below the broker time
        ``readable_from``: of the record at the offset the broker confirmed committed
        (``gun_contract.commit_clock``). The only thing that moves its clock; a commit
        reported out of order moves nothing back."""
        if not math.isfinite(readable_from):
            return
        clocks = self._clocks.setdefault(topic, {})
        clocks[partition] = max(clocks.get(partition, 0.0), readable_from)

    def _prune(self) -> None:
        """Forget ids no copy of which could still be accepted. A copy is accepted only
        if the broker took it before ``expires_at`` (exp plus skew), so the clocks are
        the log's (the broker time of what was read), not this reader's: a reader days
        behind still remembers the ids of its backlog. Without any broker time, the wall
        clock."""
        self._db.execute("DELETE FROM seen WHERE expires_at < ?", (int(self._horizon()),))

    def _horizon(self) -> float:
        """Ids that expired before this are forgotten."""
        if not self._log_clock:
            return time.time() - self._keep_s
        horizon = self._log_clock - self._readable_s
        slowest = self._slowest_clock()
        if slowest is not None:
            horizon = max(horizon, slowest - self._keep_s)
        return horizon

    def _slowest_clock(self) -> float | None:
        """The least commit clock over every partition of the topics read; None while
        the commit of one of them is not known (or their number is not)."""
        if self._partitions is None or not self._clocks:
            return None
        slowest = math.inf
        for clocks in self._clocks.values():
            if any(partition not in clocks for partition in range(self._partitions)):
                return None
            slowest = min(slowest, *clocks.values())
        return slowest

    def close(self) -> None:
        self._db.close()


class TableReplayGuard:
    """Backed by a faust table of raw bytes (``jti`` -> ``position|expires_at``), read and
    written in event context.

    Bounded: an id is forgotten once the log's clock (the latest broker time read) is
    ``keep_after_expiry_s`` past its expiry, as ``SqliteReplayGuard`` does. With
    ``sources`` (the partitions, numbered from 0, that copies of an id may be read from:
    the hub's claims memory hears of every declarations partition), a table partition's
    clock is the *slowest* of those partitions' (for each, the latest broker time below
    which it can no longer be read again, ``readable_from``, as its claims said): one
    partition read to the present says nothing of a copy still waiting in another's
    backlog, which would then be a first sighting too (found by review in stop 35), nor
    one table partition's reading of another's; and a partition read past an id's expiry
    but not committed past a copy reads that copy again after a crash (stop 36). A
    partition not that far (idle, days behind, not heard of since this worker started,
    its claims written by a worker that did not say) holds the
    forgetting back, but never beyond ``readable_s`` past an id's expiry, the longest a
    copy accepted before it can stay in the log. faust writes a
    table key in the current event's partition, so an id is deleted while handling an
    event of the partition that recorded it: each partition keeps its ids in expiry
    order, seeded from the table when the worker gets the partition. ``table_partition``
    says which partition recorded an id: by default the partition of the position it was
    read at (the event's own); the hub's claims table gives the id's claim partition
    (pipeline/admission.py).

    With ``source_clock`` (the hub's memory of answer ids) each id waits for its own
    source, the topic and partition it was read from, to be committed past its expiry:
    ``source_clock(topic, partition)`` is the broker time below which that partition can
    no longer be read again (None: not known). A message opens only on the topic it was
    sealed for, and a copy on another partition meets neither this partition's memory
    nor its cases, so no other source's progress tells anything about its copies: one
    clock for all (the latest broker time read anywhere) forgot the ids of an
    authority's backlog while another authority's partition was read to the present, and
    a copy waiting in that backlog was taken (JOSE review of stop 48). Each source keeps
    its own expiry order, so a source behind holds back none of the others.
    """

    _PRUNE_EVERY = 200

    def __init__(
        self,
        table: Any,
        *,
        keep_after_expiry_s: int = 300,
        table_partition: Callable[[str, str], int | None] | None = None,
        sources: int | None = None,
        readable_s: int | None = None,
        source_clock: Callable[[str, int], float | None] | None = None,
    ) -> None:
        self._table = table
        self._source_clock = source_clock
        self._keep_s = keep_after_expiry_s
        self._table_partition = table_partition or _partition_of_position
        self._sources = sources
        self._readable_s = readable_s
        self._log_clock = 0.0
        # Table partition -> source partition -> the latest broker time read from it there.
        self._source_clocks: dict[int | None, dict[int, float]] = {}
        # Table partition -> source topic ('' without ``source_clock``) -> expiry heap.
        self._expiring: dict[int, dict[str, list[tuple[int, bytes]]]] = {}
        # The table's ids by the partition that recorded them, read once for every
        # partition not seeded yet (``_seed``); None: not read since the last revocation.
        self._read: dict[int | None, dict[str, list[tuple[int, bytes]]]] | None = None
        self._sightings = 0
        self.forgotten = 0

    def first_sighting(
        self,
        message_id: str,
        expires_at: int,
        position: str,
        seen_at: float | None = None,
        *,
        readable_from: float | None = None,
        known_before_as: str | None = None,
    ) -> bool:
        """As ``ReplayGuard.first_sighting``. With ``sources``, ``readable_from`` is the
        broker time below which the source partition of ``position`` can no longer be
        read again (its records before the offset the broker confirmed committed): the
        only thing that moves that partition's clock. ``seen_at``, how far it was *read*,
        does not: a partition is read again from its commit point after a crash, a
        rebalance or a watchdog seek, and a copy judged a replay there would be a first
        sighting once its id was forgotten (found by review, stop 36). None (a claim
        from a worker that did not say): the clock stays where it is."""
        partition = self._table_partition(message_id, position)
        self._seed(partition)
        if seen_at is not None and math.isfinite(seen_at):
            self._log_clock = max(self._log_clock, seen_at)
        if readable_from is not None and math.isfinite(readable_from):
            source = _partition_of_position(message_id, position)
            if source is not None:
                clocks = self._source_clocks.setdefault(partition, {})
                clocks[source] = max(clocks.get(source, 0.0), readable_from)
        kept = self._kept(message_id, known_before_as)
        if kept is not None:
            kept_key, first = kept
            held_at = _position_in(first)
            if held_at != position.encode():
                self._keep_while_copy_readable(kept_key, held_at, seen_at, partition)
                return False
            return True
        key = message_id.encode()
        self._table[key] = f"{position}|{expires_at}".encode()
        if partition is not None:
            heapq.heappush(self._heap(partition, position), (expires_at, key))
        self._sightings += 1
        if self._sightings % self._PRUNE_EVERY == 0 and partition is not None:
            self._forget_expired(partition)
        return True

    def _keep_while_copy_readable(
        self, key: bytes, held_at: bytes, seen_at: float | None, partition: int | None
    ) -> None:
        """A copy of ``key`` refused (read at another position than its first): with
        ``readable_s``, the id is kept until that copy can no longer be in the log
        (``readable_s`` past its broker time ``seen_at``), not only until its expiry. The
        copy stays in the log for the topic's retention, and a redrive claiming it as an
        original read again is judged at its position: the id forgotten, it was a first
        sighting, and the version decided a second time (stop 46's open item; the
        dead-letter desk refused such redrives, the gate did not know). Bounded: the ids
        of the copies refused in that span."""
        if self._readable_s is None or seen_at is None or not math.isfinite(seen_at):
            return
        keep_until = int(seen_at) + self._readable_s
        _, _, expiry = bytes(self._table.get(key) or b"").rpartition(b"|")
        if expiry.isdigit() and int(expiry) >= keep_until:
            return
        # The table says it too: a worker seeding the partition from it keeps it as long.
        self._table[key] = held_at + b"|" + str(keep_until).encode()
        if partition is not None:
            heapq.heappush(
                self._heap(partition, held_at.decode(errors="replace")), (keep_until, key)
            )

    def _lane(self, position: str) -> str:
        """Which expiry order of its partition an id read at ``position`` joins: its
        source topic's with ``source_clock``, the partition's only one otherwise."""
        if self._source_clock is None:
            return ""
        return position.rsplit("/", 2)[0]

    def _heap(self, partition: int, position: str) -> list[tuple[int, bytes]]:
        return self._expiring[partition].setdefault(self._lane(position), [])

    def release(self, partitions: Iterable[int]) -> None:
        """Partitions taken from this worker: forget their expiry order. Their next owner
        records ids in the shared table meanwhile, so a partition that comes back is
        seeded again from the table, or those ids would never be forgotten."""
        self._read = None  # another worker may have written any partition it gets back
        for partition in partitions:
            self._expiring.pop(partition, None)
            self._source_clocks.pop(partition, None)

    def position_of(self, message_id: str, *, known_before_as: str | None = None) -> str:
        """Where ``message_id`` (kept before as ``known_before_as``) was first read (''
        if it is not remembered)."""
        kept = self._kept(message_id, known_before_as)
        return _position_in(kept[1]).decode(errors="replace") if kept else ""

    def _kept(self, message_id: str, known_before_as: str | None) -> tuple[bytes, bytes] | None:
        """The table's key and entry for ``message_id``, else for ``known_before_as``: what
        a worker of the previous version kept under the bare jti, in this same partition
        (the claim partition is the bare jti's); None if neither is remembered."""
        for name in (message_id, known_before_as):
            if name is None:
                continue
            key = name.encode()
            value = self._table.get(key)
            if value is not None:
                return key, bytes(value)
        return None

    def _seed(self, partition: int | None) -> None:
        """After a start: the ids this partition recorded, from the table. One reading
        of the table seeds every partition this worker holds (a worker given eight read
        it eight times, seconds each on the event loop at the claims memory's worst
        case); it stands until a revocation (``release``), the only way an id can enter
        the table other than through ``first_sighting``, which seeds its partition
        first."""
        if partition is None or partition in self._expiring:
            return
        if self._read is None:
            self._read = self._read_expiry_orders()
        lanes = self._read.pop(partition, {})
        for heap in lanes.values():
            heapq.heapify(heap)
        self._expiring[partition] = lanes

    def _read_expiry_orders(self) -> dict[int | None, dict[str, list[tuple[int, bytes]]]]:
        orders: dict[int | None, dict[str, list[tuple[int, bytes]]]] = {}
        for key, value in list(self._table.items()):
            # The expiry after the last separator: a position never holds one (claims
            # records are checked), but one that did stalled the partition (stop 34).
            position, _, expiry = bytes(value).rpartition(b"|")
            recorded_by = self._table_partition(
                bytes(key).decode(errors="replace"), position.decode(errors="replace")
            )
            if expiry.isdigit():
                lane = self._lane(position.decode(errors="replace"))
                orders.setdefault(recorded_by, {}).setdefault(lane, []).append(
                    (int(expiry), bytes(key))
                )
        return orders

    def _horizon(self, partition: int, lane: str) -> float | None:
        """Ids ``partition`` recorded that expired before this are forgotten; None: none
        yet. With ``sources``, by what this table partition has read from each source:
        the records of one source reach each table partition in order, but the table
        partitions are read at their own pace (one behind while another runs ahead:
        found by the review of stop 35's diff)."""
        if not self._log_clock:
            return None  # no broker time yet: the wall clock would forget a backlog's ids
        if self._source_clock is not None:
            committed = self._source_clock(lane, partition)
            horizons = [] if committed is None else [committed - self._keep_s]
            if self._readable_s is not None:
                horizons.append(self._log_clock - self._readable_s)
            return max(horizons, default=None)
        if self._sources is None:
            return self._log_clock - self._keep_s
        horizons = []
        clocks = self._source_clocks.get(partition, {})
        read_past = [clocks.get(source) for source in range(self._sources)]
        if all(clock is not None for clock in read_past):
            horizons.append(min(clock for clock in read_past if clock is not None) - self._keep_s)
        if self._readable_s is not None:
            horizons.append(self._log_clock - self._readable_s)
        return max(horizons, default=None)

    def _forget_expired(self, partition: int) -> None:
        for lane, heap in self._expiring[partition].items():
            horizon = self._horizon(partition, lane)
            if horizon is not None:
                self._forget_in(heap, horizon)

    def _forget_in(self, heap: list[tuple[int, bytes]], horizon: float) -> None:
        while heap and heap[0][0] < horizon:
            _, key = heapq.heappop(heap)
            value = self._table.get(key)
            if value is None:
                continue
            _, _, expiry = bytes(value).rpartition(b"|")
            if expiry.isdigit() and int(expiry) >= horizon:
                continue  # kept longer since (a copy refused): its later entry is queued
            del self._table[key]
            self.forgotten += 1


def _position_in(value: bytes) -> bytes:
    """The position of a stored ``position|expiry`` (the expiry after the last separator:
    a position that held one stalled its partition, stop 34), or of a bare position, as
    entries were kept before expiries were."""
    position, separator, _ = value.rpartition(b"|")
    return position if separator else value


def _partition_of_position(_message_id: str, position: str) -> int | None:
    """``topic/partition/offset`` -> partition (None for any other shape)."""
    parts = position.rsplit("/", 2)
    if len(parts) == 3 and parts[1].isdigit():
        return int(parts[1])
    return None
