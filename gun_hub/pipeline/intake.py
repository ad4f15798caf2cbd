"""Intake: a declaration arrives; validate it, route it, open its case, ask the authorities.

Versions (contract section 4): a higher version supersedes, a lower or equal one is
ignored and recorded. A version superseded before its decision gets one all the same
(REFUSE, SUPERSEDED: exactly one decision per version; review stop 40, W4). The same
record read again (same log position) is a redelivery after a crash: its effects are sent
again, because the case may have reached the changelog while its requests did not (issue
10, defect 9); the partner operations are idempotent and the hub ignores an answer it
already has. Decisions of earlier versions
the broker had not confirmed are announced again and carried by the newer case until
confirmed, never dropped (defect 4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, auto

from gun_contract.dead_letter import ErrorClass, SourcePosition, add_dead_letter
from gun_contract.effects import Effects
from gun_contract.envelope import ContentType, EnvelopeRejected, EnvelopeRejectionKind
from gun_contract.limits import MAX_RECORD_BYTES, sealed_size
from gun_contract.model.decision import Decision, DocumentResult, Reason
from gun_contract.model.declaration import Declaration, Stage
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.record_keys import keyed_by, not_keyed_by
from gun_contract.security.entitlements import GATEWAY_PARTY
from gun_contract.security.state_cipher import StateUnreadable
from gun_hub import metrics
from gun_hub.domain.case import Case, ExpectedAnswer, RiskFinding
from gun_hub.domain.decide import refuse_unreadable
from gun_hub.domain.lifecycle import (
    dropped_documents,
    held_reservations,
    write_offs_known,
    written_off,
)
from gun_hub.domain.override import OVERRIDE_MENTION
from gun_hub.domain.reference_namespace import is_declarants_reference, the_declarants_references
from gun_hub.domain.requests import build_requests, requests_for
from gun_hub.domain.risk import assess_risk
from gun_hub.domain.rollout import RolloutMode, describe_modes
from gun_hub.domain.routing import (
    OPERATION_FOR_STAGE,
    ExpectedDocument,
    RoutedDeclaration,
    restates_reservations,
    route_documents,
)
from gun_hub.domain.status_events import StatusKind, lodging
from gun_hub.domain.trader_stages import (
    customs_acted_on,
    not_the_traders_stage,
    not_the_traders_to_amend,
    set_by_customs,
)
from gun_hub.ops.facts import ReceivedFact
from gun_hub.pipeline.decision_outbox import declarant_tag, declarant_tag_of
from gun_hub.pipeline.hub_context import CaseStore, HubContext, open_case_entry
from gun_hub.pipeline.takeover import Notice, notices, tells_other_partitions
from gun_hub.pipeline.unreadable_state import (
    REFUSAL,
    STATE_UNREADABLE,
    dead_letter_unreadable,
    read_case,
)
from gun_hub.xml.decision_codec import encode_decision
from gun_hub.xml.declaration_codec import DeclarationCodec, sniff_identity
from gun_hub.xml.safe_parse import XmlRejected, XmlRejectionKind

COMPONENT = "hub.intake"
TOO_LARGE_TO_DECIDE = "DECLARATION_TOO_LARGE_TO_DECIDE"
NOT_SEALED = "DECLARATION_NOT_SEALED"
# Sealed and verified, but its content type is not the XML a declaration is (contract
# section 5); until review stop 38 (D5) this was called "not sealed".
NOT_XML = "DECLARATION_NOT_XML"
# A declaration whose record key is not its reference (contract section 2): it would not
# share a partition with its other versions (review stop 38, D2). A security dead letter
# only, never a decision (review stop 38-s, S1).
RECORD_KEY_NOT_REFERENCE = "RECORD_KEY_NOT_REFERENCE"
# A later version naming another declarant than the case's (security.md: a trader lodging
# another's reference as its own).
DECLARANT_CHANGED = "DECLARANT_CHANGED"
# A declaration lodged through the gateway under a reference that is not its declarant's
# (domain/reference_namespace.py).
REFERENCE_NOT_THE_DECLARANTS = "REFERENCE_NOT_THE_DECLARANTS"
STAGE_NOT_THE_DECLARANTS = "STAGE_NOT_THE_DECLARANTS"
AMENDMENT_NOT_PERMITTED = "AMENDMENT_NOT_PERMITTED"
# The head of the reason of a declaration the gateway lodged that the hub cannot read: the
# two disagree, and the dead letter waits to be redriven once they agree (redrive.py). At
# the head, so that the view's cut reason keeps it.
GATEWAY_DISAGREES = (
    "lodged through the gateway, whose checks should have refused it (are the gateway and "
    "the hub on the same version and limits?)"
)
# The tail of the reason of a declaration refused over the size limit before its reference
# could be read: nothing was decided, so it is decided when redriven once the limit is
# raised (redrive.py; review of stop 56). A tail, and of that kind only: the reason's head
# is the fault, as the gateway says it, and what `gun-hub dlq list` shows.
NOTHING_DECIDED = "(its reference could not be read: nothing was decided)"
# A compact JOSE serialization starts with a base64url part and a dot (its protected
# header, which need not be compact JSON: '{ "alg"' is not 'eyJ'; found by review, stop 36).
_SEALED_START = re.compile(rb"[A-Za-z0-9_-]+\.")


@dataclass(frozen=True, slots=True)
class Unsealed:
    """A declaration as the envelope gave it: its XML, and the id to claim (None for
    plain XML, which has none)."""

    document: bytes
    message_id: str | None
    accept_until: int
    sender: str | None = None  # the party that sealed it (None: plain XML)


class _Arrival(Enum):
    """How a version relates to what the hub already holds for its reference."""

    NEW = auto()  # first or higher version
    REDELIVERED = auto()  # the record that opened the known case, read again
    STALE = auto()  # lower, or equal from another record


class Intake:
    """Handles one record of the declarations topic.

    A declaration travels sealed by the clearance system (contract section 5): signed by
    it, encrypted to the hub. What fails to open is a security dead letter and is never
    acted on: no case, no decision, so a forged "version 99" cannot make the real versions
    stale. Plain XML is accepted only where ``accept_plain`` says so (local development).
    """

    def __init__(
        self,
        context: HubContext,
        codec: DeclarationCodec,
        cases: CaseStore,
        *,
        accept_plain: bool = False,
    ) -> None:
        self._ctx = context
        self._codec = codec
        self._cases = cases
        self._accept_plain = accept_plain

    def handle(
        self, data: bytes, source: SourcePosition, accepted_at: float | None = None
    ) -> Effects:
        """Open and admit in one step, with the envelope's own replay memory (what the
        hub's worker does in two, through a claim: pipeline/admission.py).
        ``accepted_at``: the broker's log-append time of the record (freshness)."""
        outbox = Effects()
        unsealed = self.unseal(outbox, data, source, accepted_at, check_replay=True)
        if unsealed is not None:
            self.admit(outbox, data, unsealed.document, source, unsealed.sender)
        return outbox

    def unseal(
        self,
        outbox: Effects,
        data: bytes,
        source: SourcePosition,
        accepted_at: float | None,
        *,
        check_replay: bool,
    ) -> Unsealed | None:
        """The declaration in ``data``, verified and decrypted; None once dead-lettered.
        ``check_replay=False``: the caller claims the message id itself."""
        metrics.DECLARATIONS_RECEIVED.inc()
        if not _SEALED_START.match(data):
            if self._accept_plain:
                return Unsealed(document=data, message_id=None, accept_until=0)
            self._security_dead_letter(outbox, data, source, NOT_SEALED, _not_sealed(data))
            return None
        try:
            # The id is remembered (or claimed, by the worker) only once the record's key
            # is checked below (review stop 38-s, S2).
            opened = self._ctx.envelope.open(
                data,
                topic=source.topic,
                position=source.describe(),
                accepted_at=accepted_at,
                check_replay=False,
            )
        except EnvelopeRejected as rejection:
            self._refuse_envelope(outbox, data, source, rejection)
            return None
        if opened.content_type is not ContentType.XML:
            self._security_dead_letter(
                outbox,
                data,
                source,
                NOT_XML,
                f"sealed and signed, but its content type is {opened.content_type} where a "
                f"declaration must be {ContentType.XML}",
            )
            return None
        misplaced = self._sniffed_under_another_key(opened.payload, source)
        if misplaced is not None:
            self._refuse_record_key(outbox, data, source, misplaced)
            return None
        if check_replay:
            try:
                self._ctx.envelope.record_sighting(
                    opened, position=source.describe(), accepted_at=accepted_at
                )
            except EnvelopeRejected as rejection:
                self._refuse_envelope(outbox, data, source, rejection)
                return None
        return Unsealed(
            document=opened.payload,
            message_id=opened.replay_id,  # claimed with its sender (OpenedMessage.replay_id)
            accept_until=opened.accept_until,
            sender=opened.sender,
        )

    def _sniffed_under_another_key(self, document: bytes, source: SourcePosition) -> str | None:
        """The reference ``document`` names, sniffed, if the record's key is not it (and
        the record did not open that reference's case: a redelivery, see ``admit``).
        Checked before the message id is claimed: a copy under another key then leaves
        no trace in the replay memory. None where the reference cannot be sniffed: the
        full parse in ``admit`` checks the key again."""
        identity = sniff_identity(document)
        if identity is None or keyed_by(source.key, identity.reference):
            return None
        if _opened_by(self._known(identity.reference), identity.version, source):
            return None
        return identity.reference

    def _refuse_envelope(
        self, outbox: Effects, data: bytes, source: SourcePosition, rejection: EnvelopeRejected
    ) -> None:
        metrics.ENVELOPE_REJECTIONS.labels(kind=rejection.kind.value).inc()
        self._security_dead_letter(outbox, data, source, rejection.kind.value, str(rejection))

    def _refuse_record_key(
        self, outbox: Effects, data: bytes, source: SourcePosition, reference: str
    ) -> None:
        """A declaration whose record key is not its reference: a security dead letter,
        and nothing else (review stop 38-s, S1). It cannot be matched to the case that
        owns its reference (under another key it lands on another partition than its
        other versions, contract section 2) and may be a copy of another's genuine
        declaration: no decision (a REFUSE for a version it does not own would hold back
        the real decisions at the publisher), no case opened or superseded, no
        reservation deleted."""
        metrics.DECLARATIONS_REJECTED.labels(kind=RECORD_KEY_NOT_REFERENCE).inc()
        self._dead_letter(
            outbox,
            data,
            source,
            ErrorClass.SECURITY,
            RECORD_KEY_NOT_REFERENCE,
            not_keyed_by("declaration", source.key, reference),
            reference,
        )

    def refuse_replay(
        self, outbox: Effects, data: bytes, source: SourcePosition, message_id: str, held_at: str
    ) -> None:
        """A copy of a declaration already read at ``held_at``: never acted on."""
        kind = EnvelopeRejectionKind.REPLAY.value
        metrics.ENVELOPE_REJECTIONS.labels(kind=kind).inc()
        self._security_dead_letter(
            outbox,
            data,
            source,
            kind,
            f"message {message_id} was already received at {held_at or 'another position'}",
        )

    def admit(
        self,
        outbox: Effects,
        data: bytes,
        document: bytes,
        source: SourcePosition,
        sender: str | None = None,
    ) -> None:
        """Act on a verified declaration ``document`` (``data`` as received), sealed by
        ``sender`` (None: plain XML, where allowed)."""
        through_the_gateway = sender == GATEWAY_PARTY
        try:
            declaration = self._codec.decode(document)
        except XmlRejected as rejection:
            kind, reason = f"XML_{rejection.kind.value}", str(rejection)
            self._reject(
                outbox,
                data,
                document,
                source,
                kind,
                reason,
                through_the_gateway=through_the_gateway,
            )
            return
        if not keyed_by(source.key, declaration.reference) and not self._read_again(
            declaration, source
        ):
            # Checked before the claim on the sniffed reference (``unseal``); here for a
            # reference the sniff could not find, and for plain XML. Unless this very
            # record opened its case here (decided by a worker from before keys were
            # checked, read again after the upgrade): a redelivery, its decision stands,
            # no dead letter (review stop 38-g, S4).
            self._refuse_record_key(outbox, data, source, declaration.reference)
            return
        if through_the_gateway and set_by_customs(declaration.stage):
            # Before the size: refused as too large it would be decided, and supersede
            # the case, as a version of the trader's (domain/trader_stages.py).
            self._refuse_customs_stage(outbox, data, declaration, source)
            return
        too_large = too_large_to_decide(
            declaration,
            authority_chars=max(map(len, self._ctx.routing.authorities), default=1),
            advice=RolloutMode.ADVICE
            in self._ctx.rollout.modes_for(
                self._ctx.routing.authorities, declaration.customs_office
            ).values(),
        )
        if too_large is not None and self._read_again(declaration, source):
            # Judged when its case was opened: judged again against the rollout board of
            # now (an authority switched to advice meanwhile), it was refused on its
            # redelivery and its requests never sent again (found by the review of stop
            # 36's change, G4).
            too_large = None
        if too_large is not None:
            if self._another_declarants_version(declaration):
                # Refused for its size, it would supersede the case in ``_reject``: the
                # declarant check ``_accept`` makes comes first (review stop 38-s).
                self._refuse_other_declarant(outbox, data, declaration, source)
                return
            self._reject(
                outbox,
                data,
                document,
                source,
                TOO_LARGE_TO_DECIDE,
                too_large,
                through_the_gateway=through_the_gateway,
            )
            return
        if through_the_gateway and not is_declarants_reference(
            declaration.reference, declaration.declarant.eori
        ):
            self._refuse_anothers_reference(outbox, data, declaration, source)
            return
        self._accept(outbox, data, declaration, source, through_the_gateway=through_the_gateway)

    def _security_dead_letter(
        self, outbox: Effects, data: bytes, source: SourcePosition, kind: str, reason: str
    ) -> None:
        self._dead_letter(outbox, data, source, ErrorClass.SECURITY, kind, reason, None)

    def _dead_letter(
        self,
        outbox: Effects,
        data: bytes,
        source: SourcePosition,
        error_class: ErrorClass,
        kind: str,
        reason: str,
        reference: str | None,
    ) -> None:
        metrics.DEAD_LETTERS.labels(kind=kind).inc()
        add_dead_letter(
            outbox,
            self._ctx.topics.dlq,
            data,
            error_class=error_class,
            kind=kind,
            reason=reason,
            source=source,
            component=COMPONENT,
            reference=reference,
        )

    # -- what the hub already holds ----------------------------------------------------

    def _read_again(self, declaration: Declaration, source: SourcePosition) -> bool:
        """Whether this record opened the case of this version (a redelivery)."""
        return _opened_by(self._known(declaration.reference), declaration.version, source)

    def _another_declarants_version(self, declaration: Declaration) -> bool:
        """A higher version than the known case's, naming another declarant."""
        known = self._known(declaration.reference)
        return (
            known is not None
            and declaration.version > known.version
            and _declarant_changed(known, declaration)
        )

    def _known(self, reference: str) -> Case | None:
        """The case of ``reference``. One that does not open reads as none to the checks
        that ask (a redelivery? another declarant's version?): they cannot tell, and the
        handling that would write the case (``_accept``, ``_reject``) refuses the version
        over it (unreadable_state.py)."""
        found = read_case(self._cases, reference)
        return None if isinstance(found, StateUnreadable) else found

    def _arrival(
        self,
        outbox: Effects,
        known: Case | None,
        version: int,
        source: SourcePosition,
        declarant: str | None = None,
    ) -> _Arrival:
        """Classify the arriving version; announce again any decision the broker may
        not have, whatever the arrival turns out to be. ``declarant``: the EORI the
        arriving version names (None: not read)."""
        if known is None:
            return _Arrival.NEW
        self._ctx.announce_again_if_lost(outbox, known, source.partition)
        later = max(known.taken_over_by or 0, known.given_back_by or 0)
        if known.version < version <= later:
            # A later version read on another partition took this case over (takeover.py):
            # this one comes after it, as a lower version after a higher one does on one
            # partition (contract section 4; review of stop 52).
            self._ignore_stale(outbox, known, version, declarant)
            return _Arrival.STALE
        if version > known.version:
            return _Arrival.NEW
        if _opened_by(known, version, source):
            return _Arrival.REDELIVERED
        self._ignore_stale(outbox, known, version, declarant)
        return _Arrival.STALE

    def _tell_other_partitions(
        self, outbox: Effects, declaration: Declaration, case: Case, source: SourcePosition
    ) -> None:
        """Every other partition is told of this version (``case``, opened from
        ``declaration``): a case of a lower version there is taken over by it
        (takeover.py). In any order with this version's own records: a notice acts on
        lower versions only."""
        self._tell(
            outbox,
            case,
            source,
            declarant=declarant_tag(declaration.declarant.eori).decode(),
            quotes=frozenset(restated(route_documents(declaration, self._ctx.routing), case)),
        )

    def _tell_refused_unread(self, outbox: Effects, case: Case, source: SourcePosition) -> None:
        """Every other partition is told of this version refused unread (``case``): it
        restates nothing, so what a lower version holds there is deleted, as it is with
        the refusal on one partition (defect 6; stop 52: the control was kept and
        reported overdue). Its declarant is the one the refusal carries, if known."""
        self._tell(outbox, case, source, declarant=declarant_tag_of(case), quotes=frozenset())

    def _tell(
        self,
        outbox: Effects,
        case: Case,
        source: SourcePosition,
        *,
        declarant: str,
        quotes: frozenset[tuple[str, str]],
    ) -> None:
        notice = Notice(case.version, source.describe(), case.stage, declarant, quotes)
        for topic, key, value, partition in notices(
            self._ctx, notice, case.reference, source.partition
        ):
            outbox.add(topic, key, value, partition=partition)

    def _supersede(
        self, outbox: Effects, known: Case | None, version: int, partition: int
    ) -> list[Case]:
        """``known`` is replaced by ``version``: say so, stop its deadline, and return the
        unconfirmed decisions the new case must carry.

        Undecided, ``known`` is decided here: REFUSE, SUPERSEDED (contract section 4:
        exactly one decision per version; only a version arriving after a higher one
        gets none; review stop 40, W4). Announced now, in this handling, it reaches the
        reference's outbox partition before anything the new version is decided on, so
        the publisher's lane publishes it first (a lower version after a higher one it
        would withhold). Carried by the new case until the broker has it, like any
        unconfirmed decision. ``known`` itself is left as it was: the new version reads
        from it what was reserved (to restate, or delete as dropped)."""
        if known is None:
            return []
        carried = known.superseding_state()
        if not known.decided:
            superseded = self._ctx.superseded_undecided(outbox, known, version)
            self._ctx.announce(outbox, superseded, partition)
            carried.append(superseded)
        self._ctx.open_cases.pop(known.reference.encode(), None)
        return carried

    # -- a declaration that cannot be accepted as sent ---------------------------------

    def _refuse_anothers_reference(
        self, outbox: Effects, data: bytes, declaration: Declaration, source: SourcePosition
    ) -> None:
        """A trader lodging a reference that is not its own (domain/reference_namespace.py):
        a security dead letter, and nothing said or decided about that reference."""
        metrics.DECLARATIONS_REJECTED.labels(kind=REFERENCE_NOT_THE_DECLARANTS).inc()
        eori = declaration.declarant.eori
        self._dead_letter(
            outbox,
            data,
            source,
            ErrorClass.SECURITY,
            REFERENCE_NOT_THE_DECLARANTS,
            f"lodged through the gateway for {eori} under a reference that is not its own; "
            f"{the_declarants_references(eori)}",
            None,
        )

    def _refuse_amendment(
        self,
        outbox: Effects,
        data: bytes,
        declaration: Declaration,
        known: Case,
        source: SourcePosition,
    ) -> None:
        """A trader's later version of a declaration customs decided to control, or
        released: not taken (domain/trader_stages.py). A dead letter, and the version
        said ignored to its declarant (the case's receipt), which is what it reads; no
        decision (a REFUSE would supersede the control's case, ending the control), the
        case untouched."""
        metrics.DECLARATIONS_REJECTED.labels(kind=AMENDMENT_NOT_PERMITTED).inc()
        reason = not_the_traders_to_amend(known)
        self._dead_letter(
            outbox,
            data,
            source,
            ErrorClass.PERMANENT,
            AMENDMENT_NOT_PERMITTED,
            f"version {declaration.version} lodged through the gateway: {reason}",
            declaration.reference,
        )
        self._ctx.emit_status(
            outbox,
            known.reference,
            declaration.version,
            StatusKind.IGNORED_STALE_VERSION,
            f"{AMENDMENT_NOT_PERMITTED}: {reason}",
            lodging=known.receipt,
        )

    def _refuse_customs_stage(
        self, outbox: Effects, data: bytes, declaration: Declaration, source: SourcePosition
    ) -> None:
        """A trader lodging a stage only the customs office sets: a security dead letter,
        and nothing else. No decision (a REFUSE would take the version number the
        office's own release or invalidation is to use), the case untouched, nothing
        written off or given back at any partner."""
        metrics.DECLARATIONS_REJECTED.labels(kind=STAGE_NOT_THE_DECLARANTS).inc()
        self._dead_letter(
            outbox,
            data,
            source,
            ErrorClass.SECURITY,
            STAGE_NOT_THE_DECLARANTS,
            f"lodged through the gateway for {declaration.declarant.eori}: "
            + not_the_traders_stage(declaration.stage),
            declaration.reference,
        )

    def _reject(
        self,
        outbox: Effects,
        data: bytes,
        document: bytes,
        source: SourcePosition,
        kind: str,
        reason: str,
        *,
        through_the_gateway: bool = False,
    ) -> None:
        """Refuse a declaration whose sender is verified (or plain, where allowed) but
        which cannot be accepted as it is. The dead letter keeps the record as received:
        a sealed declaration stays encrypted at rest.

        ``through_the_gateway``: the gateway runs the hub's checks before it seals
        (gateway/lodging.py), so one it sealed that the hub cannot read means the two
        disagree (a rolling upgrade, another size limit). Its reference is sniffed, not
        known to be its declarant's, so nothing is decided or superseded under it (a
        trader would otherwise refuse, and delete the reservations of, another's
        declaration: found by review in stop 35); the dead letter can be redriven once
        the two agree."""
        metrics.DECLARATIONS_REJECTED.labels(kind=kind).inc()
        identity = sniff_identity(document)
        if through_the_gateway:
            reason = f"{GATEWAY_DISAGREES}: {reason}"
        elif identity is None and kind == f"XML_{XmlRejectionKind.OVERSIZED.value}":
            reason = f"{reason} {NOTHING_DECIDED}"
        found = (
            read_case(self._cases, identity.reference)
            if identity is not None and not through_the_gateway
            else None
        )
        if isinstance(found, StateUnreadable):
            # Refused for its own fault all the same; its dead letter says the state too,
            # and the refusal takes that state's place (unreadable_state.py).
            reason = f"{reason} (and {found}: replaced by this refusal)"
        self._dead_letter(
            outbox,
            data,
            source,
            ErrorClass.PERMANENT,
            kind,
            reason,
            identity.reference if identity else None,
        )
        if identity is None or through_the_gateway:
            return
        # A past that did not open is a past the hub does not know.
        known = None if isinstance(found, StateUnreadable) else found
        if isinstance(found, StateUnreadable):
            self._ctx.open_cases.pop(identity.reference.encode(), None)  # its deadline
        arrival = self._arrival(outbox, known, identity.version, source)
        if arrival is _Arrival.REDELIVERED and known is not None and known.told_others:
            self._tell_refused_unread(outbox, known, source)  # the crash may have lost them
        if arrival is not _Arrival.NEW:
            return  # a redelivery was announced again above if it needed to be
        now = self._ctx.clock()
        carried = self._supersede(outbox, known, identity.version, source.partition)
        # Whatever the previous version still holds is deleted with the refusal (defect 6).
        held = held_reservations(known) if known is not None else []
        case = Case(
            reference=identity.reference,
            version=identity.version,
            stage=Stage.LODGED,
            opened_at=now,
            deadline=now,
            awaiting=[],
            expected=held,
            results=[],
            opened_from=source.describe(),
            pending_announcements=carried,
            # Earlier versions' requests may still be answered (late, replayed).
            requested=list(known.requested) if known is not None else [],
            asked=known.asked_by_authority() if known is not None else {},
            # Still its declarant's: a case naming nobody took the next version of anyone
            # (found by review in stop 35).
            declarant_eori=known.declarant_eori if known is not None else "",
            customs_acted=customs_acted_on(known),
            declarant_tag=known.declarant_tag if known is not None else "",
            # Still written off: an invalidation may come (found by review, stop 36).
            # Unknown (None) where what was stored did not open, or no case of a version
            # above 1 is here: made nothing, what the versions before wrote off was never
            # given back (reviews of stop 52).
            written_off=None
            if isinstance(found, StateUnreadable)
            else written_off(known)
            if known is not None
            else (None if identity.version > 1 else []),
        )
        decision = refuse_unreadable(
            reference=identity.reference,
            version=identity.version,
            reason=Reason(code=kind, text=reason),
            decided_at=now,
        )
        case.outcome = decision.outcome
        case.decision = decision
        if tells_other_partitions(identity.version, known, source.partition):
            case.told_others = True
            self._tell_refused_unread(outbox, case, source)
        self._ctx.emit_status(
            outbox, identity.reference, identity.version, StatusKind.REJECTED, kind, lodging=None
        )
        # Announced like any decision: marked confirmed only once the broker has it, so a
        # crash in between announces it again on redelivery (defect 5).
        self._ctx.announce(outbox, case, source.partition)
        self._ctx.store_case(self._cases, case)

    def _refuse_other_declarant(
        self, outbox: Effects, data: bytes, declaration: Declaration, source: SourcePosition
    ) -> None:
        """A later version lodged in another declarant's name than the case's: never
        acted on, and the case goes on as it was; a security dead letter, like a message
        that fails verification. No status event (the reference's history is its
        declarant's: one would show its status as refused), no decision (it would put a
        party's word on another's declaration at the clearance system), and its declarant
        is not named (nobody reads it in the status lookup)."""
        metrics.DECLARATIONS_REJECTED.labels(kind=DECLARANT_CHANGED).inc()
        reason = (
            f"version {declaration.version} names another declarant than the versions "
            "before it; a declaration's later versions are its declarant's"
        )
        self._dead_letter(
            outbox,
            data,
            source,
            ErrorClass.SECURITY,
            DECLARANT_CHANGED,
            reason,
            declaration.reference,
        )

    def _refuse_over_unreadable(
        self,
        outbox: Effects,
        data: bytes,
        declaration: Declaration,
        source: SourcePosition,
        unreadable: StateUnreadable,
    ) -> None:
        """A readable declaration whose reference's stored case does not open (ADR 0022):
        the hub cannot apply the versions rule (new, read again or stale?), the declarant
        check, or restate and delete what earlier versions reserved. Refused, nothing sent
        to the partners, the record dead-lettered; the refused case takes the place of the
        value (it names this version's declarant, as a first version does, and a past the
        hub does not know: ``written_off`` None), so the next version is decided as ever.
        The publisher drops the refusal if this version was already published."""
        ctx = self._ctx
        reference, version = declaration.reference, declaration.version
        metrics.DECLARATIONS_REJECTED.labels(kind=STATE_UNREADABLE).inc()
        dead_letter_unreadable(
            outbox,
            ctx.topics.dlq,
            data,
            source,
            COMPONENT,
            unreadable,
            f"version {version} is refused ({STATE_UNREADABLE}) and the refusal takes the "
            "place of what was stored; reservations earlier versions made are no longer "
            "known to the hub: have them checked with the authorities",
        )
        ctx.open_cases.pop(reference.encode(), None)  # an earlier version's deadline
        now = ctx.clock()
        case = Case(
            reference=reference,
            version=version,
            stage=declaration.stage,
            opened_at=now,
            deadline=now,
            awaiting=[],
            expected=[],
            results=[],
            opened_from=source.describe(),
            declarant_eori=declaration.declarant.eori,
            written_off=None,
        )
        case.decision = refuse_unreadable(
            reference=reference, version=version, reason=REFUSAL, decided_at=now
        )
        case.outcome = case.decision.outcome
        ctx.emit_status(
            outbox, reference, version, StatusKind.REJECTED, STATE_UNREADABLE, lodging=None
        )
        ctx.announce(outbox, case, source.partition)
        ctx.store_case(self._cases, case)

    def _ignore_stale(
        self, outbox: Effects, known: Case, version: int, declarant: str | None
    ) -> None:
        """Say that ``version`` of ``known``'s declaration was ignored: a copy, or an
        older version read after a newer one. It has no receipt of its own (a copy), so
        it names the case's when it names the case's declarant: that declarant reads
        that its second submission was ignored (stop 54's open item: naming none, the
        view showed it to nobody once the version's receipt was known). A copy naming
        another declarant, or read unread, names none: nobody's."""
        metrics.STALE_VERSIONS.inc()
        theirs = bool(declarant) and declarant == known.declarant_eori
        self._ctx.emit_status(
            outbox,
            known.reference,
            version,
            StatusKind.IGNORED_STALE_VERSION,
            "an equal or higher version of this declaration was already received",
            lodging=known.receipt if theirs else None,
        )

    # -- a readable declaration --------------------------------------------------------

    def _accept(
        self,
        outbox: Effects,
        data: bytes,
        declaration: Declaration,
        source: SourcePosition,
        *,
        through_the_gateway: bool = False,
    ) -> None:
        ctx = self._ctx
        key = declaration.reference.encode()
        found = read_case(self._cases, declaration.reference)
        if isinstance(found, StateUnreadable):
            self._refuse_over_unreadable(outbox, data, declaration, source, found)
            return
        known = found
        arrival = self._arrival(
            outbox, known, declaration.version, source, declaration.declarant.eori
        )
        if arrival is _Arrival.STALE:
            return
        if arrival is _Arrival.NEW and _declarant_changed(known, declaration):
            self._refuse_other_declarant(outbox, data, declaration, source)
            return
        if arrival is _Arrival.NEW and through_the_gateway and customs_acted_on(known):
            assert known is not None  # noqa: S101 - customs acted on a known case
            self._refuse_amendment(outbox, data, declaration, known, source)
            return
        if arrival is _Arrival.REDELIVERED:
            assert known is not None  # noqa: S101 - a redelivery has a known case
            if known.told_others:  # the crash may have lost its notices
                self._tell_other_partitions(outbox, declaration, known, source)
            # Before its own requests, as the first reading sent them: whether the
            # deletions reached the broker is not known (found by review in stop 36).
            self._delete_dropped(outbox, known, again=True)
            if not (known.decided and known.announced):
                # Named again: what the crash may have lost before the broker had it (a
                # declaration decided within its own reading too, whose decision the
                # broker did not confirm: without its receipt's fact, its trader read
                # nobody's events; review of stop 53).
                self._name_declarant(outbox, declaration, known.opened_at, known.receipt)
            if not known.decided:
                # Asked again, a partner has a whole deadline again: a hub back after its
                # deadlines passed would otherwise time out the very requests it just
                # sent (seen in the short chaos run).
                known.deadline = max(
                    known.deadline, ctx.clock() + timedelta(seconds=ctx.request_deadline_s)
                )
                self._ask(outbox, declaration, known, source.partition, again=True)
                self._cases[key] = known.to_bytes()
            return
        now = ctx.clock()
        carried = self._supersede(outbox, known, declaration.version, source.partition)
        received = lodging(declaration.reference, declaration.version, source.describe())
        self._name_declarant(outbox, declaration, now, received)
        ctx.emit_status(
            outbox,
            declaration.reference,
            declaration.version,
            StatusKind.RECEIVED,
            lodging=received,
        )
        routed = route_documents(declaration, ctx.routing)
        # None: the hub does not know (a declaration it never saw, or forgot).
        earlier_write_offs = written_off(known) if known is not None else None
        # An invalidation gives back what was written off, whatever it quotes; what the
        # hub does not know (a case it never saw, or forgot) it gives back as quoted.
        give_back = declaration.stage is Stage.INVALIDATED and earlier_write_offs is not None
        asked = _following_up(routed, earlier_write_offs or []) if give_back else routed
        # Where the past is unknown, a retired case's marker still knows what its own
        # versions wrote off: given back beside what is quoted, which need not name it
        # (stop 52's open item: a release's write-off the invalidation did not quote
        # stayed written off at the partner).
        own_past = (
            write_offs_known(known)  # less what it gave back since (a notice told it)
            if known is not None
            and earlier_write_offs is None
            and declaration.stage is Stage.INVALIDATED
            else []
        )
        if own_past:
            asked = _quoted_and_given_back(routed, own_past)
        # A release after a control writes off what the control kept, whatever it quotes
        # (contract, section 4): read as a new version quoting fewer documents, the others
        # were deleted (the goods gone, their quantity back on the certificate; review
        # stop 46). What the hub does not know it writes off as quoted.
        kept = (
            held_reservations(known)
            if known is not None and declaration.stage is Stage.RELEASED_AFTER_CONTROL
            else []
        )
        if kept:
            asked = _following_up(routed, kept)
        case = Case.open(
            declaration=declaration,
            routed=asked,
            opened_at=now,
            deadline=now + timedelta(seconds=ctx.request_deadline_s),
            modes={
                **self._modes(declaration, asked, known, give_back=give_back),
                **dict.fromkeys((e.authority for e in own_past), RolloutMode.ENFORCE),
            },
        )
        case.opened_from = source.describe()
        case.receipt = received
        case.customs_acted = customs_acted_on(known)
        if tells_other_partitions(declaration.version, known, source.partition):
            case.told_others = True
            self._tell_other_partitions(outbox, declaration, case, source)
        case.pending_announcements = carried
        case.requested = list(known.requested) if known is not None else []
        # And about the documents they quoted (review stop 37, i3).
        case.asked = known.asked_by_authority() if known is not None else {}
        # Carried from version to version until an invalidation gives it back; a past the
        # hub does not know stays unknown (None), never made up as nothing: an
        # invalidation read after it gives back what it quotes (a second review of stop
        # 52: made "nothing", the quantity was lost). A retired case's marker keeps its
        # own write-offs apart (retention.marker_of).
        case.written_off = [] if declaration.stage is Stage.INVALIDATED else earlier_write_offs
        case.risk = [
            RiskFinding(code=hit.code, action=hit.action, text=hit.text)
            for hit in assess_risk(declaration, routed.authorities, ctx.risk_rules)
        ]
        if known is not None:
            self._release_dropped_documents(known, asked, case)
            self._delete_dropped(outbox, case, again=False)
        if case.complete:
            # Nothing to ask anyone (no documents, or only exempt/unrouted ones).
            ctx.decide_case(outbox, case, source.partition)
            ctx.store_case(self._cases, case)
            return
        ctx.open_cases[key] = open_case_entry(case, source.partition)
        self._ask(outbox, declaration, case, source.partition, again=False)
        # Stored (with the requests it expects answers to) before the requests leave, so
        # an answer can never find none.
        self._cases[key] = case.to_bytes()

    def _modes(
        self,
        declaration: Declaration,
        routed: RoutedDeclaration,
        known: Case | None,
        *,
        give_back: bool = False,
    ) -> dict[str, RolloutMode]:
        """Each routed authority's rollout mode for this version (rollout.py).

        A lodged or pre-lodged version takes the modes in force at its office. A later
        stage follows up what the hub knows was reserved, whatever the mode is now: the
        authorities an earlier version asked to reserve are asked (so switching one off
        never strands a reservation), the others are not (nothing to follow up).
        ``give_back``: ``routed`` is what the declaration wrote off (an invalidation):
        every authority of it is asked to give it back."""
        board = self._ctx.rollout.modes_for(routed.authorities, declaration.customs_office)
        if declaration.stage in (Stage.LODGED, Stage.PRELODGED):
            return board
        if give_back:
            return dict.fromkeys(routed.authorities, RolloutMode.ENFORCE)
        if known is None or declaration.stage is Stage.INVALIDATED:
            # The hub never saw the lodging (or forgot it, or, for an invalidation, does
            # not know what was written off): follow up wherever reservations are made now.
            return {
                a: RolloutMode.ENFORCE if mode.reserves else RolloutMode.OFF
                for a, mode in board.items()
            }
        reserved = known.reserved_at()
        return {
            a: RolloutMode.ENFORCE if a in reserved else RolloutMode.OFF for a in routed.authorities
        }

    def _name_declarant(
        self, outbox: Effects, declaration: Declaration, at: datetime, received: str | None
    ) -> None:
        """Say who lodged this version, on the hub-internal facts topic and before its
        first status event: the trader lookup shows a declaration to its declarant from
        its receipt, not only from its decision (ADR 0007). ``gun.status`` names nobody:
        its events name the receipt (``received``, status_events.lodging), which this
        fact ties to the declarant."""
        self._ctx.emit_fact(
            outbox,
            ReceivedFact(
                reference=declaration.reference,
                version=declaration.version,
                declarant_eori=declaration.declarant.eori,
                received_at=at,
                lodging=received,
            ),
        )

    def _ask(
        self, outbox: Effects, declaration: Declaration, case: Case, partition: int, *, again: bool
    ) -> None:
        """Send the case's requests to the authorities it still waits for: the stage's
        operation, or a CHECK to an authority in shadow mode (it must reserve nothing)."""
        ctx = self._ctx
        by_operation: dict[Operation, list[str]] = {}
        for authority in sorted(set(case.awaiting)):
            mode = case.rollout.get(authority, RolloutMode.ENFORCE)
            operation = OPERATION_FOR_STAGE[declaration.stage] if mode.reserves else Operation.CHECK
            by_operation.setdefault(operation, []).append(authority)
        if again:
            ctx.open_cases[declaration.reference.encode()] = open_case_entry(case, partition)
        sent = []
        for operation, authorities in by_operation.items():
            if operation in (Operation.GIVE_BACK, Operation.WRITE_OFF):
                # What the case gives back or writes off: what was written off or kept for
                # the control (its expected documents), not necessarily what the
                # invalidation or the release after control quotes.
                requests = requests_for(
                    case,
                    [e for e in case.expected if e.authority in authorities],
                    operation,
                    case.version,
                    ctx.clock(),
                    quantities=True,
                )
            else:
                requests = build_requests(
                    declaration, ctx.routing, tuple(authorities), operation, ctx.clock()
                )
            ctx.send_requests(outbox, requests, case)
            sent.append(
                f"{operation.value} {'sent again' if again else 'sent'} to "
                + ", ".join(authorities)
            )
        not_enforced = {a: m for a, m in case.rollout.items() if m is not RolloutMode.ENFORCE}
        if not_enforced:
            sent.append(f"rollout: {describe_modes(not_enforced)}")
        ctx.emit_status(
            outbox,
            declaration.reference,
            declaration.version,
            StatusKind.REQUESTS_SENT,
            "; ".join(sent),
            lodging=case.receipt,
        )

    @staticmethod
    def _release_dropped_documents(previous: Case, routed: RoutedDeclaration, case: Case) -> None:
        """A new version restates the reservations it makes; the others ``previous``
        held are deleted under it (``case.dropped``): documents it no longer quotes, and
        those at an authority it no longer asks to reserve (switched off or to shadow
        since: before, nothing was sent, and no later version followed them up; found
        by review in stop 36)."""
        # A pre-lodged version asks a CHECK whatever the mode: it reserves nothing, so
        # what the lodged version before it held is deleted (read as the mode's
        # "reserves", it was kept at the partners for ever; review stop 46).
        case.dropped = dropped_documents(previous, restated(routed, case))

    def _delete_dropped(self, outbox: Effects, case: Case, *, again: bool) -> None:
        if not case.dropped:
            return
        # Under the new version: the partner refuses an operation older than the newest
        # version it has seen of the declaration.
        requests = requests_for(
            case, case.dropped, Operation.DELETE, case.version, self._ctx.clock()
        )
        self._ctx.send_requests(outbox, requests, case)
        self._ctx.emit_status(
            outbox,
            case.reference,
            case.version,
            StatusKind.FOLLOW_UP_SENT,
            f"DELETE of {len(case.dropped)} document(s) no longer reserved "
            f"{'sent again' if again else 'sent'} to " + ", ".join(r.authority for r in requests),
            lodging=case.receipt,
        )


