"""Which request partitions an adapter replica owns, and how far it may commit each.

Replicas of one adapter share its request partitions (one consumer group). An operation a
down partner could not take is queued by the replica that read it; the partition's next
owner, after a rebalance or a replica's death, must still apply it, and before the
declaration's later operations. So the request log is its durable copy, not the replica's
file (ADR 0014):

* **Low watermark.** A partition is committed up to the offset after the last record the
  replica handled, but never past its oldest operation still queued: whoever owns the
  partition next reads that operation again, and every request after it, in order.
* **Forget on revoke, after the last commit.** A replica losing partitions takes no
  further record of them (:meth:`PartitionOwnership.leaving`), waits for the records it
  is handling (at most a partner call's deadline: the group's rebalance waits for it),
  commits them once more, naming what the batch left unsettled at the partner, then drops
  their queued operations (:meth:`PartitionOwnership.revoked`; their replays stop). The
  next owner's replays are the only ones. Reading a request again is harmless: every
  partner operation carries its idempotency key and version, and the hub ignores an
  answer it already has. A commit made before the batch ended missed the reservation
  that batch queued as it timed out (review stop 39-G, G2); a reservation whose call
  outlasts the wait is named all the same (:meth:`PartitionOwnership.asking`), and what
  such a call queues once its partition is gone is dropped by the runner.
* **Forget on assignment.** aiokafka's group protocol is eager: every rebalance revokes
  every partition, and each replica reads its new ones from their commit. Rows a replica
  finds queued then (left by a crash) are another term's and are dropped too.

* **Ask again only what is pending.** Each commit says in its metadata how far its
  replica had answered (``answered:<offset>``). The next owner asks the partner again the
  write-offs, deletions and give-backs before that offset (pending ones are applied now,
  the others answered from the partner's idempotency memory), but neither the
  reservations nor the checks: a reservation answered UNAVAILABLE in an outage and applied
  now would hold quantities that its declaration's follow-up, already answered, never
  frees. So a rebalance changes nothing of what one replica alone would have done. A
  batch that left a record (a revocation during it) answered others after it, each key's
  records being handled side by side: the commit goes back to the left one and names
  those by distance from the mark (``answered-also:<d>,<d>``; review of stop 54); when
  one by one they do not fit (the batches answered ahead of a slow one: stop 57), in runs
  too (``answered-runs:<d>-<e>,<d>``, a part the previous release skips).

* **Name the reservations the partner may still apply.** A reservation whose call timed
  out or met 409 "being processed" is queued until the partner answers it for good, its
  documents' follow-ups behind it (:mod:`adapters.base.replay`). Its row is forgotten on
  revoke like any other, but it was answered, so the next owner would skip it and send
  its follow-up first. Each commit names those still queued, by their distance from the
  committed offset (``answered:<offset>;unsettled:<d>,<d>``; only ``answered:<offset>``
  when there are none, as before): the next owner queues them again as it reads them
  (:meth:`PartitionOwnership.unsettled_at`), asks them with the same key, and holds their
  follow-ups behind them (review stop 39, P1). A write-off, deletion or give-back the
  partner may still be applying (queued after a timeout or a 409 "being processed", or
  under way) is named too: the next owner asks it as a repeat, so a 409 is "still in
  progress", not a rejection (review stop 39-SF, SF2). Of those, the calls the partner
  answered 202 are named as well (``accepted:<d>=<i>-<j>.<k>``, each call by its position
  in the request, :meth:`PartnerPort.accepted_calls`, in spans): the next owner takes a
  409 to them for "still in progress" however late, as the replica the partner answered
  did (review of stop 54: past the window, the next owner took one for a rejection, and
  the write-off's give-back went ahead of it). The part gets the room the others leave
  (the records answered past a left one first: losing those holds a quantity for ever).

* **A hand-over says so; after a crash, what the log held may have been sent.** A
  replica killed with a call under way names nothing: its last commit is a periodic one,
  and its next owner took the partner's 409 to its first attempt for a refusal, letting
  the declaration's deletion overtake the dead replica's reservation (stop 40). The
  commits of a partition being revoked (or of a replica stopping between batches) end
  with ``;handed-over:<generation>``, the group generation it was owned in: no record
  and no replay of it starts any more, and every call left under way is named. Only an
  owner of the next generation believes it (a replica that took the partition over and
  died before committing left it in place). After any other commit, every record read
  from the commit up to the partition's log end at the assignment may have been sent
  (:meth:`PartitionOwnership.sent_before`): asked as a repeat, a 409 "still in
  progress". An owner that inherited such records and has not read them all writes no
  marker.

Rows queued before offsets were kept (no offset) hold no partition and are replayed by
whoever has them, as before.

* **What the log no longer holds is kept.** The request topic keeps records 7 days. A row
  whose request retention deleted (its offset below its partition's log start) cannot be
  read again by anyone: it is not forgotten on revoke nor on assignment, and this replica
  replays it (in its declaration's order here; if its partition went to another replica,
  out of that replica's sight, which is logged). Without the log start (a broker call
  that failed) no row is forgotten.
* **What no one read is said.** A partition whose log starts past the offset its replica
  expected next (the commit, then what it handled) lost requests to retention: those no
  replica answered (:meth:`PartitionOwnership.unread`) are dead-lettered by the runner as
  ``REQUEST_AGED_OUT_OF_THE_LOG``, logged and counted; aiokafka would step over them
  (``auto_offset_reset``) in silence.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_right
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from collections.abc import Set as AbstractSet
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

from adapters.base.pending import PendingOperations, operation_key
from gun_contract.model.exchange import AuthorityRequest

log = logging.getLogger(__name__)

_ANSWERED = "answered:"
_UNSETTLED = "unsettled:"
# Of the follow-ups named unsettled, the calls the partner answered 202 (by distance, as
# those, then their positions in the request, in spans): ``accepted:4=0-2.7,9=0``. Said
# after the unsettled part, where the previous release stops reading.
_ACCEPTED = "accepted:"
# No request makes more calls (5,994 documents at most, three calls each for a write-off):
# a span beyond it is not understood (a commit's metadata is anyone's in the group).
_CALLS_AT_MOST = 100_000
# The records answered past the first one a batch left (a revocation during it: each key's
# records are handled side by side, so another declaration's further on the partition
# were answered), by distance from the ``answered:`` mark: the next owner reads them again
# from the commit, and asked again, a reservation answered UNAVAILABLE would be applied
# after its deletion was answered (review of stop 54; the shape of stop 45's).
_ANSWERED_ALSO = "answered-also:"
# The same in runs (``d-e``), when one by one they do not fit (stop 57): a part of its own,
# which a replica of the previous release skips (it read none of the answered-also part
# once a run was in it).
_ANSWERED_RUNS = "answered-runs:"
# At most this many records read from one: four polls of 500 answered ahead of a slow
# batch, and more for the runs a replica of a later release may write.
_ANSWERED_ALSO_AT_MOST = 100_000
# Said last by a commit made as its replica hands the partition over (revoked, or
# stopping), with the group generation it owned the partition in: every call it may have
# left under way at the partner is named. Believed by an owner of the next generation
# only: one of a later one finds it left by a replica that took the partition over and
# died without committing. Without it (a periodic commit, the last before a crash, or a
# commit of the previous release), the next owner takes what the log held at its
# assignment for records maybe sent.
_HANDED_OVER = "handed-over:"
_PARTS = ";"
# Kafka refuses a commit whose metadata is longer than offset.metadata.max.bytes (4096 by
# default): the whole commit would fail. Reservations left unsettled at a partner are a
# few calls in flight; past this many characters the rest are left out (logged).
_UNSETTLED_CHARS = 3500
# All the metadata's parts together: the answered-also part gets what the others leave.
_METADATA_CHARS = 4000


def _answered_mark(metadata: str) -> int | None:
    """The offset a commit's metadata says was answered before (None: no mark)."""
    first = metadata.split(_PARTS, 1)[0]
    if not first.startswith(_ANSWERED):
        return None
    return _number(first.removeprefix(_ANSWERED))


