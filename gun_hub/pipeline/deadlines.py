"""Deadlines: a case whose authorities stay silent is decided in degraded mode.

A timer in the hub looks at the open cases of its partitions and publishes a tick, keyed
by reference, on the hub's internal deadlines topic (on the partition the declaration
arrived on) when one is due; this step handles the tick like any other event (so the case
is written from an event, with its changelog). Missing answers become UNAVAILABLE, the
decision says which partner was silent, and the outcome is CONTROL_DOCUMENTARY (or REFUSE
when another authority refused: a refusal is certain, silence is not).

A deadline never fires while answers, or a declaration read again, may still wait unread
in the log (a worker back from a long stop reads its backlog first: answer_progress.py);
the next sweep ticks again. A declaration read again after a crash asks its partners
again, and gives them a whole deadline again (intake.py).

An answer arriving after that decision changes nothing: it is recorded in the status
history (LATE_ANSWER_IGNORED, with its verdicts) for the officer doing the control.

The same ticks report a reservation kept for a control that has had no result (no
RELEASED_AFTER_CONTROL or CANCELLED version) for ``control_report_after_s``: once, as a
CONTROL_RESULT_OVERDUE status and a metric, so that operations can chase the office.
"""

from __future__ import annotations

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.decision import Reason
from gun_hub import metrics
from gun_hub.domain.case import Case
from gun_hub.domain.lifecycle import kept_for_control
from gun_hub.domain.status_events import StatusKind
from gun_hub.pipeline.hub_context import CaseStore, HubContext, OpenCaseEntry


class Deadlines:
    """Handles one tick of the deadlines topic."""

    def __init__(self, context: HubContext, cases: CaseStore) -> None:
        self._ctx = context
        self._cases = cases

    def handle(self, reference: str, version: int, source: SourcePosition) -> Effects:
        outbox = Effects()
        key = reference.encode()
        stored = self._cases.get(key)
        if stored is None:
            return outbox
        case = Case.from_bytes(stored)
        # Decisions the broker may not have are announced again; the tick goes on.
        self._ctx.announce_again_if_lost(outbox, case, source.partition)
        if case.version != version:
            return outbox  # a stale tick: nothing is due
        if case.decided:
            self._report_overdue_control(outbox, case)
            return outbox
        now = self._ctx.clock()
        if now < case.deadline or not self._ctx.answers_read(source.partition):
            return outbox  # early, or answers may wait unread: a later sweep ticks again
        silent = sorted(case.awaiting)
        case.time_out()
        metrics.DEADLINES.labels(authority=",".join(silent)).inc()
        waited = int((case.deadline - case.opened_at).total_seconds())
        text = f"no answer from {', '.join(silent)} within {waited}s"
        self._ctx.emit_status(outbox, reference, version, StatusKind.DEADLINE_PASSED, text)
        self._ctx.decide_case(
            outbox, case, source.partition, extra_reasons=[Reason(code="DEADLINE", text=text)]
        )
        self._cases[key] = case.to_bytes()
        return outbox

    def _report_overdue_control(self, outbox: Effects, case: Case) -> None:
        key = case.reference.encode()
        entry = self._ctx.open_cases.get(key)
        if entry is None or not kept_for_control(case) or case.decision is None:
            return
        waiting = OpenCaseEntry.from_bytes(entry)
        if not waiting.waits_for_control or waiting.version != case.version:
            return
        if self._ctx.clock().timestamp() < waiting.due:
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
        )
