"""What the processing steps share: settings-derived collaborators and the case store."""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from gun_contract.effects import Effects
from gun_contract.envelope import ContentType, Envelope
from gun_contract.model.decision import Decision, Reason
from gun_contract.model.declaration import Stage
from gun_contract.model.encoding import json_bytes
from gun_contract.model.exchange import AuthorityRequest
from gun_contract.model.verdicts import Verdict
from gun_contract.security.state_cipher import StateCipher
from gun_contract.topics import TopicRegistry, reference_partition
from gun_contract.trace import trace_header, trace_id_for
from gun_hub import metrics
from gun_hub.domain.case import Case
from gun_hub.domain.decide import DEGRADED_MODE, counted, decide, refuse_superseded
from gun_hub.domain.lifecycle import follow_up_requests, kept_for_control
from gun_hub.domain.override import OverrideReview, audit_body, review_override
from gun_hub.domain.risk import RiskRules
from gun_hub.domain.rollout import RolloutBoard, RolloutMode
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.shadow import rollout_uses
from gun_hub.domain.status_events import StatusEvent, StatusKind, bounded_detail
from gun_hub.ops.facts import (
    AnyFact,
    DecisionFact,
    DocumentUse,
    OverrideUse,
    RolloutUse,
    fact_bytes,
)
from gun_hub.pipeline.decision_outbox import (
    HEADER_DECLARANT,
    HEADER_LODGING,
    HEADER_ORIGIN,
    HEADER_VERSION,
    OUTBOX_STATE,
    declarant_tag,
    outbox_record_key,
)
from gun_hub.pipeline.handling_writes import WriteJournal
from gun_hub.security.audit import AuditTrail
from gun_hub.xml.decision_codec import encode_decision

log = logging.getLogger(__name__)


class CaseStore(Protocol):
    """Key-value access to cases (a faust table in the worker, a dict in unit tests)."""

    def get(self, key: bytes) -> bytes | None: ...

    def __setitem__(self, key: bytes, value: bytes) -> None: ...


class OpenCases(Protocol):
    """Undecided cases and their deadlines: what the deadline timer looks at."""

    def __setitem__(self, key: bytes, value: bytes) -> None: ...

    def get(self, key: bytes) -> bytes | None: ...

    # Positional, the default always given: as a dict's ``pop`` (what stands in for the
    # faust table in the tests) and faust's take it.
    def pop(self, key: bytes, default: bytes | None, /) -> bytes | None: ...


def due_time(text: str | bytes) -> float:
    """A due time as a timer's table entry writes it: a finite number, else ValueError
    (the entry is unreadable). NaN is never due and never later than now either: an open
    case's deadline so read left it undecided for ever, a retention entry's retired its
    case at once (stop 45); the hub never writes one, a damaged changelog may."""
    due = float(text)
    if not math.isfinite(due):
        raise ValueError(f"a due time that is not a time: {text!r}")
    return due


@dataclass(frozen=True, slots=True)
class OpenCaseEntry:
    """What the deadline sweep needs of a case that waits for something.

    ``partition`` is the partition its declaration arrived on: the producer chose it
    (contract section 2), so the tick is sent there, never to a partition re-derived
    from the key. ``due`` is a POSIX time: the request deadline of an undecided case, or
    when a reservation kept for a control becomes overdue (``waits_for_control``).
    ``awaiting``: the authorities whose answers the tick waits to have read through (as
    the case was opened: a superset of those still awaited); a control's report waits
    for its declarations partition only (its result comes as a declaration). None: not
    said (an entry written before stop 47), every authority's.
    """

    version: int
    due: float
    partition: int | None
    waits_for_control: bool = False
    awaiting: tuple[str, ...] | None = None

    def to_bytes(self) -> bytes:
        partition = "" if self.partition is None else str(self.partition)
        kind = "control" if self.waits_for_control else "answers"
        said = f"{self.version}|{self.due}|{partition}|{kind}"
        if self.awaiting is not None:
            said += "|" + ",".join(self.awaiting)
        return said.encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> OpenCaseEntry:
        """Also reads the ``version|due`` entries written before partitions were kept,
        and those written before the authorities awaited were."""
        version, due, *rest = value.decode().split("|")
        partition = int(rest[0]) if rest and rest[0] else None
        control = len(rest) > 1 and rest[1] == "control"
        awaiting = tuple(a for a in rest[2].split(",") if a) if len(rest) > 2 else None
        return cls(int(version), due_time(due), partition, control, awaiting)