def restated(routed: RoutedDeclaration, case: Case) -> set[tuple[str, str]]:
    """The (authority, document reference) pairs ``case``'s version restates or follows
    up itself: what it quotes at the authorities where its operation reserves. A
    pre-lodged version asks a CHECK whatever the mode: it restates nothing (review stop
    46); nor does an invalidation, which gives back what was written off: a reservation
    it quotes is deleted (its notice named it restated, and the control's partition kept
    it for ever: stop 52)."""
    if not restates_reservations(case.stage):
        return set()
    return {
        (d.authority, d.reference)
        for d in routed.documents
        if d.authority and case.rollout.get(d.authority, RolloutMode.ENFORCE).reserves
    }


# The longest a document's result and reasons can be (decision.xsd and decide.py): a
# verdict word, a reason code, a partner code, an authority name (AuthorityType).
_LONGEST_VERDICT = max(Verdict, key=lambda v: len(v.value))
_LONGEST_REASON_CODE = 32
_LONGEST_PARTNER_CODE = 8
_LONGEST_AUTHORITY = 32
# What a second reason adds to a document's description (decide.py: the override's
# "covered", "cannot cover" or the advice mode's text), the longest of them, with margin.
_SECOND_REASON_EXTRA = 128
# The declaration's own reasons: degraded mode, risk hits (descriptions of at most 1024
# characters, risk.py), sampling draws. Room for fifty of them.
_DECLARATION_REASONS_BYTES = 50 * (2048 + 64)


