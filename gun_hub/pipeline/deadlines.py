"""Deadlines: a case whose authorities stay silent is decided in degraded mode.

A timer in the hub looks at the open cases of its partitions and publishes a tick, keyed
by reference, on the hub's internal deadlines topic when one is due; this step handles
the tick like any other event (so the case is written from an event, with its
changelog). Missing answers become UNAVAILABLE, the decision says which partner was
silent, and the outcome is CONTROL_DOCUMENTARY (or REFUSE when another authority
refused: a refusal is certain, silence is not).

An answer arriving after that decision changes nothing: it is recorded in the status
history (LATE_ANSWER_IGNORED, with its verdicts) for the officer doing the control.
"""

from __future__ import annotations

from gun_hub import metrics
from gun_hub.case import Case
from gun_hub.dead_letter import SourcePosition
from gun_hub.model.decision import Reason
from gun_hub.outbox import Outbox
from gun_hub.pipeline.context import CaseStore, HubContext
from gun_hub.status_events import StatusKind


class Deadlines:
    """Handles one tick of the deadlines topic."""

    def __init__(self, context: HubContext, cases: CaseStore) -> None:
        self._ctx = context
        self._cases = cases

    def handle(self, reference: str, version: int, source: SourcePosition) -> Outbox:
        outbox = Outbox()
        key = reference.encode()
        stored = self._cases.get(key)
        if stored is None:
            return outbox
        case = Case.from_bytes(stored)
        if self._ctx.announce_again_if_lost(outbox, case, source.partition):
            return outbox
        if case.version != version or case.decided or self._ctx.clock() < case.deadline:
            return outbox  # a stale or early tick: nothing is due
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
