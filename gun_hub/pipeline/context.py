"""What the processing steps share: settings-derived collaborators and the case store."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from gun_hub import metrics
from gun_hub.case import Case
from gun_hub.decide import decide
from gun_hub.envelope import ContentType, Envelope
from gun_hub.model.decision import Decision
from gun_hub.outbox import Outbox
from gun_hub.risk import RiskRules
from gun_hub.routing import RoutingTable
from gun_hub.security.audit import AuditTrail
from gun_hub.security.entitlements import CLEARANCE_PARTY
from gun_hub.status_events import StatusEvent, StatusKind
from gun_hub.topics import TopicRegistry
from gun_hub.xml.decision_codec import encode_decision


class CaseStore(Protocol):
    """Key-value access to cases (a faust table in the worker, a dict in unit tests)."""

    def get(self, key: bytes) -> bytes | None: ...

    def __setitem__(self, key: bytes, value: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class HubContext:
    topics: TopicRegistry
    routing: RoutingTable
    envelope: Envelope
    audit: AuditTrail
    risk_rules: RiskRules
    request_deadline_s: float
    clock: Callable[[], datetime]

    def record_audit(self, outbox: Outbox, partition: int, body: dict[str, Any]) -> None:
        """Append to the audit chain of ``partition`` (the partition being processed)."""
        for record in self.audit.append(partition, body):
            outbox.add(self.topics.audit, None, record, partition=partition)

    def emit_status(
        self,
        outbox: Outbox,
        reference: str,
        version: int,
        kind: StatusKind,
        detail: str = "",
        *,
        authority: str | None = None,
        outcome: str | None = None,
    ) -> None:
        event = StatusEvent(
            reference=reference,
            version=version,
            kind=kind,
            at=self.clock(),
            detail=detail,
            authority=authority,
            outcome=outcome,
        )
        outbox.add(self.topics.status, reference.encode(), event.to_bytes())

    def decide_case(self, outbox: Outbox, case: Case, partition: int) -> Decision:
        """Decide a case whose answers are all in, record the outcome on it, emit it."""
        decision = decide(
            reference=case.reference,
            version=case.version,
            stage=case.stage,
            results=case.results,
            decided_at=self.clock(),
            risk=[finding.hit() for finding in case.risk],
        )
        case.outcome = decision.outcome
        self.emit_decision(outbox, decision, partition)
        metrics.DECISION_SECONDS.observe(
            max(0.0, (decision.decided_at - case.opened_at).total_seconds())
        )
        return decision

    def emit_decision(self, outbox: Outbox, decision: Decision, partition: int) -> None:
        """The decision sealed to the clearance system, its audit record, its status."""
        document = encode_decision(decision)
        sealed = self.envelope.seal(
            document,
            recipient=CLEARANCE_PARTY,
            topic=self.topics.decisions,
            content_type=ContentType.XML,
        )
        outbox.add(self.topics.decisions, decision.reference.encode(), sealed)
        self.record_audit(
            outbox,
            partition,
            {
                "kind": "DECISION",
                "reference": decision.reference,
                "version": decision.version,
                "outcome": decision.outcome.value,
                "reasons": [reason.code for reason in decision.reasons],
                # Lets an auditor match the signed decision the clearance system received.
                "decision_sha256": hashlib.sha256(document).hexdigest(),
            },
        )
        metrics.DECISIONS.labels(outcome=decision.outcome.value).inc()
        self.emit_status(
            outbox,
            decision.reference,
            decision.version,
            StatusKind.DECIDED,
            "; ".join(reason.code for reason in decision.reasons),
            outcome=decision.outcome.value,
        )