def too_large_to_decide(
    declaration: Declaration,
    *,
    authority_chars: int = _LONGEST_AUTHORITY,
    advice: bool = False,
) -> str | None:
    """Why the decision on ``declaration`` could not travel, or None when it can.

    A decision lists every quoted document, with a reason for each one refused (two where
    the declarant's override or an authority's advice mode speaks too). Its size is that
    of the longest decision this declaration can get: its own goods item numbers, codes
    and references, the longest verdict, reason code and partner code, authority names
    of ``authority_chars``, and a second reason on every document of an item carrying
    the override mention, or on every document when ``advice`` (an authority of its
    office in advice mode). Refused at intake, with this reason, rather than decided and
    lost at the publisher. Until stop 36 the probe gave every document a 200-character
    reason and 16-character codes, about 2.5 times the real size: an 898 kB declaration
    was refused (found by review).
    """
    documents = [
        (item, document) for item in declaration.goods_items for document in item.documents
    ]
    if len(documents) < 1000:
        return None  # far below the limit: no need to measure
    authority = "x" * authority_chars
    verdict = _LONGEST_VERDICT.value.lower().replace("_", " ")
    results = []
    reasons = []
    for item, document in documents:
        results.append(
            DocumentResult(
                goods_item=item.number,
                code=document.code,
                reference=document.reference,
                authority=authority,
                verdict=_LONGEST_VERDICT,
                partner_code="x" * _LONGEST_PARTNER_CODE,
            )
        )
        described = (
            f"goods item {item.number}, {document.code} {document.reference}: {verdict} at "
            f"{authority} (partner code {'x' * _LONGEST_PARTNER_CODE})"
        )
        reasons.append(Reason(code="X" * _LONGEST_REASON_CODE, text=described))
        if advice or item.mentions(OVERRIDE_MENTION):
            reasons.append(
                Reason(
                    code="X" * _LONGEST_REASON_CODE,
                    text=described + "x" * _SECOND_REASON_EXTRA,
                )
            )
    probe = Decision(
        reference=declaration.reference,
        version=declaration.version,
        outcome=Outcome.CONTROL_DOCUMENTARY,
        decided_at=datetime.now().astimezone(),
        reasons=tuple(reasons),
        documents=tuple(results),
    )
    size = sealed_size(len(encode_decision(probe)) + _DECLARATION_REASONS_BYTES)
    if size <= MAX_RECORD_BYTES:
        return None
    return (
        f"its decision on {len(documents)} documents could take {size} bytes sealed, "
        f"over the {MAX_RECORD_BYTES}-byte record limit: split the declaration"
    )


