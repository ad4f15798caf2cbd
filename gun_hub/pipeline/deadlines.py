"""Deadlines: a case whose authorities stay silent is decided in degraded mode.

A timer in the hub looks at the open cases of its partitions and publishes a tick, keyed
by reference, on the hub's internal deadlines topic (on the partition the declaration
arrived on) when one is due; this step handles the tick like any other event (so the case
is written from an event, with its changelog). Missing answers become UNAVAILABLE, the
decision says which partner was silent (not a partner in shadow mode, whose answers decide
nothing: its documents read as not connected; nor one in advice mode, whose silence only
warns: its documents read UNAVAILABLE then ADVISORY_ONLY, and the history still names it),
and the outcome is CONTROL_DOCUMENTARY (or REFUSE when another authority refused: a refusal
is certain, silence is not).

A deadline never fires while answers, or a declaration read again, may still wait unread
in the log (a worker back from a long stop reads its backlog first: answer_progress.py);
the next sweep ticks again. A declaration read again after a crash asks its partners
again, and gives them a whole deadline again (intake.py).

An answer arriving after that decision changes nothing: it is recorded in the status
history (LATE_ANSWER_IGNORED, with its verdicts) for the officer doing the control.

The same ticks report a reservation kept for a control that has had no result (no
RELEASED_AFTER_CONTROL or CANCELLED version) for ``control_report_after_s``: once, as a
CONTROL_RESULT_OVERDUE status and a metric, so that operations can chase the office; as
a deadline, only once the declarations that may hold that result are read through (a
worker back from a long stop reported every control whose result waited in its backlog:
review stop 38, L4).

A tick also keeps the ``open-cases`` entry to what its case waits for, since only an
event may change the table and the timer ticks an entry again every 5 s for as long as it
is there (review stop 40): an entry with no case, or naming another version than a decided
case's, or an answers deadline on a decided case, or a control's on a case that keeps
nothing for one (a retired case's marker) is removed; one naming another version than an
undecided case's (that version's handling failed after writing it) is replaced by the
case's own deadline. The routes that end or replace a case remove its entry themselves;
this is for what one left behind when it failed midway (before a failed handling's
table writes were undone with its outbox: handling_writes.py), an entry whose tombstone
the changelog lost, or a case tombstoned without its entry. An entry that does not read
as a deadline is made to say what its case waits for too, and its tick dead-lettered
STATE_UNREADABLE (ADR 0022): the timer ticks it rather than skipping it for ever (review
stop 40, open item 1).

The timer does not read every open case each time it looks (every case decided CONTROL_*
keeps its entry for up to a week: in production, hundreds of thousands): the due times of
the next hour are kept in memory (``DeadlineIndex``), fed by the pipeline's own writes
(``IndexedOpenCases``), and the table is read again when the hour moves on and after each
rebalance (entries recovered from the changelog were never written here).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.decision import Reason
from gun_contract.security.state_cipher import StateUnreadable
from gun_hub import metrics
from gun_hub.domain.case import Case
from gun_hub.domain.lifecycle import held_reservations, kept_for_control, only_authority
from gun_hub.domain.rollout import RolloutMode
from gun_hub.domain.status_events import StatusKind
from gun_hub.pipeline.hub_context import (
    CaseStore,
    HubContext,
    OpenCaseEntry,
    OpenCases,
    open_case_entry,
)
from gun_hub.pipeline.unreadable_state import dead_letter_unreadable

log = logging.getLogger(__name__)

COMPONENT = "hub.deadlines"  # the agent's name, as runtime/app.py dead-letters for it
OPEN_CASES = "open-cases"  # the table, as a dead letter names it


class DeadlineIndex:
    """When the open cases of this worker's partitions fall due, for the next hour: a heap
    of (due, key), read by the deadline timer (runtime/deadline_sweep.py).

    A key may be in the heap more than once, or for an entry since removed or rewritten:
    what the heap says is a time to look, and the timer checks the table's entry then.
    Entries due beyond the horizon are left in the table, read again once half the
    horizon has passed. ``invalidate`` (after a rebalance) has the table read again at
    the next look: a partition taken over brings entries this worker never wrote."""

    _YIELD_EVERY = 5000

    def __init__(self, horizon_s: float = 3600.0) -> None:
        self._horizon_s = horizon_s
        self._heap: list[tuple[float, bytes]] = []
        self._until = float("-inf")  # every entry due by then is in the heap
        self._stale = True
        self._pushed_while_reading: list[tuple[float, bytes]] | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, key: bytes, due: float) -> None:
        """Look at ``key`` at ``due``; beyond the horizon, the table has it for later."""
        if self._pushed_while_reading is not None:
            self._pushed_while_reading.append((due, key))  # held once the read ends
        elif due <= self._until:
            heapq.heappush(self._heap, (due, key))

    def invalidate(self) -> None:
        # A flag, not ``_until = -inf``: a read under way (it yields) ends by setting
        # ``_until``, which would drop an invalidation that came while it ran.
        self._stale = True

    def needs_reading(self, now: float) -> bool:
        return self._stale or now + self._horizon_s / 2 > self._until

    async def read(self, entries: Callable[[], Iterable[tuple[Any, Any]]], now: float) -> None:
        """Hold every entry of ``entries`` (the table's) due within the horizon from
        ``now``, and what was pushed while they were read."""
        self._stale = False
        until = now + self._horizon_s
        held: list[tuple[float, bytes]] = []
        self._pushed_while_reading = []
        try:
            for read, (key, value) in enumerate(entries(), 1):
                if read % self._YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # a large table: the agents go on meanwhile
                try:
                    due = OpenCaseEntry.from_bytes(bytes(value)).due
                except (ValueError, UnicodeDecodeError):
                    # Looked at now: the timer ticks it, and its handler replaces or
                    # removes it (skipped, it stayed for ever: review stop 40, item 1).
                    due = now
                if due <= until:
                    held.append((due, bytes(key)))
            held.extend(pushed for pushed in self._pushed_while_reading if pushed[0] <= until)
        except BaseException:
            self._stale = True  # read again at the next look; the heap as it was meanwhile
            self._heap.extend(self._pushed_while_reading)
            heapq.heapify(self._heap)
            raise
        finally:
            self._pushed_while_reading = None
        heapq.heapify(held)
        self._heap = held
        self._until = until

    def due(self, now: float) -> list[bytes]:
        """The keys to look at by ``now``, taken off the heap, each once."""
        keys: dict[bytes, None] = {}
        while self._heap and self._heap[0][0] <= now:
            keys[heapq.heappop(self._heap)[1]] = None
        return list(keys)


class IndexedOpenCases:
    """The open-cases table as the pipeline writes it: each entry written is scheduled in
    the worker's ``DeadlineIndex``."""

    def __init__(self, table: OpenCases, index: DeadlineIndex) -> None:
        self._table = table
        self._index = index

    def get(self, key: bytes) -> bytes | None:
        return self._table.get(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._table[key] = value
        self._index.push(key, OpenCaseEntry.from_bytes(value).due)

    def pop(self, key: bytes, default: bytes | None = None) -> bytes | None:
        return self._table.pop(key, default)


class Deadlines:
    """Handles one tick of the deadlines topic."""

    def __init__(self, context: HubContext, cases: CaseStore) -> None:
        self._ctx = context
        self._cases = cases

    def handle(self, reference: str, version: int, source: SourcePosition) -> Effects:
        outbox = Effects()
        key = reference.encode()
        stored = self._cases.get(key)
        case = None if stored is None else Case.from_bytes(stored)
        if case is not None:
            # Decisions the broker may not have are announced again; the tick goes on.
            self._ctx.announce_again_if_lost(outbox, case, source.partition)
        self._keep_entry_to_what_waits(outbox, key, case, version, source)
        if case is None:
            return outbox
        if case.version != version:
            return outbox  # a stale tick: nothing is due
        if case.decided:
            self._report_overdue_control(outbox, case, source.partition)
            return outbox
        now = self._ctx.clock()
        if now < case.deadline or not self._ctx.answers_read(source.partition, case.awaiting):
            return outbox  # early, or answers may wait unread: a later sweep ticks again
        silent = sorted(case.awaiting)
        case.time_out()
        metrics.DEADLINES.labels(authority=",".join(silent)).inc()
        # A shadow authority's silence decides nothing (its documents are decided as if
        # it were off: rollout.py), so it is no reason for the decision and no deadline
        # passed in the declaration's history; what it would have decided keeps it
        # (shadow.py). Named, it read to the clearance system and the trader as a control
        # for want of its answer (a review of degraded mode, shadow).
        passed = [a for a in silent if self._mode(case, a) is not RolloutMode.SHADOW]
        # An advisory one's silence is in the history (advice mode is there for what the
        # partner says, or does not) and its document's reasons (UNAVAILABLE, then
        # ADVISORY_ONLY, as an advisory refusal), but it holds nothing, so it is no
        # DEADLINE of the decision: that reason is an authority whose silence counts (it
        # then told the trader the documents are checked at the office instead, and it
        # read so on a release: a review of degraded mode, advice).
        named = [a for a in passed if self._mode(case, a).counts]
        reasons = []
        if passed:
            # The time the partners were given: a version asked again when read again
            # after a restart is given a whole deadline from then, not from its first
            # reading (it said "within 3630s" of a partner asked 30 s before; a review of
            # degraded mode).
            given = min(
                case.deadline - case.opened_at, timedelta(seconds=self._ctx.request_deadline_s)
            )
            waited = int(given.total_seconds())
            self._ctx.emit_status(
                outbox,
                reference,
                version,
                StatusKind.DEADLINE_PASSED,
                f"no answer from {', '.join(passed)} within {waited}s",
                lodging=case.receipt,
            )
            if named:
                text = f"no answer from {', '.join(named)} within {waited}s"
                reasons.append(Reason(code="DEADLINE", text=text))
        self._ctx.decide_case(outbox, case, source.partition, extra_reasons=reasons)
        self._ctx.store_case(self._cases, case)
        return outbox

    @staticmethod
    def _mode(case: Case, authority: str) -> RolloutMode:
        return case.rollout.get(authority, RolloutMode.ENFORCE)

    def _keep_entry_to_what_waits(
        self,
        outbox: Effects,
        key: bytes,
        case: Case | None,
        version: int,
        source: SourcePosition,
    ) -> None:
        """The open-cases entry of ``key`` made to say what ``case`` waits for, if it says
        something else. Only a tick can change the table (event context), and the timer
        ticks an entry again every few seconds for as long as it is there: an entry
        nothing waits for, left by a handling that failed after writing it or by a case
        removed without it, was ticked for ever (review stop 40, open item)."""
        raw = self._ctx.open_cases.get(key)
        if raw is None:
            return
        try:
            entry = OpenCaseEntry.from_bytes(raw)
        except (ValueError, UnicodeDecodeError):
            self._replace_unreadable_entry(outbox, key, case, version, source)
            return
        if case is None:
            self._drop_entry(key, "no case is stored for it")
            return
        if not case.decided:
            if entry.version != case.version:
                # The case is still an earlier version's, undecided (a later version's
                # handling failed after replacing its deadline): without its own
                # deadline nothing would ever decide it.
                log.warning(
                    "deadline of %s named version %d, its case is version %d, undecided: "
                    "the case's own deadline restored",
                    case.reference,
                    entry.version,
                    case.version,
                )
                self._ctx.open_cases[key] = open_case_entry(case, source.partition)
            return
        if entry.version != case.version:
            self._drop_entry(key, f"its case is version {case.version}, decided")
        elif not entry.waits_for_control or not kept_for_control(case) or case.decision is None:
            self._drop_entry(key, "its case is decided and keeps nothing for a control")

    def _replace_unreadable_entry(
        self,
        outbox: Effects,
        key: bytes,
        case: Case | None,
        version: int,
        source: SourcePosition,
    ) -> None:
        """An entry that does not read as a deadline (bytes a writer of the changelog put
        there, a value cut short) is data about its key, as any stored value that does
        not open (ADR 0022): what ``case`` waits for takes its place (its answers'
        deadline, or its control's report date), or it is removed when nothing waits;
        the tick is dead-lettered (STATE_UNREADABLE), naming the reference, never the
        value. Skipped before, it was never ticked, stayed for ever, kept a decided case
        from retiring, and, in the place of an undecided case's deadline, left the case
        undecided for ever (review stop 40, open item 1)."""
        waits = self._what_waits(case, source.partition)
        if waits is None:
            self._ctx.open_cases.pop(key, None)
            then = "removed: nothing waits on that reference"
        else:
            self._ctx.open_cases[key] = waits
            assert case is not None  # noqa: S101 - something waits only on a case
            then = (
                f"replaced by what version {case.version} waits for: its "
                + ("control's report date" if case.decided else "answers' deadline")
                + " restored"
            )
        unreadable = StateUnreadable(
            f"{OPEN_CASES}: the value of key {key.decode('utf-8', 'replace')!r} does not read "
            "as a deadline (version|due|partition|kind)",
            table=OPEN_CASES,
            key=key,
        )
        log.warning("%s; %s", unreadable, then)
        # The tick as the timer sends it (an entry that does not read names no version).
        tick = str(version).encode()
        dead_letter_unreadable(
            outbox, self._ctx.topics.dlq, tick, source, COMPONENT, unreadable, then
        )

    def _what_waits(self, case: Case | None, partition: int) -> bytes | None:
        """The entry ``case`` waits on, written as its handling wrote it: an undecided
        case's deadline, a control's report date (due ``control_report_after_s`` after
        the decision, as ``HubContext.decide_case`` writes it); None when nothing waits."""
        if case is None:
            return None
        if not case.decided:
            return open_case_entry(case, partition)
        if not kept_for_control(case) or case.decision is None:
            return None
        due = case.decision.decided_at.timestamp() + self._ctx.control_report_after_s
        return OpenCaseEntry(
            case.version, due, partition, waits_for_control=True, awaiting=()
        ).to_bytes()

    def _drop_entry(self, key: bytes, why: str) -> None:
        """Remove an open-cases entry nothing waits for (said once: it is gone after)."""
        if self._ctx.open_cases.pop(key, None) is not None:
            log.warning("deadline of %s removed: %s", key.decode("utf-8", "replace"), why)

    def _report_overdue_control(self, outbox: Effects, case: Case, partition: int) -> None:
        key = case.reference.encode()
        entry = self._ctx.open_cases.get(key)
        if entry is None or not kept_for_control(case) or case.decision is None:
            return
        waiting = OpenCaseEntry.from_bytes(entry)
        if not waiting.waits_for_control or waiting.version != case.version:
            return
        if self._ctx.clock().timestamp() < waiting.due:
            return
        if not self._ctx.answers_read(partition, ()):
            # The control's result (RELEASED_AFTER_CONTROL, CANCELLED) may wait unread in
            # the declarations backlog of a worker back from a long stop: reported only
            # once it is read through; the entry stays, a later sweep ticks again.
            return
        self._ctx.open_cases.pop(key, None)  # reported once
        metrics.CONTROLS_OVERDUE.inc()
        days = self._ctx.control_report_after_s / 86400
        self._ctx.emit_status(
            outbox,
            case.reference,
            case.version,
            StatusKind.CONTROL_RESULT_OVERDUE,
            f"reservations kept for a {case.decision.outcome.value} have had no result for "
            f"{days:g} days: the office should send RELEASED_AFTER_CONTROL or CANCELLED",
            authority=only_authority(held_reservations(case)),
            lodging=case.receipt,
        )