def _unsettled_offsets(metadata: str, committed: int | None) -> frozenset[int]:
    """The offsets of the reservations a commit at ``committed`` names as still
    unsettled at the partner (none: no such part, or no committed offset)."""
    if committed is None or committed < 0:
        return frozenset()
    for part in metadata.split(_PARTS)[1:]:
        if part.startswith((_HANDED_OVER, _ANSWERED_ALSO, _ANSWERED_RUNS, _ACCEPTED)):
            continue
        distances = [_number(d) for d in part.removeprefix(_UNSETTLED).split(",")]
        if part.startswith(_UNSETTLED) and None not in distances:
            return frozenset(committed + d for d in distances if d is not None)
        log.error("commit metadata part %r not understood: ignored", part[:200])
    return frozenset()


def _number(text: str) -> int | None:
    """``text`` as a number a commit's metadata names (a distance, an offset, a
    position): ASCII digits only (``"²".isdigit()`` is true, and ``int`` refuses it: one
    such part in a commit stopped every replica the partition went to; review of stop
    55's change), at most 18 of them. None: not one."""
    if not (0 < len(text) <= 18 and text.isascii() and text.isdigit()):
        return None
    return int(text)


_Item = TypeVar("_Item")
Spans = tuple[range, ...]
"""Positions of calls as sorted runs that neither overlap nor touch: what a commit names,
kept so (a few runs for thousands of calls), never expanded (:class:`SpannedPositions`)."""


class SpannedPositions(AbstractSet[int]):
    """The positions of :data:`Spans`, as a set that answers ``in`` without listing them:
    a record read again asks it for its request's few calls (review of stop 55's change:
    expanded per record read, a hostile part's entries held 2.4 GB at once in a batch)."""

    __slots__ = ("_spans", "_starts")

    def __init__(self, spans: Spans = ()) -> None:
        self._spans = spans
        self._starts = [span.start for span in spans]

    def __contains__(self, position: object) -> bool:
        if not isinstance(position, int):
            return False
        at = bisect_right(self._starts, position) - 1
        return at >= 0 and position in self._spans[at]

    def __iter__(self) -> Iterator[int]:
        for span in self._spans:
            yield from span

    def __len__(self) -> int:
        return sum(len(span) for span in self._spans)

    def __repr__(self) -> str:
        return f"SpannedPositions({_spans(self._spans)!r})"

    @classmethod
    def _from_iterable(cls, positions: Iterable[_Item]) -> frozenset[_Item]:
        """What the set operations (``&``, ``|``, ``-``, ``^``) build their result with:
        a frozenset of the positions (the mixin's default called this class's own
        constructor with ints, which takes spans)."""
        return frozenset(positions)