def _following_up(routed: RoutedDeclaration, held: list[ExpectedAnswer]) -> RoutedDeclaration:
    """What a follow-up stage asks: the documents ``held`` at their authorities (written
    off, for an invalidation; kept for a control, for a release after it), beside the
    documents it quotes that no authority checks (exempt, unrouted). A quoted document
    nothing is held on has nothing to follow up."""
    return RoutedDeclaration(
        documents=(
            *(d for d in routed.documents if d.authority is None),
            *(_held(e) for e in held),
        ),
        authorities=tuple(sorted({e.authority for e in held})),
    )


def _quoted_and_given_back(
    routed: RoutedDeclaration, written_off: list[ExpectedAnswer]
) -> RoutedDeclaration:
    """What an invalidation whose past the hub does not know gives back: what it quotes,
    and what ``written_off`` says was written off (with the quantities written off, for a
    line both name)."""
    known = {(e.authority, e.goods_item, e.code, e.reference, e.line) for e in written_off}
    return RoutedDeclaration(
        documents=(
            *(
                d
                for d in routed.documents
                if (d.authority, d.goods_item, d.code, d.reference, d.line) not in known
            ),
            *(_held(e) for e in written_off),
        ),
        authorities=tuple(sorted({*routed.authorities, *(e.authority for e in written_off)})),
    )


