"""Intake: a declaration arrives; validate it, route it, open its case, ask the authorities."""

from __future__ import annotations

from datetime import datetime, timedelta

from gun_hub import metrics
from gun_hub.case import Case, RiskFinding
from gun_hub.dead_letter import ErrorClass, SourcePosition, add_dead_letter
from gun_hub.decide import refuse_unreadable
from gun_hub.model.decision import Reason
from gun_hub.model.declaration import Declaration, Stage
from gun_hub.model.exchange import Operation
from gun_hub.outbox import Outbox
from gun_hub.pipeline.context import CaseStore, HubContext, open_case_entry
from gun_hub.pipeline.lifecycle import dropped_documents, requests_for
from gun_hub.risk import assess_risk
from gun_hub.routing import (
    OPERATION_FOR_STAGE,
    RoutedDeclaration,
    build_requests,
    route_documents,
)
from gun_hub.status_events import StatusKind
from gun_hub.xml.declaration_codec import DeclarationCodec, sniff_identity
from gun_hub.xml.safe_parse import XmlRejected

COMPONENT = "hub.intake"


class Intake:
    """Handles one record of the declarations topic."""

    def __init__(self, context: HubContext, codec: DeclarationCodec, cases: CaseStore) -> None:
        self._ctx = context
        self._codec = codec
        self._cases = cases

    def handle(self, data: bytes, source: SourcePosition) -> Outbox:
        outbox = Outbox()
        metrics.DECLARATIONS_RECEIVED.inc()
        try:
            declaration = self._codec.decode(data)
        except XmlRejected as rejection:
            self._reject(outbox, data, source, rejection)
            return outbox
        self._accept(outbox, declaration, source.partition)
        return outbox

    def _reject(
        self, outbox: Outbox, data: bytes, source: SourcePosition, rejection: XmlRejected
    ) -> None:
        kind = f"XML_{rejection.kind.value}"
        metrics.DECLARATIONS_REJECTED.labels(kind=kind).inc()
        metrics.DEAD_LETTERS.labels(kind=kind).inc()
        identity = sniff_identity(data)
        add_dead_letter(
            outbox,
            self._ctx.topics.dlq,
            data,
            error_class=ErrorClass.PERMANENT,
            kind=kind,
            reason=str(rejection),
            source=source,
            component=COMPONENT,
            reference=identity.reference if identity else None,
        )
        if identity is None:
            return
        key = identity.reference.encode()
        known = self._cases.get(key)
        if known is not None and Case.from_bytes(known).version >= identity.version:
            self._ignore_stale(outbox, identity.reference, identity.version)
            return
        now = self._ctx.clock()
        decision = refuse_unreadable(
            reference=identity.reference,
            version=identity.version,
            reason=Reason(code=kind, text=str(rejection)),
            decided_at=now,
        )
        self._cases[key] = Case(
            reference=identity.reference,
            version=identity.version,
            stage=Stage.LODGED,
            opened_at=now,
            deadline=now,
            awaiting=[],
            expected=[],
            results=[],
            outcome=decision.outcome,
        ).to_bytes()
        self._ctx.emit_status(
            outbox, identity.reference, identity.version, StatusKind.REJECTED, kind
        )
        self._ctx.emit_decision(outbox, decision, source.partition)

    def _ignore_stale(self, outbox: Outbox, reference: str, version: int) -> None:
        metrics.STALE_VERSIONS.inc()
        self._ctx.emit_status(
            outbox,
            reference,
            version,
            StatusKind.IGNORED_STALE_VERSION,
            "an equal or higher version of this declaration was already received",
        )

    def _accept(self, outbox: Outbox, declaration: Declaration, partition: int) -> None:
        ctx = self._ctx
        key = declaration.reference.encode()
        known_bytes = self._cases.get(key)
        known = Case.from_bytes(known_bytes) if known_bytes is not None else None
        if known is not None:
            if self._ctx.announce_again_if_lost(outbox, known, partition):
                return
            if declaration.version <= known.version:
                self._ignore_stale(outbox, declaration.reference, declaration.version)
                return
            if not known.decided:
                ctx.emit_status(
                    outbox,
                    known.reference,
                    known.version,
                    StatusKind.SUPERSEDED,
                    f"superseded by version {declaration.version} before a decision",
                )
        now = ctx.clock()
        ctx.emit_status(outbox, declaration.reference, declaration.version, StatusKind.RECEIVED)
        routed = route_documents(declaration, ctx.routing)
        case = Case.open(
            declaration=declaration,
            routed=routed,
            opened_at=now,
            deadline=now + timedelta(seconds=ctx.request_deadline_s),
        )
        case.risk = [
            RiskFinding(code=hit.code, action=hit.action, text=hit.text)
            for hit in assess_risk(declaration, routed.authorities, ctx.risk_rules)
        ]
        if known is not None:
            self._release_dropped_documents(outbox, known, routed, now)
        if case.complete:
            # Nothing to ask anyone (no documents, or only exempt/unrouted ones).
            ctx.decide_case(outbox, case, partition)
            self._cases[key] = case.to_bytes()
            return
        # The case is stored before the requests leave, so an answer can never find none.
        self._cases[key] = case.to_bytes()
        ctx.open_cases[key] = open_case_entry(case)
        operation = OPERATION_FOR_STAGE[declaration.stage]
        ctx.send_requests(
            outbox, build_requests(declaration, ctx.routing, routed.authorities, operation, now)
        )
        ctx.emit_status(
            outbox,
            declaration.reference,
            declaration.version,
            StatusKind.REQUESTS_SENT,
            f"{operation.value} sent to {', '.join(routed.authorities)}",
        )

    def _release_dropped_documents(
        self, outbox: Outbox, previous: Case, routed: RoutedDeclaration, now: datetime
    ) -> None:
        """A new version restates the documents it quotes; those it dropped are deleted."""
        kept = {(d.authority, d.reference) for d in routed.documents if d.authority}
        dropped = dropped_documents(previous, kept)
        if not dropped:
            return
        requests = requests_for(previous, dropped, Operation.DELETE, previous.version, now)
        self._ctx.send_requests(outbox, requests)
        self._ctx.emit_status(
            outbox,
            previous.reference,
            previous.version,
            StatusKind.FOLLOW_UP_SENT,
            f"DELETE of {len(dropped)} document(s) no longer quoted sent to "
            + ", ".join(r.authority for r in requests),
        )