def _accepted_calls(metadata: str, committed: int | None) -> dict[int, Spans]:
    """Per offset, the spans of the calls a commit at ``committed`` names as accepted
    (202) by the partner (none: no such part, or no committed offset). Kept as spans: one
    entry names no more calls than one request makes, and however many entries a part
    holds, reading it costs what its characters do (review of stop 55's change: a part
    of overlapping spans expanded to 33.9 million positions, 2.5 GB in the rebalance
    callback; bounded together instead, a valid part naming 51 write-offs of 2,000
    documents was refused whole)."""
    if committed is None or committed < 0:
        return {}
    for part in metadata.split(_PARTS)[1:]:
        if not part.startswith(_ACCEPTED):
            continue
        accepted: dict[int, Spans] = {}
        for entry in part.removeprefix(_ACCEPTED).split(","):
            text, _, spans = entry.partition("=")
            distance = _number(text)
            named = _spans_named(spans)
            if distance is None or named is None:
                log.error("commit metadata part %r not understood: ignored", part[:200])
                return {}
            accepted[committed + distance] = named
        return accepted
    return {}


def _as_spans(positions: Collection[int]) -> Spans:
    """``positions`` as :data:`Spans`."""
    spans: list[range] = []
    for position in sorted(set(positions)):
        if spans and spans[-1].stop == position:
            spans[-1] = range(spans[-1].start, position + 1)
        else:
            spans.append(range(position, position + 1))
    return tuple(spans)


def _spans(spans: Spans) -> str:
    """``spans`` as a commit names them, dot-separated: ``0-1999.2005``."""
    return ".".join(
        str(span.start) if len(span) == 1 else f"{span.start}-{span.stop - 1}" for span in spans
    )


def _spans_named(text: str) -> Spans | None:
    """The spans :func:`_spans` wrote, merged (None: not understood, or more calls than
    one request makes)."""
    named: list[range] = []
    for span in text.split("."):
        first, dash, last = span.partition("-")
        begin, end = _number(first), _number(last) if dash else _number(first)
        if begin is None or end is None or not begin <= end < _CALLS_AT_MOST:
            return None
        named.append(range(begin, end + 1))
    merged: list[range] = []
    for run in sorted(named, key=lambda r: r.start):
        if merged and run.start <= merged[-1].stop:
            merged[-1] = range(merged[-1].start, max(merged[-1].stop, run.stop))
        else:
            merged.append(run)
    return tuple(merged)


def _one_by_one_then_runs(past: Sequence[int], fit: int, room: int) -> tuple[str, int]:
    """The ``answered-also:`` and ``answered-runs:`` parts naming the sorted distances
    ``past`` in ``room`` characters, of which ``fit`` fit one by one alone; and how many
    they name (a prefix of them). The first ``k`` one by one, which a replica of the
    previous release reads, the rest in runs, which it skips: ``k`` the most for which
    the runs of the rest still fit whole (the one-by-one part grows with ``k`` by more
    than the runs part shrinks, so the cost rises with it). When even the runs of all do
    not fit whole, whichever names more: as many one by one as fit, or runs of all as
    far as they fit."""

    def parts(k: int, runs_room: int | None = None) -> str:
        also = f"{_PARTS}{_ANSWERED_ALSO}{','.join(str(d) for d in past[:k])}" if k else ""
        rest = _runs(past[k:])
        if runs_room is not None:
            rest_text, _ = _joined_within(rest, runs_room)
        else:
            rest_text = ",".join(rest)
        return also + (f"{_PARTS}{_ANSWERED_RUNS}{rest_text}" if rest_text else "")

    if len(parts(0)) > room:  # the runs of all do not fit whole
        runs = parts(0, room - len(_PARTS + _ANSWERED_RUNS))
        in_runs = len(_distances_named(runs.removeprefix(_PARTS + _ANSWERED_RUNS)) or ())
        if in_runs > fit:
            return runs, in_runs
        also, _ = _joined_within([str(d) for d in past], room - len(_PARTS + _ANSWERED_ALSO))
        return f"{_PARTS}{_ANSWERED_ALSO}{also}", fit
    low, high = 0, fit  # parts(low) fits; the most k that does
    while low < high:
        middle = (low + high + 1) // 2
        if len(parts(middle)) <= room:
            low = middle
        else:
            high = middle - 1
    return parts(low), len(past)


def _joined_within(distances: Sequence[str], room: int) -> tuple[str, int]:
    """``distances`` joined by commas, as many as fit in ``room`` characters, and how
    many were left out."""
    named = ""
    for count, distance in enumerate(distances):
        if len(named) + len(distance) + 1 > room:
            return named, len(distances) - count
        named += ("," if named else "") + distance
    return named, 0


def _answered_also(metadata: str) -> frozenset[int]:
    """The offsets past its ``answered:`` mark a commit's metadata names as answered
    (none: no such part, or no mark): distances, or runs of them (``d-e``)."""
    mark = _answered_mark(metadata)
    if mark is None:
        return frozenset()
    named: set[int] = set()
    for part in metadata.split(_PARTS)[1:]:
        for prefix in (_ANSWERED_ALSO, _ANSWERED_RUNS):
            if part.startswith(prefix):
                distances = _distances_named(part.removeprefix(prefix), len(named))
                if distances is None:
                    log.error("commit metadata part %r not understood: ignored", part[:200])
                else:
                    named |= distances
    return frozenset(mark + d for d in named)


def _distances_named(text: str, already: int = 0) -> set[int] | None:
    """The distances ``d,d-e,...`` name (None: not understood), no more than
    :data:`_ANSWERED_ALSO_AT_MOST` with the ``already`` read (the first of them: a forged
    run of billions is no set to build, and a commit naming more than that is read in
    part, not refused whole)."""
    named: set[int] = set()
    for item in text.split(","):
        first, dash, last = item.partition("-")
        begin, end = _number(first), _number(last) if dash else _number(first)
        if begin is None or end is None or end < begin:
            return None
        room = _ANSWERED_ALSO_AT_MOST - already - len(named)
        named.update(range(begin, min(end + 1, begin + max(room, 0))))
    return named