def _held(e: ExpectedAnswer) -> ExpectedDocument:
    return ExpectedDocument(
        e.goods_item,
        e.code,
        e.reference,
        e.authority,
        commodity_code=e.commodity_code,
        line=e.line,
        quantity=e.quantity,
        unit=e.unit,
    )


def _not_sealed(data: bytes) -> str:
    """Why a record that is no compact JOSE serialization was refused: an empty one (a
    tombstone, nothing but whitespace) is said to be empty, not taken for plain XML (the
    runtime reads a null value as empty: the two cannot be told apart here)."""
    if not data.strip():
        what = "only whitespace" if data else "no value (null, as a tombstone, or empty)"
        return (
            f"the record carries {what}; a declaration is sealed by the clearance system "
            "(signed, then encrypted to the hub)"
        )
    return (
        "a declaration must be sealed by the clearance system (signed, then encrypted "
        "to the hub); plain declarations are accepted in local development only"
    )


def _opened_by(known: Case | None, version: int, source: SourcePosition) -> bool:
    """Whether the record at ``source`` opened ``known`` as ``version``: read again, it
    is a redelivery, not a copy."""
    return known is not None and known.version == version and known.opened_from == source.describe()


def _declarant_changed(known: Case | None, declaration: Declaration) -> bool:
    """A later version names another declarant than the known case, or than the one a
    retired case's marker keeps the tag of (stop 52). A case refused unread, or a marker
    of before, names none: nothing to compare with."""
    if known is None:
        return False
    if known.declarant_eori:
        return known.declarant_eori != declaration.declarant.eori
    tag = known.declarant_tag
    return bool(tag) and tag != declarant_tag(declaration.declarant.eori).decode()