def open_case_entry(case: Case, partition: int | None) -> bytes:
    return OpenCaseEntry(
        case.version, case.deadline.timestamp(), partition, awaiting=tuple(sorted(case.awaiting))
    ).to_bytes()


def _all_read(partition: int, authorities: Collection[str] | None = None) -> bool:
    return True


class Retirement(Protocol):
    """Where a decided case is scheduled to leave the hot table (retention.py)."""

    def decided(self, reference: str, partition: int) -> None: ...

    def remember(self, marker: Case, partition: int) -> None: ...


@dataclass(eq=False, slots=True)
class OnItsWay:
    """One announcement of a decision on its way, for the partition of the record that
    made it. Each is its own (compared by identity): the settling of one given up late
    must not forget another made since for the same decision.

    ``stored`` and ``marked``: the decided case as the handling stored it, and the same
    case marked announced (``HubContext.store_case``). Once the broker has the decision,
    a case still stored as ``stored`` is written as ``marked``, without reading it back
    into a model and writing it out again (stop 39); anything else stored then (a newer
    version, a later handling's write, a retention marker) is read as before."""

    partition: int
    stored: bytes | None = None
    marked: bytes | None = None


@dataclass(frozen=True, slots=True)
class HubContext:
    topics: TopicRegistry
    routing: RoutingTable
    envelope: Envelope
    audit: AuditTrail
    cases: CaseStore
    open_cases: OpenCases
    risk_rules: RiskRules
    request_deadline_s: float
    clock: Callable[[], datetime]
    # Seals the decision outbox's records with the hub's state key (emit_decision).
    outbox_cipher: StateCipher
    # The decision outbox's partition count (kafka.partitions): a decision goes to the
    # partition of its reference's hash, whichever partition its case lives on.
    outbox_partitions: int
    # Whether every record in the log on ``partition`` of the declarations and of the
    # responses of the authorities given (None: every one) has been read
    # (answer_progress.py); a deadline waits until it is (defect 10).
    answers_read: Callable[[int, Collection[str] | None], bool] = _all_read
    control_report_after_s: float = 7 * 24 * 3600.0
    # Takeover notices sealed (hub.seal_takeover_notices): false only while workers of
    # before stop 56, which read none, share the group (a rolling upgrade).
    seal_takeover_notices: bool = True
    # Decided cases leave the cases table after a retention (retention.py); None: kept.
    retention: Retirement | None = None
    # The rollout modes in force (rollout.py), kept current by the worker's follower.
    rollout: RolloutBoard = field(default_factory=RolloutBoard)
    # Decisions announced by this worker whose delivery is still on its way (the agents do
    # not wait for the broker: runtime/settling.py), by (reference, version). Not "lost":
    # announced again only if the worker restarts before the broker has them, or if the
    # partition they were announced for is revoked (``give_up``).
    announcing: dict[tuple[str, int], OnItsWay] = field(default_factory=dict)
    # The table writes of the handling under way, undone with a failed handler's outbox
    # (handling_writes.py); None: not undone (unit tests of other things).
    writes: WriteJournal | None = None
    # The announcements made since the last ``mark``, undone with a failed handler's.
    _announced_since_mark: list[tuple[tuple[str, int], OnItsWay]] = field(
        default_factory=list, init=False, repr=False
    )

    def mark(self) -> int:
        """Before a record is handled: what its handler changes here is recorded, to be
        put back (``undo``) if the handler fails and its outbox is discarded. Handlers
        run without yielding, so nothing else is announced in between."""
        self._announced_since_mark.clear()
        if self.writes is not None:
            self.writes.mark()
        return self.audit.mark()

    def undo(self, mark: int) -> None:
        """The handler failed: its outbox (links, decisions) never leaves, so the
        decisions it announced are not on their way. Remembered as such, each was skipped
        by every later reading of its case until the worker restarted (found by the
        review of stop 35). Its table writes are undone: a prefix of them left cases no
        handling leaves (handling_writes.py; review stop 40, open item 2)."""
        if self.writes is not None:
            self.writes.undo()
        self.audit.undo(mark)
        for key, on_its_way in self._announced_since_mark:
            self._arrived_or_not(key, on_its_way)
        self._announced_since_mark.clear()

    def kept(self) -> None:
        """The handler completed: what it changed stands, and nothing more is recorded
        for it (what its delivery writes later is no handling's to undo)."""
        if self.writes is not None:
            self.writes.kept()
        self.audit.kept()
        self._announced_since_mark.clear()

    def record_audit(
        self,
        outbox: Effects,
        partition: int,
        body: dict[str, Any],
        about: tuple[str, int] | None = None,
    ) -> None:
        """Append to the audit chain of ``partition`` (the partition being processed);
        ``about``: the (reference, version) whose trace the link carries (a checkpoint
        signed along with it carries none)."""
        for number, record in enumerate(self.audit.append(partition, body)):
            headers = [trace_header(*about)] if number == 0 and about is not None else None
            outbox.add(self.topics.audit, None, record, headers, partition=partition)

    def emit_status(
        self,
        outbox: Effects,
        reference: str,
        version: int,
        kind: StatusKind,
        detail: str = "",
        *,
        authority: str | None = None,
        outcome: str | None = None,
        lodging: str | None,
    ) -> None:
        """``lodging``: the receipt the event is about (``Case.receipt``), which the
        operations view ties to its declarant; None where no declarant was read."""
        event = StatusEvent(
            reference=reference,
            version=version,
            kind=kind,
            at=self.clock(),
            detail=bounded_detail(detail),
            authority=authority,
            outcome=outcome,
            lodging=lodging,
        )
        outbox.add(
            self.topics.status,
            reference.encode(),
            event.to_bytes(),
            [trace_header(reference, version)],
        )

    def superseded_undecided(
        self, outbox: Effects, case: Case, by_version: int, *, read_elsewhere: str = ""
    ) -> Case:
        """``case``, undecided, decided REFUSE, SUPERSEDED because ``by_version`` replaced
        it (``read_elsewhere``: where, when on another partition: takeover.py), its
        SUPERSEDED status said: the decided case, to announce (``Case.superseded``)."""
        where = f" (read at {read_elsewhere})" if read_elsewhere else ""
        self.emit_status(
            outbox,
            case.reference,
            case.version,
            StatusKind.SUPERSEDED,
            f"superseded by version {by_version} before a decision{where}",
            lodging=case.receipt,
        )
        decision = refuse_superseded(
            reference=case.reference,
            version=case.version,
            by_version=by_version,
            decided_at=self.clock(),
        )
        return case.superseded(by_version, decision)

    def decide_case(
        self,
        outbox: Effects,
        case: Case,
        partition: int,
        extra_reasons: Sequence[Reason] = (),
    ) -> Decision:
        """Decide a case whose answers are all in (or whose deadline passed), record the
        outcome on it, emit it, and start the quantity follow-up (lifecycle.py). An
        override that acted is audited (security/audit.py) beside the decision."""
        override = self.override_of(case)
        decision = decide(
            reference=case.reference,
            version=case.version,
            stage=case.stage,
            results=case.results,
            decided_at=self.clock(),
            extra_reasons=extra_reasons,
            risk=[finding.hit() for finding in case.risk],
            override=override,
            rollout=case.rollout,
        )
        case.outcome = decision.outcome
        case.decision = decision
        if kept_for_control(case):
            # Its reservations wait for the control's result: report it if none comes.
            # The entry is replaced in one write (each write is a changelog record).
            due = decision.decided_at.timestamp() + self.control_report_after_s
            self.open_cases[case.reference.encode()] = OpenCaseEntry(
                case.version, due, partition, waits_for_control=True, awaiting=()
            ).to_bytes()
        else:
            self.open_cases.pop(case.reference.encode(), None)
        self.announce(outbox, case, partition)
        log.info(
            "decided %s version %d: %s (%s)",
            case.reference,
            case.version,
            decision.outcome.value,
            ", ".join(reason.code for reason in decision.reasons) or "no reason",
            extra={"trace_id": trace_id_for(case.reference, case.version)},
        )
        metrics.DECISION_SECONDS.observe(
            max(0.0, (decision.decided_at - case.opened_at).total_seconds())
        )
        return decision

    def announce(
        self,
        outbox: Effects,
        case: Case,
        partition: int,
        stored: Case | None = None,
        *,
        again: bool = False,
    ) -> None:
        """Emit a decided case's decision and follow-ups; once the broker has them, mark
        the case announced. Called again for a case found decided but unannounced
        (``again``: the decision is counted in the metrics once, when first announced).
        ``stored``: the case as it is stored, when ``case`` is an earlier version it
        carries (the follow-ups' answers are solicited on it)."""
        assert case.decision is not None  # noqa: S101 - only decided cases are announced
        case.announced = False
        override = self.override_of(case)
        self.emit_decision(
            outbox,
            case.decision,
            partition,
            declarant_eori=case.declarant_eori,
            lodging=case.receipt,
            stage=case.stage,
            override=override,
            office=case.office,
            rollout=rollout_uses(case, self.routing),
            counted=not again,
        )
        if override.covered or override.declined:
            # Audited and watched (domain notes): beside the decision's own audit record.
            if not again:
                metrics.OVERRIDES.labels(outcome=case.decision.outcome.value).inc()
            self.record_audit(
                outbox,
                partition,
                audit_body(case.reference, case.version, case.declarant_eori, override),
                about=(case.reference, case.version),
            )
        follow_ups = follow_up_requests(case, self.clock())
        self.send_requests(outbox, follow_ups, stored or case)
        for operation in dict.fromkeys(r.operation for r in follow_ups):
            self.emit_status(
                outbox,
                case.reference,
                case.version,
                StatusKind.FOLLOW_UP_SENT,
                f"{operation.value} sent to "
                + ", ".join(r.authority for r in follow_ups if r.operation is operation),
                lodging=case.receipt,
            )
        reference, version = case.reference, case.version
        on_its_way = self.announcing[(reference, version)] = OnItsWay(partition)
        self._announced_since_mark.append(((reference, version), on_its_way))
        outbox.after_delivery.append(lambda: self._mark_announced(reference, version, on_its_way))
        # Not delivered after all (the agent stops and starts again in this process; its
        # partition revoked meanwhile): the record read again announces it again (found
        # by review in stop 32).
        outbox.if_undelivered.append(lambda: self._arrived_or_not((reference, version), on_its_way))
        if self.retention is not None:
            self.retention.decided(reference, partition)

    def give_up(self, partitions: Collection[int]) -> None:
        """Partitions revoked: their decisions on their way are no longer this worker's to
        wait for. A sticky assignor may give a partition straight back, and its records
        are read again from the committed offset while the first deliveries still run:
        remembered, the decision was skipped there, the record committed past, and when
        its delivery then failed for good (or was let go with the partition) nothing
        announced it again (found by the scale-out review)."""
        for key, on_its_way in list(self.announcing.items()):
            if on_its_way.partition in partitions:
                del self.announcing[key]

    def _arrived_or_not(self, key: tuple[str, int], on_its_way: OnItsWay) -> None:
        """``on_its_way`` is no longer: forgotten, unless another announcement of the same
        decision was made since (it is still on its way)."""
        if self.announcing.get(key) is on_its_way:
            del self.announcing[key]

    def override_of(self, case: Case) -> OverrideReview:
        """What the declarant's override does to ``case``'s results (pure, so the same
        whenever it is asked: at the decision and at an announcement made again)."""
        return review_override(
            case.stage, counted(case.results, case.rollout), case.override_items, self.routing
        )

    def announce_again_if_lost(self, outbox: Effects, case: Case, partition: int) -> bool:
        """Decisions the broker may not have (the worker died in between): this case's
        own and those of earlier versions it replaced. Announce them again (the publisher
        keeps one per version). True if there were any."""
        lost = [c for c in case.unconfirmed() if (c.reference, c.version) not in self.announcing]
        for unconfirmed in lost:
            metrics.DECISIONS_ANNOUNCED_AGAIN.inc()
            self.announce(outbox, unconfirmed, partition, stored=case, again=True)
        if lost:
            self.store_case(self.cases, case)
        return bool(lost)

    def store_case(self, cases: CaseStore, case: Case) -> None:
        """Store ``case`` in ``cases`` (the handler's store). If its decision is on its
        way, the bytes its mark will write are made now, from the model, and kept with
        the announcement (``OnItsWay``): the mark then only compares what is stored."""
        stored = case.to_bytes()
        cases[case.reference.encode()] = stored
        on_its_way = self.announcing.get((case.reference, case.version))
        if on_its_way is None or not case.decided or case.announced:
            return
        on_its_way.stored = stored
        on_its_way.marked = case.model_copy(update={"announced": True}).to_bytes()

    def _mark_announced(self, reference: str, version: int, on_its_way: OnItsWay) -> None:
        """The broker has the decision of ``version``: record it on the case as stored
        now, which may be a newer version than the one announced (defect 13)."""
        self._arrived_or_not((reference, version), on_its_way)
        key = reference.encode()
        stored = self.cases.get(key)
        if stored is None:
            return
        if on_its_way.marked is not None and stored == on_its_way.stored:
            # The case as the handling stored it, nothing written over it since.
            self.cases[key] = on_its_way.marked
            return
        case = Case.from_bytes(stored)
        if case.version == version and case.decided:
            if case.announced:
                return  # nothing to record (and a retired case's marker stays one)
            case.announced = True
        else:
            pending = [p for p in case.pending_announcements if p.version != version]
            if pending == case.pending_announcements:
                return
            case.pending_announcements = pending
        self.cases[key] = case.to_bytes()

    def send_requests(
        self, outbox: Effects, requests: Sequence[AuthorityRequest], case: Case
    ) -> None:
        """Each request sealed to its authority alone, on that authority's topic; ``case``
        (the one stored) records them, so that their answers are solicited."""
        case.expect_answers_to(requests)
        for request in requests:
            topic = self.topics.requests(request.authority)
            sealed = self.envelope.seal(
                json_bytes(request),
                recipient=request.authority,
                topic=topic,
                content_type=ContentType.JSON,
            )
            outbox.add(
                topic,
                request.reference.encode(),
                sealed,
                [trace_header(request.reference, request.version)],
            )

    @staticmethod
    def _count_degraded(decision: Decision, rollout: Sequence[RolloutUse]) -> None:
        """A decision in degraded mode counts once for each authority whose answer it
        lacks, whatever made it missing: an UNAVAILABLE answer (a partner that is down
        answers so at once, its circuit open: no deadline passes) or a passed deadline
        (review stop 40-PR, PR1). Only a degraded decision: an UNAVAILABLE result of an
        authority in shadow mode does not make one, nor one in advice mode, which does
        not make the decision (review of stop 47)."""
        if all(reason.code != DEGRADED_MODE for reason in decision.reasons):
            return
        advisory = {use.authority for use in rollout if use.mode == RolloutMode.ADVICE.value}
        for authority in sorted(
            {
                result.authority
                for result in decision.documents
                if result.verdict is Verdict.UNAVAILABLE
                and result.authority
                and result.authority not in advisory
            }
        ):
            metrics.DEGRADED_DECISIONS.labels(authority=authority).inc()

    def emit_decision(
        self,
        outbox: Effects,
        decision: Decision,
        partition: int,
        *,
        declarant_eori: str = "",
        lodging: str | None = None,
        stage: Stage = Stage.LODGED,
        override: OverrideReview | None = None,
        office: str = "",
        rollout: Sequence[RolloutUse] = (),
        counted: bool = True,
    ) -> None:
        """The decision sealed to the clearance system, its audit record, its status, and
        the fact the statistics count it from (with what the override did, and each
        authority's rollout mode and shadow comparison). ``counted``: in the metrics (not
        when announced again: counted when first announced)."""
        document = encode_decision(decision)
        version = str(decision.version).encode()
        # The outbox is the hub's own: sealed with its state key (AES-GCM, bound to the
        # reference and version), not with the envelope; the publisher seals it to the
        # clearance system as it publishes it, so its freshness dates from then
        # (publisher.py). One envelope seal and open less per decision.
        sealed = self.outbox_cipher.seal(
            OUTBOX_STATE, outbox_record_key(decision.reference.encode(), version), document
        )
        # Through the outbox: the publisher makes it exactly one per (reference, version),
        # and none for a version below one it published. The contract lets the versions of
        # one reference arrive on several partitions (each its own case there): their
        # decisions all go to the outbox partition of the reference, so one publisher lane
        # sees them all, in the order they were announced (ADR 0005's addendum of stop 38).
        # The publisher copies the headers to gun.decisions: the trace goes on.
        headers = [
            (HEADER_VERSION, version),
            # The lane keeps each partition's latest decisions apart from its count: a
            # repeat from a partition stuck for long is still known (ADR 0025, stop 47).
            (HEADER_ORIGIN, str(partition).encode()),
            trace_header(decision.reference, decision.version),
        ]
        if declarant_eori:
            # The lane publishes no decision of a reference for another declarant than its
            # first one published (review stop 38-s, S3). A declaration refused unread
            # names none: its decision is judged by its version only.
            headers.append((HEADER_DECLARANT, declarant_tag(declarant_eori)))
        if lodging:
            # Named by the lane's status of a decision it withholds: the view then
            # withholds this receipt alone (review of stop 54).
            headers.append((HEADER_LODGING, lodging.encode()))
        outbox.add(
            self.topics.decision_outbox,
            decision.reference.encode(),
            sealed,
            headers,
            partition=reference_partition(decision.reference, self.outbox_partitions),
        )
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
            about=(decision.reference, decision.version),
        )
        if counted:
            metrics.DECISIONS.labels(outcome=decision.outcome.value).inc()
            self._count_degraded(decision, rollout)
        self.emit_status(
            outbox,
            decision.reference,
            decision.version,
            StatusKind.DECIDED,
            "; ".join(reason.code for reason in decision.reasons),
            outcome=decision.outcome.value,
            lodging=lodging,
        )
        self.emit_fact(
            outbox,
            DecisionFact(
                reference=decision.reference,
                version=decision.version,
                declarant_eori=declarant_eori,
                stage=stage.value,
                outcome=decision.outcome.value,
                decided_at=decision.decided_at,
                authorities=sorted({d.authority for d in decision.documents if d.authority}),
                documents=[
                    DocumentUse(
                        goods_item=d.goods_item,
                        code=d.code,
                        reference=None
                        if d.authority and self.routing.is_confidential(d.authority)
                        else d.reference,
                        authority=d.authority,
                        verdict=d.verdict.value,
                    )
                    for d in decision.documents
                ],
                override=override_fact(override),
                office=office,
                rollout=list(rollout),
            ),
        )

    def emit_fact(self, outbox: Effects, fact: AnyFact) -> None:
        outbox.add(
            self.topics.facts,
            fact.reference.encode(),
            fact_bytes(fact),
            [trace_header(fact.reference, fact.version)],
        )


def override_fact(override: OverrideReview | None) -> OverrideUse | None:
    """What the statistics keep of an override: counts only, on the declarant's fact."""
    if override is None or not override.declared:
        return None
    return OverrideUse(
        goods_items=len(override.items),
        covered=len(override.covered),
        declined=len(override.declined),
    )