def _runs(distances: Sequence[int]) -> list[str]:
    """Sorted ``distances`` as runs, ``d`` alone or ``d-e``: a batch answered ahead of a
    slow one is a run of hundreds, named in a few characters (one by one, four polls'
    records overflowed the metadata and a third of them were asked again; a review of
    stop 57's batches under way)."""
    runs: list[str] = []
    start = previous = None
    for d in [*distances, None]:
        if d is not None and previous is not None and d == previous + 1:
            previous = d
            continue
        if start is not None and previous is not None:
            if previous - start >= 2:
                runs.append(f"{start}-{previous}")
            else:  # one or two: as a replica of before names (and reads) them
                runs += [str(d) for d in range(start, previous + 1)]
        start = previous = d
    return runs


def _handed_over(metadata: str, group_generation: int | None) -> bool:
    """Whether a commit's metadata says its replica handed the partition over in the
    generation before ``group_generation`` (None: not known, never)."""
    if group_generation is None:
        return False
    return f"{_HANDED_OVER}{group_generation - 1}" in metadata.split(_PARTS)[1:]


def deleted_unanswered(commit: int, metadata: str, log_start: int) -> list[range]:
    """The offsets of a partition committed at ``commit`` (-1: never) with ``metadata``
    that retention deleted before any replica answered them, now that its log starts at
    ``log_start``, in gaps: from past what its committer answered to the log start,
    without the records it named answered past its mark."""
    if commit < 0 or log_start <= commit:
        return []
    mark = _answered_mark(metadata)
    begin = commit if mark is None else max(commit, mark)
    return _gaps(range(begin, max(begin, log_start)), _answered_also(metadata))


def _gaps(offsets: range, answered: Collection[int]) -> list[range]:
    """``offsets`` without ``answered``, as runs of consecutive offsets (the records
    answered past a left one had their answers sent: lost, they were not; stop 54's
    open item, the aged-out dead letter counted them)."""
    gaps: list[range] = []
    start = offsets.start
    for offset in sorted(o for o in set(answered) if o in offsets):
        if offset > start:
            gaps.append(range(start, offset))
        start = offset + 1
    if start < offsets.stop:
        gaps.append(range(start, offsets.stop))
    return gaps


