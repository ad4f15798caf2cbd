"""Replaying what a down partner could not take, in each declaration's order.

The adapter's live path and its replay rounds both go through :class:`Replayer`, which
holds one lock per declaration reference, so the partner sees one declaration's
operations on each document in the order the hub asked them (the partner keeps a
declaration's position, and judges its version, per document):

* a new request first replays what its declaration has queued; a write-off, deletion or
  give-back that would overtake a queued one still failing on one of its documents is
  queued behind it instead (answered UNAVAILABLE), never sent out of order;
* an operation asked again (a replay) asks the partner only about the documents its last
  attempt in this process left unanswered (UNAVAILABLE); those answered for good keep
  their answer, as the partner's per-document idempotency keys would give it again (review
  stop 40, W2: a reservation of 5,994 documents was re-sent whole every round). After a
  restart, or taken over from another replica, every document is asked;
* a replay round walks every declaration's queue concurrently; an operation still
  meeting an UNAVAILABLE partner holds back what follows on its documents, and blocks
  nothing else; any definitive answer (a refusal too) ends the operation, which is
  answered and leaves the queue;
* a reservation that would overtake a queued operation on its documents is not sent:
  answered UNAVAILABLE (degraded mode), not queued, and the queue stays whole: no
  queued operation is dropped unanswered (found by review, stop 36); a check, which
  changes nothing, is asked. Unless an earlier owner may have sent it (``sent_before``):
  then it is queued behind what holds it back, as one the partner may still apply
  (below; ledger review, stop 45);
* a reservation answered UNAVAILABLE that the partner may still apply (a call timed out
  or met 409 "being processed": :meth:`PartnerPort.may_still_apply`) is queued, never
  answered again: the replay rounds ask it again with the same key until the partner
  answers it for good, and meanwhile its documents' later operations (its own version's
  deletion or write-off) wait behind it: on the documents answered UNAVAILABLE only, a
  document whose call the partner answered is free (review stop 39-SF, SF4). Sent
  ahead, a refused declaration's deletion was answered "no reservation", then the
  partner applied the reservation: held for ever (review stop 39, P1);
* except a queued deletion or reservation of an older version, which a later version's
  reservation or deletion of all its documents supersedes: that one is sent, and once the partner
  applied it the deletion is answered STALE and never sent again (review stop 36, G7: a
  deletion the partner kept failing held every later version in degraded mode). A
  write-off or a give-back is never superseded (:func:`supersedes`);
* a replayed operation the partner refuses as stale (a newer version took its documents
  over) is answered like any other, and logged;
* an operation forgotten while its declaration's queue is replayed (its partition was
  revoked, :mod:`adapters.base.ownership`) ends that replay: the partition's next owner
  replays it and what follows;
* an operation failing at every attempt for longer than :data:`STUCK_AFTER_S` is said
  once in the log, and the longest such time is the adapter's
  ``gun_adapter_longest_failing_operation_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Set
from contextlib import asynccontextmanager, contextmanager

from adapters.base.pending import PendingOperations, operation_key
from adapters.base.spec import PartnerPort
from gun_contract.model.exchange import STALE_VERSION, AuthorityRequest, DocumentAnswer, Operation
from gun_contract.model.verdicts import Verdict
from gun_contract.trace import trace_id_for, tracing

log = logging.getLogger(__name__)

# A write-off, a deletion or a give-back must reach the partner's ledger even after an
# outage; checks and reservations are answered UNAVAILABLE (degraded mode) and not kept.
REPLAYED_OPERATIONS = frozenset({Operation.WRITE_OFF, Operation.DELETE, Operation.GIVE_BACK})
# Operations whose version the partner records (a check changes nothing).
_VERSIONED = frozenset({Operation.RESERVE, *REPLAYED_OPERATIONS})
# Operations that restate (or drop) a declaration's whole position on a document: applied,
# they make a queued deletion or reservation of an older version of it pointless
# (``supersedes``).
_RESTATING = frozenset({Operation.RESERVE, Operation.DELETE})
STUCK_AFTER_S = 600.0
"""A queued operation failing at every attempt for this long is said in the log (once):
the partner may be up and failing that one call (review stop 36, G7)."""
REPLAY_CONCURRENCY = 8
"""Declarations replayed at once in a round (each one's operations stay in order)."""

# Sends the answer of a replayed operation, on the partition its request was read from.
Publish = Callable[[AuthorityRequest, tuple[DocumentAnswer, ...], int | None], Awaitable[None]]


class KeyedLocks:
    """One asyncio lock per key, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


def unavailable(answers: tuple[DocumentAnswer, ...]) -> bool:
    return any(a.verdict is Verdict.UNAVAILABLE for a in answers)


def _answered_unavailable(request: AuthorityRequest, detail: str) -> tuple[DocumentAnswer, ...]:
    return tuple(
        DocumentAnswer(
            goods_item=item.number,
            code=document.code,
            reference=document.reference,
            verdict=Verdict.UNAVAILABLE,
            detail=detail,
        )
        for item in request.items
        for document in item.documents
    )


class Rounds:
    """How many replay rounds began and ended, so that a caller can wait for a round that
    began after it asked: one already under way may have listed the queue before what the
    caller just did (the adapter's integration tests wait on it instead of sleeping
    longer than the interval, which a loaded machine does not honour)."""

    def __init__(self) -> None:
        self._begun = 0
        self._ended = 0
        self._ending = asyncio.Event()

    def begin(self) -> None:
        self._begun += 1

    def end(self) -> None:
        self._ended += 1
        # Everyone waiting on this round wakes; later waiters wait on the next one's.
        self._ending.set()
        self._ending = asyncio.Event()

    async def one_begun_after_now(self) -> None:
        """Return once a round that begins after this call has ended (rounds run one
        after the other, so that is the round numbered one past those begun now)."""
        wanted = self._begun + 1
        while self._ended < wanted:
            await self._ending.wait()


def _documents(request: AuthorityRequest) -> frozenset[str]:
    """The partner documents ``request`` operates on. The partner keeps a declaration's
    position, and judges its version, per document: operations on different documents
    touch different ledgers, and their order between them does not matter. By reference
    alone (one document quoted under two codes is one ledger at the partner: kept in
    order, never told apart)."""
    return frozenset(d.reference for item in request.items for d in item.documents)


def without_documents(
    request: AuthorityRequest, answered: Set[tuple[str, str]]
) -> AuthorityRequest | None:
    """``request`` less the documents (code, reference) in ``answered``, every goods item
    quoting the others kept (a document's call restates its lines of every item, so its
    body, and its idempotency key, are those of the first attempt); None: nothing left."""
    if not answered:
        return request
    items = tuple(
        item.model_copy(
            update={
                "documents": tuple(
                    d for d in item.documents if (d.code, d.reference) not in answered
                )
            }
        )
        for item in request.items
    )
    left = tuple(item for item in items if item.documents)
    return request.model_copy(update={"items": left}) if left else None


def supersedes(newer: AuthorityRequest, older: AuthorityRequest) -> bool:
    """Whether ``newer``, once applied, makes the queued ``older`` pointless and harmful
    after it: ``older`` is a deletion (it only drops a reservation) or a reservation the
    partner may still apply (its version guard refuses it after ``newer``), ``newer`` a
    later version's reservation (which restates the declaration's whole position) or
    deletion of every document ``older`` concerns. A write-off (goods that left) or a
    give-back (goods given back) records a fact no later version restates: never
    superseded."""
    return (
        older.operation in _RESTATING
        and newer.operation in _RESTATING
        and newer.version > older.version
        and _documents(older) <= _documents(newer)
    )


def _applied_on(answers: tuple[DocumentAnswer, ...], documents: frozenset[str]) -> bool:
    """Whether the partner applied the operation (VALID) on every one of ``documents``."""
    mine = [a for a in answers if a.reference in documents]
    return bool(mine) and all(a.verdict is Verdict.VALID for a in mine)


def superseded_answers(
    request: AuthorityRequest, by: AuthorityRequest
) -> tuple[DocumentAnswer, ...]:
    """The answer of a queued operation a later version's applied one superseded: STALE,
    as the partner's version guard would answer it (the hub records
    FOLLOW_UP_SUPERSEDED). The partner's ledger holds the newer version's position,
    whatever an earlier attempt of this one did."""
    return tuple(
        DocumentAnswer(
            goods_item=item.number,
            code=document.code,
            reference=document.reference,
            verdict=Verdict.MISMATCH,
            partner_code=STALE_VERSION,
            detail=(
                f"superseded by version {by.version}'s {by.operation.value}, applied by the "
                "partner; not sent again"
            ),
        )
        for item in request.items
        for document in item.documents
    )


# A queued operation still waiting: the request and the partition its answer goes to.
_Waiting = list[tuple[AuthorityRequest, int | None]]


class Replayer:
    """Asks the partner, keeping each declaration's order across outages."""

    def __init__(
        self,
        pending: PendingOperations,
        partner: PartnerPort,
        publish: Publish,
        *,
        concurrency: int = REPLAY_CONCURRENCY,
        clock: Callable[[], float] = time.monotonic,
        sends_for: Callable[[int | None], bool] = lambda partition: True,
    ) -> None:
        self._pending = pending
        # Whether the queued operations of a partition may be sent: not once it is being
        # revoked (ownership.py). Its revocation commit names every call left under way
        # and says the partition was handed over; a replay begun after it would be named
        # by no commit, and the next owner's first attempt would meet its 409.
        self._sends_for = sends_for
        self._partner = partner
        self._publish = publish
        self._concurrency = concurrency
        self._locks = KeyedLocks()
        self._clock = clock
        # Per queued operation (its operation key) that met an UNAVAILABLE partner: when
        # it first did, in this process, and its request id. Kept across rounds for the
        # ones that fail again; what a round no longer finds failing is dropped.
        self._failing: dict[str, tuple[float, str]] = {}
        self._failed_this_round: set[str] = set()
        self._said_stuck: set[str] = set()
        # Per queued reservation (its operation key): the documents whose calls the
        # partner may still apply, those answered UNAVAILABLE. It holds back what follows
        # on those only: a document whose call was answered is free (review stop 39-SF,
        # SF4). Not known (one queued again after a restart): all of its documents.
        self._unsettled_documents: dict[str, frozenset[str]] = {}
        # Per queued write-off, deletion or give-back (its operation key) whose call the
        # partner may still be applying (timed out, or met 409 "being processed"): a
        # commit names it, so that the partition's next owner asks it as a repeat and
        # takes the partner's 409 for "still in progress" (review stop 39-SF, SF2). One
        # queued behind another and never sent is not in it; one whose replay is under
        # way is (a revocation's commit is made meanwhile, or the replica stops and cuts
        # the call: the partner may be applying it).
        self._follow_ups_unsettled: dict[str, AuthorityRequest] = {}
        # Per write-off, deletion or give-back whose live call is under way (its operation
        # key): the partner may answer some of its calls 202 meanwhile, and a commit made
        # then (a revocation that stops waiting) names those accepted (review of stop 55's
        # change: named unsettled only, its next owner read their 409 as a refusal).
        self._follow_ups_under_way: dict[str, AuthorityRequest] = {}
        # Per queued operation (its operation key) that the partner answered in part: the
        # request and the answers of its documents answered for good (not UNAVAILABLE) by
        # its last attempt in this process. A replay asks the rest only: the partner's
        # idempotency keys are per document, so a document's answer does not change, and
        # a reservation of 5,994 documents was re-sent whole every round for the few
        # still unanswered (review stop 40, W2). Not known (after a restart, or taken
        # over from another replica): every document is asked.
        self._answered_before: dict[str, tuple[AuthorityRequest, tuple[DocumentAnswer, ...]]] = {}

    async def ask(
        self,
        request: AuthorityRequest,
        partition: int | None = None,
        offset: int | None = None,
        logged_at: float | None = None,
        *,
        sent_before: bool = False,
        accepted: Collection[int] = (),
    ) -> tuple[DocumentAnswer, ...]:
        """The partner's answers to a request read from the log (the live path), at
        ``partition`` and ``offset``, its record's timestamp ``logged_at`` (kept with the
        operation if it is queued). ``sent_before``: the commit names it as a follow-up
        the partition's previous owner left unsettled at the partner: its next attempt
        is a repeat, a 409 to it "still in progress" (SF2); ``accepted``: the positions of
        its calls the partner answered 202 (the commit's ``accepted:``), whose 409 is so
        however late."""
        async with self._locks.hold(request.reference):
            if sent_before:
                # Before anything: queued behind another here, its replay is a repeat too.
                self._partner.sent_before(request, accepted)
            waiting: _Waiting = (
                await self._replayed_before(request.reference)
                if self._pending.has(request.reference)
                else []
            )
            ahead = self._on_documents_of(request, waiting)
            held_back = any(not supersedes(request, older) for older, _ in ahead)
            if held_back and request.operation in REPLAYED_OPERATIONS:
                self._pending.add(request, partition, offset, logged_at)
                if sent_before:
                    # Not sent here, but its earlier owner's call may still be applied
                    # (and accepted): named in this replica's commits as that one named
                    # it, or its next owner would take it for never sent (review of
                    # stop 55's change).
                    self._follow_ups_unsettled[operation_key(request)] = request
                return _answered_unavailable(
                    request,
                    "queued behind an earlier operation of this declaration that the "
                    "partner has not taken yet",
                )
            if held_back and request.operation is Operation.RESERVE and sent_before:
                # Not sent here, but an earlier owner's call may still be applied by the
                # partner: kept as one it may still apply (named in the commits, its
                # declaration's later operations behind it), asked again with its key
                # once what holds it back is done (ledger review, stop 45: left out, the
                # refused declaration's deletion overtook it).
                self._pending.add(request, partition, offset, logged_at)
                return _answered_unavailable(
                    request,
                    "not sent: an earlier operation of this declaration waits for the "
                    "partner (queued, with an earlier attempt the partner may still apply)",
                )
            if held_back and request.operation in _VERSIONED:
                # A reservation is not sent ahead of a queued write-off or give-back (or a
                # deletion it does not wholly restate): the partner would then refuse that
                # one as stale (a write-off of goods that left never applied). It is not
                # queued (reservations are never replayed): answered UNAVAILABLE, its
                # version goes to degraded mode, the queue stays whole (found by review,
                # stop 36: the reservation went out and the queued operations it restated
                # were dropped unanswered). A check changes nothing at the partner and is
                # asked all the same.
                return _answered_unavailable(
                    request,
                    "not sent: an earlier operation of this declaration waits for the "
                    "partner (queued)",
                )
            # Nothing queued on its documents, or only deletions of older versions that
            # this one restates: sent now (the lock holds the queue so). Review stop 36,
            # G7: one deletion the partner kept failing held every later version of its
            # declaration in degraded mode.
            with self._under_way(request):
                answers = await self._partner.answer(request)
            # Sent whole: what an earlier attempt answered is superseded by this one's.
            self._answered_before.pop(operation_key(request), None)
            if unavailable(answers) and request.operation in REPLAYED_OPERATIONS:
                self._pending.add(request, partition, offset, logged_at)
                self._follow_up_failed(request)
                self._answered_for_good(request, answers)
                return answers
            if self._unsettled(request, answers):
                # The partner may still apply it (review stop 39, P1): kept, asked again,
                # and what follows on its documents waits behind it. Its answer stays
                # the UNAVAILABLE the hub gets now: a refused declaration's decision does
                # not wait for it, its deletion does.
                self._pending.add(request, partition, offset, logged_at)
                self._still_unsettled_on(request, answers)
                self._answered_for_good(request, answers)
                log.info(
                    "%s may still be applied by the partner: queued, asked again until "
                    "answered, its documents' later operations behind it",
                    request.request_id,
                )
            if ahead:
                try:
                    await self._supersede(ahead, request, answers)
                except Exception:
                    # Its answer not published (the broker): it stays queued, replayed,
                    # and superseded again by the declaration's next restating operation.
                    log.warning(
                        "the operations %s superseded could not be answered; kept queued",
                        request.request_id,
                        exc_info=True,
                    )
            return answers

    def _unsettled(self, request: AuthorityRequest, answers: tuple[DocumentAnswer, ...]) -> bool:
        """Whether ``request`` is a reservation answered UNAVAILABLE that the partner may
        still apply (a call timed out, or met 409 "being processed")."""
        return (
            request.operation is Operation.RESERVE
            and unavailable(answers)
            and self._partner.may_still_apply(request)
        )

    async def settle_later(
        self,
        request: AuthorityRequest,
        partition: int | None,
        offset: int | None,
        logged_at: float | None,
    ) -> None:
        """Queue a reservation read again after a restart or a rebalance that the
        commit's metadata names as one the partner may still apply: asked again with its
        key (a 409 is the partner still at it), and its documents' later operations wait
        behind it, as they did with the replica that asked it first. Not answered again."""
        async with self._locks.hold(request.reference):
            self._partner.sent_before(request)
            # What this process knew of its documents, from before it lost the partition,
            # is not trusted: all of them are held back (the safe side, SF4), and all of
            # them are asked again.
            self._unsettled_documents.pop(operation_key(request), None)
            self._answered_before.pop(operation_key(request), None)
            self._pending.add(request, partition, offset, logged_at)

    async def _replayed_before(self, reference: str) -> _Waiting:
        """``_replay`` ahead of a live operation: what is still queued. A failure (its
        answer not published, the broker unreachable) leaves the queue as it is, all of it
        still waiting: the live operation waits behind what concerns its documents.
        Raised, it dead-lettered the live operation as unhandled and let its offset be
        committed: never sent (stop 30, found by review)."""
        try:
            return await self._replay(reference)
        except Exception:
            log.warning(
                "replaying the operations of %s failed; the new one waits behind them",
                reference,
                exc_info=True,
            )
            return self._pending.queued_at(reference)

    async def replay_all(self) -> None:
        """One replay round over every declaration with queued operations."""
        slots = asyncio.Semaphore(self._concurrency)
        self._failed_this_round = set()

        async def replay(reference: str) -> None:
            async with slots, self._locks.hold(reference):
                await self._replay(reference)

        references = self._pending.references()
        results = await asyncio.gather(
            *(replay(reference) for reference in references), return_exceptions=True
        )
        for reference, result in zip(references, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                # One declaration's bad round (a bug, a broker hiccup) blocks no other.
                log.error(
                    "replaying the operations of %s failed; will retry",
                    reference,
                    exc_info=result,
                )
        self._after_round()

    def longest_failing_s(self) -> float:
        """How long the queued operation failing longest has met an UNAVAILABLE partner at
        every attempt, since its first failed attempt in this process (0: none fails)."""
        if not self._failing:
            return 0.0
        return max(0.0, self._clock() - min(since for since, _ in self._failing.values()))

    def _after_round(self) -> None:
        """Forget what this round no longer found failing (taken, superseded, forgotten
        on a revoke), and say once each operation failing longer than STUCK_AFTER_S."""
        self._failing = {k: v for k, v in self._failing.items() if k in self._failed_this_round}
        self._said_stuck &= self._failing.keys()
        # Answers kept for operations no longer queued here (forgotten on a revocation).
        self._answered_before = {
            k: v for k, v in self._answered_before.items() if self._pending.holds(v[0])
        }
        now = self._clock()
        stuck = {
            key: value
            for key, value in self._failing.items()
            if now - value[0] >= STUCK_AFTER_S and key not in self._said_stuck
        }
        if not stuck:
            return
        self._said_stuck |= stuck.keys()
        since, request_id = min(stuck.values())
        # One line a round at most (a long outage brings many past the threshold at once).
        log.warning(
            "%d queued operation(s) newly failed at every attempt for more than %d s, the "
            "longest %s for %d s: what follows on their documents waits (a write-off or "
            "give-back holds later versions in degraded mode); if the partner answers other "
            "calls, ask its administration about this one",
            len(stuck),
            STUCK_AFTER_S,
            request_id,
            now - since,
        )

    def _failed(self, request: AuthorityRequest) -> None:
        key = operation_key(request)
        self._failing.setdefault(key, (self._clock(), request.request_id))
        self._failed_this_round.add(key)

    def _ended(self, request: AuthorityRequest) -> None:
        self._failing.pop(operation_key(request), None)
        self._unsettled_documents.pop(operation_key(request), None)
        self._follow_ups_unsettled.pop(operation_key(request), None)
        self._answered_before.pop(operation_key(request), None)

    def _follow_up_failed(self, request: AuthorityRequest) -> None:
        """``request``, a queued follow-up, was just answered UNAVAILABLE: named in the
        commits while the partner may still be applying it (SF2)."""
        if self._partner.may_still_apply(request):
            self._follow_ups_unsettled[operation_key(request)] = request
        else:
            self._follow_ups_unsettled.pop(operation_key(request), None)

    def follow_ups_unsettled(self) -> list[AuthorityRequest]:
        """The queued follow-ups the partner may still be applying (a commit names those
        still queued: :meth:`PendingOperations.offsets_of`)."""
        return list(self._follow_ups_unsettled.values())

    def follow_ups_accepted(self) -> list[tuple[AuthorityRequest, frozenset[int]]]:
        """Of :meth:`follow_ups_unsettled` and the follow-ups whose live call is under
        way, those the partner answered 202 for some of their calls, with those calls'
        positions: a commit names them, and the
        partition's next owner takes a 409 to them for "still processing" however late
        (review of stop 54: past the window from its own first attempt, it took one for a
        rejection, and the give-back behind the write-off went ahead of it)."""
        named = {**self._follow_ups_under_way, **self._follow_ups_unsettled}
        return [
            (request, calls)
            for request in named.values()
            if (calls := self._partner.accepted_calls(request))
        ]

    @contextmanager
    def _under_way(self, request: AuthorityRequest) -> Iterator[None]:
        """Around a live call of ``request``: a follow-up's accepted calls are named
        meanwhile (:meth:`follow_ups_accepted`)."""
        if request.operation not in REPLAYED_OPERATIONS:
            yield
            return
        key = operation_key(request)
        self._follow_ups_under_way[key] = request
        try:
            yield
        finally:
            self._follow_ups_under_way.pop(key, None)

    def _answered_for_good(
        self, request: AuthorityRequest, answers: tuple[DocumentAnswer, ...]
    ) -> None:
        """``request``, queued, was just answered ``answers``: keep those of the documents
        the partner answered for good, so that a replay does not ask them again."""
        failing = {(a.code, a.reference) for a in answers if a.verdict is Verdict.UNAVAILABLE}
        kept = tuple(a for a in answers if (a.code, a.reference) not in failing)
        if kept:
            self._answered_before[operation_key(request)] = (request, kept)
        else:
            self._answered_before.pop(operation_key(request), None)

    async def _asked_again(
        self, request: AuthorityRequest, *, settling: bool
    ) -> tuple[DocumentAnswer, ...]:
        """The answers of a queued operation asked again: the documents the partner
        answered for good in an earlier attempt are not sent again (their answers are
        kept), the others are. ``settling``: a reservation the partner may still apply."""
        _, answered = self._answered_before.get(operation_key(request), (request, ()))
        rest = without_documents(request, {(a.code, a.reference) for a in answered})
        if rest is None:
            return answered
        if settling:
            # Sent before, maybe by an earlier process: a 409 is "still at it". Only what
            # is sent again: a key answered for good and not sent stays settled.
            self._partner.sent_before(rest)
        return answered + await self._partner.answer(rest)

    def _still_unsettled_on(
        self, request: AuthorityRequest, answers: tuple[DocumentAnswer, ...]
    ) -> None:
        """``request``, a queued reservation, was just answered ``answers``: the
        documents answered UNAVAILABLE are those the partner may still be applying."""
        self._unsettled_documents[operation_key(request)] = frozenset(
            a.reference for a in answers if a.verdict is Verdict.UNAVAILABLE
        )

    def _holding(self, queued: AuthorityRequest) -> frozenset[str]:
        """The documents on which the queued operation holds back what follows: all of
        them, but for a reservation only those its partner may still apply (SF4)."""
        if queued.operation is Operation.RESERVE:
            known = self._unsettled_documents.get(operation_key(queued))
            if known:
                return known
        return _documents(queued)

    def _on_documents_of(self, request: AuthorityRequest, waiting: _Waiting) -> _Waiting:
        """The operations of ``waiting`` holding back a document ``request`` concerns."""
        mine = _documents(request)
        return [(older, p) for older, p in waiting if self._holding(older) & mine]

    async def _replay(self, reference: str) -> _Waiting:
        """Replay ``reference``'s queue in order: an operation on a document of one still
        failing (or waiting) is not sent, unless it supersedes every one of them; the
        others are. What is still queued, in order (empty: the queue is). Holds the
        reference's lock."""
        waiting: _Waiting = []
        for request, partition in self._pending.queued_at(reference):
            if not self._pending.holds(request) or not self._sends_for(partition):
                # Forgotten meanwhile (its partition was revoked, ownership.py), or being
                # revoked: the partition's next owner replays it and what follows, in order.
                return self._pending.queued_at(reference)
            ahead = self._on_documents_of(request, waiting)
            if any(not supersedes(request, older) for older, _ in ahead):
                waiting.append((request, partition))
                continue
            # Its version's trace (gun_contract/trace.py): the call, the answer and the log
            # lines of a replay are followed like those of the first attempt.
            with tracing(trace_id_for(request.reference, request.version)):
                settling = request.operation is Operation.RESERVE
                if not settling:
                    # Under way: named until an answer says what became of it.
                    self._follow_ups_unsettled[operation_key(request)] = request
                answers = await self._asked_again(request, settling=settling)
                if unavailable(answers) and (not settling or self._unsettled(request, answers)):
                    if settling:
                        self._still_unsettled_on(request, answers)
                    else:
                        self._follow_up_failed(request)
                    self._answered_for_good(request, answers)
                    self._failed(request)
                    waiting.append((request, partition))
                    continue
                if settling:
                    # The hub decided on its UNAVAILABLE: nothing more is told about it,
                    # and what waited behind it on its documents goes now.
                    self._pending.done(request)
                    self._ended(request)
                    log.info(
                        "the partner settled %s: %s",
                        request.request_id,
                        ", ".join(sorted({a.verdict.value for a in answers})),
                    )
                    waiting = await self._after(ahead, request, answers, waiting)
                    continue
                # Answer first, then forget: a crash in between replays it again, and the
                # partner answers a repeated idempotency key as the first time.
                await self._publish(request, answers, partition)
                self._pending.done(request)
                self._ended(request)
                if any(a.stale_version for a in answers):
                    log.info(
                        "dropped %s: stale, the partner has seen a newer version",
                        request.request_id,
                    )
                else:
                    log.info("replayed %s after the partner came back", request.request_id)
            waiting = await self._after(ahead, request, answers, waiting)
        return waiting

    async def _after(
        self,
        ahead: _Waiting,
        request: AuthorityRequest,
        answers: tuple[DocumentAnswer, ...],
        waiting: _Waiting,
    ) -> _Waiting:
        """What still waits once ``request`` (ahead of which ``ahead`` waited) was
        answered ``answers``: less what it superseded."""
        superseded = await self._supersede(ahead, request, answers)
        return [(r, p) for r, p in waiting if r not in superseded]

    async def _supersede(
        self, ahead: _Waiting, newer: AuthorityRequest, answers: tuple[DocumentAnswer, ...]
    ) -> list[AuthorityRequest]:
        """End the queued operations ``ahead`` of ``newer`` that it superseded, now that
        the partner answered it ``answers``: those it applied on every one of their
        documents, answered STALE and never sent again (an earlier attempt still under
        way at the partner meets its version guard). One it refused (a reservation
        refused for quantity: the older one's reservation may still be held) stays. The
        ones ended."""
        ended = []
        for older, partition in ahead:
            if not (
                supersedes(newer, older)
                and _applied_on(answers, _documents(older))
                and self._pending.holds(older)
            ):
                continue
            if older.operation is not Operation.RESERVE:
                # A queued reservation was answered already (UNAVAILABLE): nothing more.
                await self._publish(older, superseded_answers(older, newer), partition)
            self._pending.done(older)
            self._ended(older)
            ended.append(older)
            log.info(
                "dropped %s: superseded by %s, which the partner applied",
                older.request_id,
                newer.request_id,
            )
        return ended
