"""Replaying what a down partner could not take, in each declaration's order.

The adapter's live path and its replay rounds both go through :class:`Replayer`, which
holds one lock per declaration reference, so the partner sees one declaration's
operations in the order the hub asked them:

* a new request first replays what its declaration has queued; a write-off, deletion or
  give-back that would overtake a queued one still failing is queued behind it instead
  (answered UNAVAILABLE), never sent out of order;
* a replay round walks every declaration's queue concurrently; a declaration whose head
  still meets an UNAVAILABLE partner stops there and blocks no other; any definitive
  answer (a refusal too) ends the operation, which is answered and leaves the queue;
* a reservation that would overtake a queued operation is not sent: answered UNAVAILABLE
  (degraded mode), never queued, and the queue stays whole: no queued operation is
  dropped unanswered (found by review, stop 36); a check, which changes nothing, is asked;
* a replayed operation the partner refuses as stale (a newer version took its documents
  over) is answered like any other, and logged;
* an operation forgotten while its declaration's queue is replayed (its partition was
  revoked, :mod:`adapters.base.ownership`) ends that replay: the partition's next owner
  replays it and what follows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from adapters.base.pending import PendingOperations
from adapters.base.spec import PartnerPort
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from gun_contract.model.verdicts import Verdict
from gun_contract.trace import trace_id_for, tracing

log = logging.getLogger(__name__)

# A write-off, a deletion or a give-back must reach the partner's ledger even after an
# outage; checks and reservations are answered UNAVAILABLE (degraded mode) and not kept.
REPLAYED_OPERATIONS = frozenset({Operation.WRITE_OFF, Operation.DELETE, Operation.GIVE_BACK})
# Operations whose version the partner records (a check changes nothing).
_VERSIONED = frozenset({Operation.RESERVE, *REPLAYED_OPERATIONS})
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


class Replayer:
    """Asks the partner, keeping each declaration's order across outages."""

    def __init__(
        self,
        pending: PendingOperations,
        partner: PartnerPort,
        publish: Publish,
        *,
        concurrency: int = REPLAY_CONCURRENCY,
    ) -> None:
        self._pending = pending
        self._partner = partner
        self._publish = publish
        self._concurrency = concurrency
        self._locks = KeyedLocks()

    async def ask(
        self,
        request: AuthorityRequest,
        partition: int | None = None,
        offset: int | None = None,
        logged_at: float | None = None,
    ) -> tuple[DocumentAnswer, ...]:
        """The partner's answers to a request read from the log (the live path), at
        ``partition`` and ``offset``, its record's timestamp ``logged_at`` (kept with the
        operation if it is queued)."""
        async with self._locks.hold(request.reference):
            clear = not self._pending.has(request.reference) or await self._replayed_before(
                request.reference
            )
            if not clear and request.operation in REPLAYED_OPERATIONS:
                self._pending.add(request, partition, offset, logged_at)
                return _answered_unavailable(
                    request,
                    "queued behind an earlier operation of this declaration that the "
                    "partner has not taken yet",
                )
            if not clear and request.operation in _VERSIONED:
                # A reservation is not sent ahead of a queued operation either: the partner
                # would then refuse that one as stale (a write-off of goods that left never
                # applied). It is not queued (reservations are never replayed): answered
                # UNAVAILABLE, its version goes to degraded mode, the queue stays whole
                # (found by review, stop 36: the reservation went out and the queued
                # operations it restated were dropped unanswered). A check changes
                # nothing at the partner and is asked all the same.
                return _answered_unavailable(
                    request,
                    "not sent: an earlier operation of this declaration waits for the "
                    "partner (queued)",
                )
            # Clear: nothing of this declaration is queued (the lock holds it so), so
            # nothing older can be superseded by what this one does.
            answers = await self._partner.answer(request)
            if unavailable(answers) and request.operation in REPLAYED_OPERATIONS:
                self._pending.add(request, partition, offset, logged_at)
            return answers

    async def _replayed_before(self, reference: str) -> bool:
        """``_replay`` ahead of a live operation; a failure (its answer not published, the
        broker unreachable) leaves the queue as it is and counts as not clear: the live
        operation waits behind it. Raised, it dead-lettered the live operation as
        unhandled and let its offset be committed: never sent (stop 30, found by review)."""
        try:
            return await self._replay(reference)
        except Exception:
            log.warning(
                "replaying the operations of %s failed; the new one waits behind them",
                reference,
                exc_info=True,
            )
            return False

    async def replay_all(self) -> None:
        """One replay round over every declaration with queued operations."""
        slots = asyncio.Semaphore(self._concurrency)

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

    async def _replay(self, reference: str) -> bool:
        """Replay ``reference``'s queue in order, until its head still meets an
        UNAVAILABLE partner; True when the queue is empty. Holds the reference's lock."""
        for request, partition in self._pending.queued_at(reference):
            if not self._pending.holds(request):
                # Forgotten meanwhile (its partition was revoked, ownership.py): the
                # partition's next owner replays it and what follows, in order.
                return not self._pending.has(reference)
            # Its version's trace (gun_contract/trace.py): the call, the answer and the log
            # lines of a replay are followed like those of the first attempt.
            with tracing(trace_id_for(request.reference, request.version)):
                answers = await self._partner.answer(request)
                if unavailable(answers):
                    return False
                # Answer first, then forget: a crash in between replays it again, and the
                # partner answers a repeated idempotency key as the first time.
                await self._publish(request, answers, partition)
                self._pending.done(request)
                if any(a.stale_version for a in answers):
                    log.info(
                        "dropped %s: stale, the partner has seen a newer version",
                        request.request_id,
                    )
                else:
                    log.info("replayed %s after the partner came back", request.request_id)
        return True