class PartitionOwnership:
    """One replica's request partitions: owned, handled up to, committed up to."""

    def __init__(
        self,
        pending: PendingOperations,
        follow_ups_unsettled: Callable[[], Collection[AuthorityRequest]] = list,
        follow_ups_accepted: Callable[
            [], Collection[tuple[AuthorityRequest, frozenset[int]]]
        ] = list,
    ) -> None:
        self._pending = pending
        # The queued follow-ups the partner may still be applying (Replayer): named in
        # the commits beside the reservations (review stop 39-SF, SF2).
        self._follow_ups_unsettled = follow_ups_unsettled
        # Of those and of those under way, the calls the partner answered 202 (named
        # ``accepted:``).
        self._follow_ups_accepted = follow_ups_accepted
        self._owned: set[int] = set()
        # Bumped by every revocation: a batch begun under an earlier generation says
        # nothing of what the partitions hold now.
        self.generation = 0
        # Partitions being revoked: no record of them is handled any more, but they are
        # committed once more when the batch in flight ends (:meth:`leaving`).
        self._leaving: set[int] = set()
        self._handled: dict[int, int] = {}
        self._committed: dict[int, int] = {}
        self._committed_metadata: dict[int, str] = {}  # what that commit said
        # Per partition: offsets of the reservations whose partner call is under way.
        self._asking: dict[int, set[int]] = {}
        # Per operation key (pending.operation_key) of a follow-up whose call is under
        # way: where it was read, to name its calls the partner accepted meanwhile.
        self._asking_at: dict[str, tuple[int, int]] = {}
        # Per partition: records before this offset were answered by whoever committed it.
        self._answered_before: dict[int, int] = {}
        # Per partition: records answered past where it is handled (a batch that left a
        # record answered others after it), by this replica or the last committer.
        self._answered_past: dict[int, set[int]] = {}
        # Per partition: offsets of reservations the partition's last committer left
        # unsettled at the partner (asked again as they are read, replay.py).
        self._unsettled: dict[int, frozenset[int]] = {}
        # Per partition and offset among those: the calls the partner answered 202.
        self._accepted: dict[int, dict[int, Spans]] = {}
        # The consumer group generation this replica's partitions were assigned in (its
        # hand-over commits say it; None: not known, none is said).
        self._group_generation: int | None = None
        # Per partition taken over after a commit that was no hand-over (a crash): the
        # offsets its earlier owner may have sent to the partner unnamed, from the commit
        # to the log's end at the assignment. Asked as repeats: a 409 is the partner
        # still at the earlier call.
        self._maybe_sent: dict[int, range] = {}
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Per partition: its committed offset when it was assigned (before any record is
        # handled, the next one expected).
        self._assigned_at: dict[int, int] = {}
        # Set once an assignment is taken in (its rows forgotten, its commits' marks
        # read): aiokafka fetches the new partitions while its listener still runs.
        self._settled = asyncio.Event()

    def owns(self, partition: int) -> bool:
        return partition in self._owned

    def leaves(self, partition: int) -> bool:
        """Whether ``partition`` is being revoked: its queued operations are not sent
        any more (the replayer), its commits say it is handed over."""
        return partition in self._leaving

    def keeps(self, partition: int) -> bool:
        """Whether rows of ``partition`` queued now are this replica's to keep: it owns
        the partition, or is revoking it and has not forgotten its rows yet."""
        return partition in self._owned or partition in self._leaving

    @property
    def partitions(self) -> frozenset[int]:
        """The partitions owned now (health, tests)."""
        return frozenset(self._owned)

    @property
    def is_settled(self) -> bool:
        return self._settled.is_set()

    async def settled(self) -> None:
        """Until the current assignment is taken in: no record is handled before."""
        await self._settled.wait()

    @asynccontextmanager
    async def handling(self) -> AsyncIterator[int]:
        """Around the handling of a batch: a revocation waits for it to end. Yields the
        generation the batch began in (for :meth:`handled`)."""
        self._in_flight += 1
        self._idle.clear()
        try:
            yield self.generation
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    @contextmanager
    def asking(
        self, partition: int, offset: int, request: AuthorityRequest | None = None
    ) -> Iterator[None]:
        """Around the partner call of the reservation (or follow-up, ``request``) read at
        ``offset``: a commit made while it runs (a revocation that could not wait for it)
        names it as one the partner may still apply, and a follow-up's calls the partner
        accepted meanwhile (the replayer's :meth:`Replayer.follow_ups_accepted`)."""
        self._asking.setdefault(partition, set()).add(offset)
        key = None if request is None else operation_key(request)
        if key is not None:
            self._asking_at[key] = (partition, offset)
        try:
            yield
        finally:
            self._asking.get(partition, set()).discard(offset)
            if key is not None and self._asking_at.get(key) == (partition, offset):
                del self._asking_at[key]

    def assigned(
        self,
        partitions: Collection[int],
        metadata: Mapping[int, str] | None = None,
        *,
        committed: Mapping[int, int] | None = None,
        log_starts: Mapping[int, int] | None = None,
        log_ends: Mapping[int, int] | None = None,
        group_generation: int | None = None,
    ) -> None:
        """The group gave this replica ``partitions``, each read from its commit on;
        ``metadata``: each one's commit metadata (how far its committer answered);
        ``committed``: each one's committed offset; ``log_starts``: the first offset the
        log still holds, of these partitions and of those this replica has rows of (a
        row of a partition not in it is kept); ``log_ends``: the offset each partition's
        next record gets, now (what its earlier owner may have read stops there);
        ``group_generation``: the consumer group's generation of this assignment."""
        starts = log_starts or {}
        forgotten = self._pending.forget(None, starts)
        if forgotten:
            log.info(
                "forgot %d pending operations of an earlier assignment: their partitions' "
                "owners read them again from the committed offsets",
                forgotten,
            )
        self._owned = set(partitions)
        marks = {p: _answered_mark(text) for p, text in (metadata or {}).items()}
        self._answered_before = {
            p: mark for p, mark in marks.items() if mark is not None and p in self._owned
        }
        self._answered_past = {
            p: set(also)
            for p, text in (metadata or {}).items()
            if p in self._owned and (also := _answered_also(text))
        }
        self._assigned_at = {
            p: c for p, c in (committed or {}).items() if c >= 0 and p in self._owned
        }
        self._unsettled = {
            p: offsets
            for p, text in (metadata or {}).items()
            if p in self._owned and (offsets := _unsettled_offsets(text, self._assigned_at.get(p)))
        }
        # Of the offsets named unsettled only: an entry of another names nothing.
        self._accepted = {
            p: {o: calls for o, calls in named.items() if o in self._unsettled.get(p, ())}
            for p, text in (metadata or {}).items()
            if p in self._owned and (named := _accepted_calls(text, self._assigned_at.get(p)))
        }
        self._group_generation = group_generation
        self._maybe_sent = {
            p: range(max(0, (committed or {}).get(p, -1), starts.get(p, 0)), end)
            for p, end in (log_ends or {}).items()
            if p in self._owned and not _handed_over((metadata or {}).get(p, ""), group_generation)
        }
        self._say_what_the_log_lost(self._assigned_at, starts)
        oldest = self._pending.oldest_offsets()
        queued = self._queued_unsettled()
        accepted = self._queued_accepted()
        for partition, commit in self._assigned_at.items():
            # What the group holds now, as this replica would say it: committed again
            # only once something changes (a record handled, a reservation queued).
            self._committed[partition] = commit
            self._committed_metadata[partition] = self._metadata(
                partition, oldest, queued, accepted
            )
            start = starts.get(partition, commit)
            if start > commit:
                # What the log lost before the commit was said by the runner as the
                # partition was assigned (deleted_unanswered): the next record expected is
                # the log's first, and the partition is committed there (said once, not
                # at every rebalance), unless a row kept here holds it back.
                self._handled[partition] = start
        self._settled.set()

    def _say_what_the_log_lost(
        self, commits: Mapping[int, int], log_starts: Mapping[int, int]
    ) -> None:
        """Log the rows kept because retention deleted their requests, and a commit held
        by another replica's pending operation that retention deleted."""
        held = self._pending.oldest_offsets()
        for partition, oldest in sorted(held.items()):
            start = log_starts.get(partition)
            if start is None or oldest >= start:
                continue
            if partition in self._owned:
                log.warning(
                    "partition %d: pending operations from offset %d on are no longer in "
                    "the log (it starts at %d: the partner was down longer than the "
                    "retention); kept and replayed from here",
                    partition,
                    oldest,
                    start,
                )
            else:
                log.error(
                    "partition %d is another replica's now, and pending operations of it "
                    "from offset %d on are no longer in the log (it starts at %d): "
                    "replayed from here, out of that replica's order for their "
                    "declarations",
                    partition,
                    oldest,
                    start,
                )
        for partition, commit in sorted(commits.items()):
            start = log_starts.get(partition)
            answered = self._answered_before.get(partition, commit)
            if (
                start is not None
                and commit < min(start, answered)
                and held.get(partition) != commit
            ):
                # The commit was held at ``commit`` by an operation pending with the
                # replica that made it; retention deleted its request since.
                log.warning(
                    "partition %d: the operation pending at offset %d when it was last "
                    "committed is no longer in the log (it starts at %d); the replica that "
                    "queued it keeps and replays it, and it never reaches the partner if "
                    "that replica's pending file is lost",
                    partition,
                    commit,
                    start,
                )

    def answered_before(self, partition: int, offset: int) -> bool:
        """Whether the record at ``offset`` was answered by the replica that committed
        ``partition`` last (this one included, before a rebalance): before its mark, or
        past a record its batch left (:data:`_ANSWERED_ALSO`)."""
        return offset < self._answered_before.get(
            partition, -1
        ) or offset in self._answered_past.get(partition, ())

    def unsettled_at(self, partition: int, offset: int) -> bool:
        """Whether the record at ``offset`` is a reservation the partition's last
        committer left unsettled at the partner: answered, but to be queued again."""
        return offset in self._unsettled.get(partition, frozenset())

    def sent_before(self, partition: int, offset: int) -> bool:
        """Whether the record at ``offset`` may have been sent to the partner by the
        partition's earlier owner, its call unsettled: named by the commit, or read
        below the log's end at the assignment after a commit that was no hand-over (its
        replica died past it, naming nothing). Its next attempt is a repeat."""
        return self.unsettled_at(partition, offset) or offset in self._maybe_sent.get(
            partition, range(0)
        )

    def accepted_at(self, partition: int, offset: int) -> SpannedPositions:
        """The positions of the calls of the follow-up at ``offset`` the partner answered
        202, as the partition's last committer named them: asked as repeats, a 409 to
        them is the partner still processing however late."""
        return SpannedPositions(self._accepted.get(partition, {}).get(offset, ()))

    def _hands_over(self, partition: int) -> bool:
        """Whether a commit of ``partition`` now is a hand-over: it is being revoked (no
        further record of it is sent, what its calls under way left is named), and
        nothing an earlier owner may have sent is still unread here."""
        handled = self.next_offset(partition) or 0
        inherited = self._maybe_sent.get(partition, range(0))
        return (
            self._group_generation is not None
            and partition in self._leaving
            and handled >= inherited.stop
        )

    def _commit_offset(self, partition: int, oldest: Mapping[int, int]) -> int | None:
        """Where ``partition`` is committed now: past what was handled (its commit at the
        assignment, before any record), no further than its oldest queued operation
        (``oldest``: :meth:`PendingOperations.oldest_offsets`). None: nowhere known."""
        handled = self.next_offset(partition)
        if handled is None:
            return None
        return min(handled, oldest.get(partition, handled))

    def commit_metadata(self, partition: int) -> str:
        """What a commit of ``partition`` says: how far it was answered, by this replica
        or by the one it took the partition from (never lower: the records between were
        answered, and asking them again would apply what was answered UNAVAILABLE); and
        which of those are reservations the partner may still apply: queued here, asked
        right now, or named by the commit this replica inherited and not read again yet."""
        return self._metadata(
            partition,
            self._pending.oldest_offsets(),
            self._queued_unsettled(),
            self._queued_accepted(),
        )

    def _queued_unsettled(self) -> dict[int, list[int]]:
        """Per partition, the offsets of the queued operations the partner may still
        apply: every queued reservation, and the follow-ups the replayer names."""
        queued = self._pending.reservation_offsets()
        for p, offsets in self._pending.offsets_of(self._follow_ups_unsettled()).items():
            queued[p] = sorted({*queued.get(p, ()), *offsets})
        return queued

    def _queued_accepted(self) -> dict[int, dict[int, Spans]]:
        """Per partition and offset, the calls of the queued follow-ups (and of those
        under way) the partner answered 202 (the replayer's
        :meth:`Replayer.follow_ups_accepted`)."""
        accepted: dict[int, dict[int, Spans]] = {}
        for request, positions in self._follow_ups_accepted():
            calls = _as_spans(positions)
            for p, offsets in self._pending.offsets_of([request]).items():
                for offset in offsets:
                    accepted.setdefault(p, {})[offset] = calls
            # One whose live call is under way is not queued (yet): where it was read.
            if (at := self._asking_at.get(operation_key(request))) is not None:
                accepted.setdefault(at[0], {})[at[1]] = calls
        return accepted

    def _metadata(
        self,
        partition: int,
        oldest: Mapping[int, int],
        queued: Mapping[int, list[int]],
        accepted: Mapping[int, Mapping[int, Spans]],
    ) -> str:
        """:meth:`commit_metadata`, given the queue's oldest offsets, what of it the
        partner may still apply (:meth:`_queued_unsettled`) and what of that it accepted
        (:meth:`_queued_accepted`)."""
        handled = self.next_offset(partition) or 0
        answered = max(handled, self._answered_before.get(partition, 0))
        mark = f"{_ANSWERED}{answered}"
        handed = (
            f"{_PARTS}{_HANDED_OVER}{self._group_generation}" if self._hands_over(partition) else ""
        )
        also = self._answered_also_part(partition, answered)
        at = self._commit_offset(partition, oldest)
        if at is None:
            return mark + also + handed
        inherited = {o for o in self._unsettled.get(partition, ()) if o >= handled}
        unsettled = inherited.union(queued.get(partition, ()), self._asking.get(partition, ()))
        distances = [str(o - at) for o in sorted(unsettled) if o >= at]
        if not distances:
            return mark + also + handed  # as before stop 39 when neither is said
        named, left_out = _joined_within(distances, _UNSETTLED_CHARS)
        if left_out:
            log.error(
                "partition %d: %d reservations the partner may still apply are not "
                "named in its commit (too many): its next owner takes them for "
                "answered, and their declarations' follow-ups may overtake them",
                partition,
                left_out,
            )
        # The hand-over last: a replica of the previous release reads the unsettled part
        # first and stops there.
        unsettled_part = f"{_PARTS}{_UNSETTLED}{named}"
        # The records answered past a left one before the accepted calls: one of those
        # left out is a reservation asked again after its deletion (held for ever), an
        # accepted call left out a 409 read as a refusal past the window.
        also = self._answered_also_part(partition, answered, len(mark + unsettled_part + handed))
        said = {at + int(d) for d in named.split(",")}
        inherited_accepted = {
            o: calls for o, calls in self._accepted.get(partition, {}).items() if o in inherited
        }
        accepted_part = self._accepted_part(
            partition,
            at,
            {**inherited_accepted, **accepted.get(partition, {})},
            said,
            _METADATA_CHARS - len(mark + unsettled_part + also + handed),
        )
        return f"{mark}{unsettled_part}{accepted_part}{also}{handed}"

    def _accepted_part(
        self,
        partition: int,
        at: int,
        accepted: Mapping[int, Spans],
        named: Collection[int],
        room: int,
    ) -> str:
        """The ``accepted:`` part of a commit at ``at`` naming the unsettled offsets
        ``named``: of those, the calls the partner answered 202, in ``room`` characters;
        an entry that does not fit is left out, those after it still named if they fit
        (logged: their next owner takes a 409 to them for a rejection once past the
        window)."""
        entries = [f"{o - at}={_spans(accepted[o])}" for o in sorted(accepted) if o in named]
        room -= len(_PARTS + _ACCEPTED)
        kept: list[str] = []
        for entry in entries:
            if len(entry) + (1 if kept else 0) <= room:
                room -= len(entry) + (1 if kept else 0)
                kept.append(entry)
        joined, left_out = ",".join(kept), len(entries) - len(kept)
        if left_out:
            log.error(
                "partition %d: %d follow-ups the partner accepted (202) are not named as "
                "such in its commit (too many): past the in-progress window, their next "
                "owner takes the partner's 409 to them for a refusal",
                partition,
                left_out,
            )
        return f"{_PARTS}{_ACCEPTED}{joined}" if joined else ""

    def _answered_also_part(self, partition: int, answered: int, said: int = 0) -> str:
        """The parts of a commit whose ``answered:`` mark is ``answered`` and whose other
        parts take ``said`` characters naming the records answered past the mark, as many
        as fit (the others are logged: their next owner asks them again).

        One by one in ``answered-also:`` when they fit, as before. When they do not (the
        batches answered ahead of a slow one: four polls overflowed the metadata and a
        third were asked again, stop 57), the first one by one there, which a replica of
        the previous release reads (a run in that part made it ignore the whole part), and
        the rest in runs in ``answered-runs:``, which it skips
        (:func:`_one_by_one_then_runs`)."""
        past_mark = self._answered_past.get(partition, ())
        every = sorted(o - answered for o in past_mark if o >= answered)
        past = every[:_ANSWERED_ALSO_AT_MOST]  # no more than a reader takes
        room = _METADATA_CHARS - said - len(_PARTS + _ANSWERED_ALSO)
        one_by_one, left_out = _joined_within([str(d) for d in past], room)
        parts = f"{_PARTS}{_ANSWERED_ALSO}{one_by_one}" if one_by_one else ""
        named = len(past) - left_out  # a prefix of them
        if left_out:
            whole_room = room + len(_PARTS + _ANSWERED_ALSO)
            parts, named = _one_by_one_then_runs(past, named, whole_room)
        if unnamed := len(every) - named:
            log.error(
                "partition %d: %d records answered past the first its last batch left are "
                "not named in its commit (too many): its next owner asks their "
                "reservations again",
                partition,
                unnamed,
            )
        return parts

    async def leaving(self, partitions: Collection[int], within_s: float | None = None) -> bool:
        """The group takes ``partitions`` back: no further record of them is handled,
        and the batch in flight is waited for, at most ``within_s`` (None: for as long as
        it takes). They are still committed (:meth:`to_commit`), until :meth:`revoked`.
        Whether the batch ended: if not, the reservations whose calls still run are
        named by the commits made meanwhile (:meth:`asking`)."""
        self.generation += 1
        self._settled.clear()
        leaving = set(partitions) & self._owned
        self._owned -= leaving
        self._leaving |= leaving
        try:
            await asyncio.wait_for(self._idle.wait(), within_s)
        except TimeoutError:
            log.warning(
                "partitions %s revoked while a batch of them is still handled after %.1f s: "
                "committed without waiting longer, the reservations whose partner calls "
                "still run named as ones the partner may still apply",
                sorted(partitions),
                within_s,
            )
            return False
        return True

    async def revoked(
        self, partitions: Collection[int], log_starts: Mapping[int, int] | None = None
    ) -> None:
        """The group took ``partitions`` back and their last commit is made: their queued
        operations that the log still holds are forgotten (``log_starts``: the first
        offset in each partition's log; a partition not in it keeps its rows). Not left
        by :meth:`leaving` first, they are now (the batch in flight waited for)."""
        if not set(partitions) <= self._leaving:
            await self.leaving(set(partitions) - self._leaving)
        for partition in partitions:
            self._leaving.discard(partition)
            self._handled.pop(partition, None)
            self._committed.pop(partition, None)
            self._committed_metadata.pop(partition, None)
            self._answered_before.pop(partition, None)
            self._unsettled.pop(partition, None)
            self._accepted.pop(partition, None)
            self._maybe_sent.pop(partition, None)
            self._assigned_at.pop(partition, None)
            self._asking.pop(partition, None)
        forgotten = self._pending.forget(partitions, log_starts or {})
        if forgotten:
            log.info(
                "partitions %s revoked: forgot their %d pending operations, which the "
                "next owner reads again from the committed offsets",
                sorted(partitions),
                forgotten,
            )

    def next_offset(self, partition: int) -> int | None:
        """The offset of the next record this replica expects of ``partition``: after
        the last it handled, else its commit at the assignment (None: not known)."""
        return self._handled.get(partition, self._assigned_at.get(partition))

    def skipped(self, partition: int, first: int) -> bool:
        """Whether a batch of ``partition`` beginning at ``first`` skips records this
        replica expected (a fetch out of range, reset to the log's start)."""
        expected = self.next_offset(partition)
        return expected is not None and first > expected

    def unread(self, partition: int, first: int, log_start: int) -> list[range]:
        """The offsets of ``partition`` that retention deleted before any replica
        answered them, when a batch of it begins at ``first`` and its log at
        ``log_start``, in gaps: from where this replica expected to go on (past what the
        partition's last committer answered) to the first record the log still holds,
        without those answered past a record a batch left. Empty when nothing was
        skipped, or the log start does not explain the gap."""
        expected = self.next_offset(partition)
        if expected is None or not self.skipped(partition, first) or log_start <= expected:
            return []
        begin = max(expected, self._answered_before.get(partition, expected))
        return _gaps(
            range(begin, max(begin, min(first, log_start))),
            self._answered_past.get(partition, ()),
        )

    def reading(self, firsts: Mapping[int, int]) -> None:
        """A batch begins at ``firsts`` (per partition, its first record's offset). A
        partition the group never committed, nothing of it handled yet, is read from
        there (its log start): where a commit made before the batch ends goes, to name
        what the batch leaves unsettled (a revocation, :meth:`leaving`)."""
        for partition, first in firsts.items():
            if partition in self._owned and self.next_offset(partition) is None:
                self._handled[partition] = first

    def answered_ahead(self, answered: Mapping[int, Collection[int]], generation: int) -> None:
        """A batch of ``generation`` answered these records (per partition, their offsets;
        every answer acknowledged) and waits for the batches before it to be marked
        (adapters/base/batch_pipeline.py): named in the commits meanwhile as answered past
        the commit point, so that a revocation committing before its turn comes hands them
        over answered; its next owner asked them again, and a reservation answered
        UNAVAILABLE was applied after its deletion was answered (a review of stop 57's
        batches under way). Marked in its turn, the batch says them again."""
        for partition, offsets in answered.items():
            ours = partition in self._owned and generation == self.generation
            waited_for = partition in self._leaving and generation < self.generation
            at = self.next_offset(partition)
            if not (ours or waited_for) or at is None:
                continue
            if kept := {o for o in offsets if o >= at}:
                self._answered_past.setdefault(partition, set()).update(kept)

    def handled(
        self,
        offsets: Mapping[int, int],
        generation: int,
        answered: Mapping[int, Collection[int]] | None = None,
    ) -> None:
        """A batch begun in ``generation`` was handled: each partition up to (before)
        its offset in ``offsets``; ``answered``: per partition, the offsets of the
        records it answered (those past a record it left are said in the commits)."""
        for partition, offset in offsets.items():
            # A batch begun before a revocation that waits for it (its partitions leaving,
            # not yet revoked) ended within the wait, its answers sent and acknowledged:
            # committed past, as any batch. Left out, its records were read again by the
            # next owner, a reservation answered UNAVAILABLE applied then, and its
            # deletion, answered in the same batch, met the partner's remembered answer
            # to its key: the quantity reserved for ever (review stop 45). Otherwise, cut
            # by a rebalance: its partitions are read again from the commit.
            ours = partition in self._owned and generation == self.generation
            waited_for = partition in self._leaving and generation < self.generation
            if ours or waited_for:
                self._handled[partition] = max(offset, self._handled.get(partition, 0))
                at = self._handled[partition]
                past = self._answered_past.get(partition, set())
                past.update((answered or {}).get(partition, ()))
                if kept := {o for o in past if o >= at}:
                    self._answered_past[partition] = kept
                else:
                    self._answered_past.pop(partition, None)

    def to_commit(self) -> dict[int, int]:
        """What to commit now, per partition owned (or being revoked): up to the last
        record handled, but no further than the oldest operation still queued; where that
        or what the commit says (:meth:`commit_metadata`: how far it was answered, the
        reservations the partner may still apply) changed since the last commit."""
        oldest = self._pending.oldest_offsets()
        # What commit_metadata says, follow-ups included: compared on the reservations
        # alone, an idle partition with such a follow-up was committed again at every
        # interval (ledger review, stop 45).
        queued = self._queued_unsettled()
        accepted = self._queued_accepted()
        marks: dict[int, int] = {}
        for partition in sorted(self._owned | self._leaving):
            at = self._commit_offset(partition, oldest)
            if at is None:
                continue
            said = self._metadata(partition, oldest, queued, accepted)
            if at > self._committed.get(partition, -1) or said != self._committed_metadata.get(
                partition
            ):
                marks[partition] = at
        return marks

    def committed(
        self, offsets: Mapping[int, int], metadata: Mapping[int, str] | None = None
    ) -> None:
        """The group took these commits, with ``metadata`` (None: what
        :meth:`commit_metadata` says now)."""
        for partition, offset in offsets.items():
            if partition in self._owned or partition in self._leaving:
                self._committed[partition] = offset
                self._committed_metadata[partition] = (
                    metadata[partition]
                    if metadata is not None and partition in metadata
                    else self.commit_metadata(partition)
                )
