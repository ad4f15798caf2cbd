"""Correlation: an authority answers; record it and decide once every answer is in."""

from __future__ import annotations

from datetime import datetime

from pydantic import ValidationError

from gun_contract.dead_letter import ErrorClass, SourcePosition, add_dead_letter
from gun_contract.effects import Effects
from gun_contract.envelope import ContentType, EnvelopeRejected
from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import (
    AuthorityResponse,
    DocumentAnswer,
    Operation,
    contract_partner_code,
    request_id_for,
)
from gun_contract.model.verdicts import Verdict
from gun_contract.record_keys import keyed_by, not_keyed_by
from gun_contract.validation import invalid_fields
from gun_hub import metrics
from gun_hub.domain.case import Case, DocumentKey, ExpectedAnswer
from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.facts import GivenBackFact, WriteOffFact, WrittenOff
from gun_hub.pipeline.hub_context import CaseStore, HubContext

COMPONENT = "hub.correlation"
UNSOLICITED = "RESPONSE_UNSOLICITED"
UNASKED_DOCUMENT = "RESPONSE_UNASKED_DOCUMENT"
KEY_MISMATCH = "RESPONSE_KEY_MISMATCH"
# Sealed and verified, but its content type is not the JSON an answer is (contract
# section 5), whatever the payload looks like (review stop 38, D4).
NOT_JSON = "RESPONSE_NOT_JSON"
WRONG_SENDER = "RESPONSE_WRONG_SENDER"
FOLLOW_UP_OPERATIONS = frozenset({Operation.WRITE_OFF, Operation.DELETE, Operation.GIVE_BACK})
# A withheld partner code is shown this long at most, and so many of them.
_WITHHELD_CODE_CHARS = 32
_WITHHELD_CODES_SHOWN = 5
_DONE = {
    Operation.WRITE_OFF: StatusKind.WRITTEN_OFF,
    Operation.DELETE: StatusKind.RESERVATION_DELETED,
    Operation.GIVE_BACK: StatusKind.GIVEN_BACK,
}


class Correlation:
    """Handles one record of any authority's response topic."""

    def __init__(self, context: HubContext, cases: CaseStore) -> None:
        self._ctx = context
        self._cases = cases

    def handle(
        self, data: bytes, source: SourcePosition, accepted_at: float | None = None
    ) -> Effects:
        """``accepted_at``: the broker's log-append time of the record (freshness)."""
        outbox = Effects()
        try:
            # Its id is remembered only once its key is checked below (review stop 38-s,
            # S2): a copy under another key, read first, would otherwise make the genuine
            # answer a replay, and the case wait for its deadline.
            opened = self._ctx.envelope.open(
                data,
                topic=source.topic,
                position=source.describe(),
                accepted_at=accepted_at,
                check_replay=False,
            )
        except EnvelopeRejected as rejection:
            self._refuse_envelope(outbox, data, source, rejection)
            return outbox
        if opened.content_type is not ContentType.JSON:
            # Judged by what its signed header says, as a declaration is: a payload read
            # as another type than its sender sealed it is not acted on.
            self._dead_letter(
                outbox,
                data,
                source,
                ErrorClass.SECURITY,  # as a declaration of another type is
                NOT_JSON,
                ValueError(
                    f"sealed and signed, but its content type is {opened.content_type} where "
                    f"an answer must be {ContentType.JSON}"
                ),
            )
            return outbox
        try:
            response = AuthorityResponse.model_validate_json(opened.payload)
        except ValidationError as err:
            self._dead_letter(
                outbox,
                data,
                source,
                ErrorClass.PERMANENT,
                "RESPONSE_INVALID",
                ValueError(invalid_fields(err)),
            )
            return outbox
        if not keyed_by(source.key, response.reference):
            # Records of a declaration share a key (and so a partition, where its case
            # and replay memory live); an answer moved to another key is a forgery, and
            # so is one with none (a null key passed until review stop 38, D3).
            self._dead_letter(
                outbox,
                data,
                source,
                ErrorClass.SECURITY,
                KEY_MISMATCH,
                ValueError(not_keyed_by("answer", source.key, response.reference)),
            )
            return outbox
        try:
            self._ctx.envelope.record_sighting(
                opened, position=source.describe(), accepted_at=accepted_at
            )
        except EnvelopeRejected as rejection:
            self._refuse_envelope(outbox, data, source, rejection)
            return outbox
        if opened.sender != response.authority or source.topic != self._ctx.topics.responses(
            response.authority
        ):
            self._dead_letter(
                outbox,
                data,
                source,
                ErrorClass.SECURITY,
                WRONG_SENDER,
                ValueError(
                    f"{opened.sender!r} answered for {response.authority!r} on {source.topic}"
                ),
            )
            return outbox
        # Read and opened once for both steps: a case is decrypted and parsed per read,
        # the largest share of handling an answer after its envelope (bench-hops profile).
        stored = self._cases.get(response.reference.encode())
        case = Case.from_bytes(stored) if stored is not None else None
        if not self._solicited(response, case):
            self._dead_letter(
                outbox,
                data,
                source,
                ErrorClass.SECURITY,
                UNSOLICITED,
                ValueError(
                    f"{response.authority} answered {response.operation.value} of version "
                    f"{response.version}, which the hub never asked it"
                ),
            )
            return outbox
        assert case is not None  # noqa: S101 - a solicited answer has a case
        asked_only = self._asked_only(outbox, data, source, response, case)
        if asked_only is not None:
            self._record(outbox, asked_only, source.partition, case)
        return outbox

    def _solicited(self, response: AuthorityResponse, case: Case | None) -> bool:
        """Whether the hub asked this authority this operation about this version: an
        answer nobody asked for (a write-off or a deletion out of nowhere, an alert
        raised by an adapter on its own) changes nothing (issue 11, item 7)."""
        asked = request_id_for(
            response.reference, response.version, response.authority, response.operation
        )
        if response.request_id != asked:
            return False
        return case is not None and asked in case.requested

    def _asked_only(
        self,
        outbox: Effects,
        data: bytes,
        source: SourcePosition,
        response: AuthorityResponse,
        case: Case,
    ) -> AuthorityResponse | None:
        """``response`` with only the answers about documents the hub asked its authority
        (``Case.asked``); None when none is left of a response that named some. Whatever
        else it names (another authority's document, a document nobody quoted, any text)
        would reach the status history the trader reads, the write-off facts and the
        decision in that authority's name: it is left out and dead-lettered (review stop
        37, i3). The reason counts the documents and does not quote them (partner text)."""
        asked = case.asked_of(response.authority)
        if asked is None:
            return response  # a case stored before the hub kept what it asked
        kept = tuple(a for a in response.answers if (a.goods_item, a.code, a.reference) in asked)
        left_out = len(response.answers) - len(kept)
        if not left_out:
            return response
        self._dead_letter(
            outbox,
            data,
            source,
            ErrorClass.SECURITY,
            UNASKED_DOCUMENT,
            ValueError(
                f"{response.authority} answered {response.operation.value} of version "
                f"{response.version} about {left_out} document(s) the hub never asked it: "
                + (
                    f"left out, its {len(kept)} other answer(s) taken"
                    if kept
                    else "nothing else in the answer, nothing taken"
                )
            ),
        )
        return response.model_copy(update={"answers": kept}) if kept else None

    def _record(
        self, outbox: Effects, response: AuthorityResponse, partition: int, case: Case
    ) -> None:
        """Record the answer in ``case``, the answer's case as stored (a solicited answer
        has one)."""
        awaited = case.awaits(response)
        # Decisions the broker may not have are announced again, and the answer is still
        # recorded: it will not come again (chaos run: a cancellation waited for an answer
        # already consumed, because an earlier decision was unconfirmed). Before anything
        # else: a cancellation decided on its DELETE answers, whose worker died before the
        # broker had the decision, is announced again when the answer is read again,
        # though that answer now looks like a late follow-up (chaos run with two workers:
        # 7 cancellations lost).
        self._ctx.announce_again_if_lost(outbox, case, partition)
        if response.operation in FOLLOW_UP_OPERATIONS and not awaited:
            self._follow_up_answered(outbox, response, case)
            return
        if case.version != response.version or case.decided:
            metrics.LATE_ANSWERS.labels(authority=response.authority).inc()
            self._ctx.emit_status(
                outbox,
                response.reference,
                response.version,
                StatusKind.LATE_ANSWER_IGNORED,
                # Kept in the history for the officer: the decision stands (deadlines.py).
                "the answer concerns a version that is decided, superseded or unknown; "
                f"verdicts: {', '.join(sorted({a.verdict.value for a in response.answers}))}",
                authority=response.authority,
                lodging=case.receipt,
            )
            return
        if not case.record(response):
            return  # a redelivered answer already taken into account (or another request's)
        self._ctx.emit_status(
            outbox,
            response.reference,
            response.version,
            StatusKind.ANSWER_RECEIVED,
            ", ".join(verdicts_taken(case, response)) + self._withheld_codes(response),
            authority=response.authority,
            lodging=case.receipt,
        )
        if response.operation in FOLLOW_UP_OPERATIONS:
            # The stage's own operation is a follow-up (the write-off of what a control
            # kept, a cancellation's deletion, an invalidation's give-back): answered in
            # time, it is reported as one answered later is, so the statistics and the
            # trader's quantities count it (found by review, stop 36: they missed every
            # write-off after a control).
            self._follow_up_answered(outbox, response, case)
        if case.complete:
            self._ctx.decide_case(outbox, case, partition)
        self._ctx.store_case(self._cases, case)

    def _withheld_codes(self, response: AuthorityResponse) -> str:
        """The partner codes decision.xsd cannot carry, left out of the decision
        (partner_codes.py): said here, for operations (found by review, stop 36)."""
        withheld = sorted(
            {
                repr(a.partner_code[:_WITHHELD_CODE_CHARS])
                for a in response.answers
                if a.partner_code is not None and contract_partner_code(a.partner_code) is None
            }
        )
        if not withheld or self._ctx.routing.is_confidential(response.authority):
            return ""
        return "; partner codes the decision schema cannot carry, left out: " + ", ".join(
            withheld[:_WITHHELD_CODES_SHOWN]
        )

    def _follow_up_answered(self, outbox: Effects, response: AuthorityResponse, case: Case) -> None:
        """What a write-off, deletion or give-back did: sent after a decision
        (lifecycle.py), or as the stage's own operation (its awaited answer, recorded in
        the case as well)."""
        stale = tuple(a for a in response.answers if a.stale_version)
        applied = tuple(a for a in response.answers if not a.stale_version)
        if stale and applied and not any(a.verdict is Verdict.UNAVAILABLE for a in applied):
            # Partly superseded: a newer version took some documents over at the partner
            # (STALE_VERSION there, nothing changed) and the operation was applied to the
            # others. Each part is said for what it is: reported whole, it was a
            # FOLLOW_UP_FAILED, or a post-release alert for war material, though nothing
            # failed (found by review, stop 36). An answer still UNAVAILABLE somewhere
            # stays one pending operation: its replay gives the final answer.
            self._report_follow_up(outbox, response, case, applied)
            self._report_follow_up(outbox, response, case, stale)
        else:
            self._report_follow_up(outbox, response, case, response.answers)

    def _report_follow_up(
        self,
        outbox: Effects,
        response: AuthorityResponse,
        case: Case,
        answers: tuple[DocumentAnswer, ...],
    ) -> None:
        """The status of what ``response`` did on ``answers`` (some or all of its
        documents), and the fact of what it wrote off."""
        verdicts = sorted({a.verdict for a in answers})
        detail = ", ".join(f"{a.code} {a.reference}: {a.verdict.value}" for a in answers)
        ctx = self._ctx
        if Verdict.UNAVAILABLE in verdicts:
            kind = StatusKind.FOLLOW_UP_PENDING  # the adapter replays it when the partner is back
        elif verdicts == [Verdict.VALID]:
            kind = _DONE[response.operation]
        elif all(a.stale_version for a in answers):
            kind = StatusKind.FOLLOW_UP_SUPERSEDED
        elif (
            response.operation is Operation.WRITE_OFF
            and ctx.routing.checks_after_release(response.authority)
            # A call the partner rejected says nothing of what left; another licence's
            # refusal in the same answer does (found by review in stop 31).
            and any(a.verdict.is_refusal and not a.call_rejected for a in answers)
        ):
            # War material: what left is not covered by the licence. The goods are gone,
            # so this is an alert for post-clearance control, never a block.
            kind = StatusKind.POST_RELEASE_ALERT
            metrics.POST_RELEASE_ALERTS.labels(authority=response.authority).inc()
        else:
            kind = StatusKind.FOLLOW_UP_FAILED
        if ctx.routing.is_confidential(response.authority):
            detail = ", ".join(v.value for v in verdicts)  # verdicts only, never the licence
        ctx.emit_status(
            outbox,
            response.reference,
            response.version,
            kind,
            f"{response.operation.value}: {detail}",
            authority=response.authority,
            lodging=case.receipt,
        )
        if ctx.routing.is_confidential(response.authority):
            return  # a licence's quantities are never written on the facts topic
        if kind is StatusKind.WRITTEN_OFF:
            ctx.emit_fact(outbox, written_off(response, case, ctx.clock(), answers))
        elif kind is not StatusKind.FOLLOW_UP_PENDING:
            # What the partner did, document by document (it writes off and gives back
            # each on its own): the others (refused, 02 nothing written off, stale) did
            # nothing. A write-off refused for one document counted none of the others,
            # which the partner wrote off (a review of degraded mode, stop 57). A pending
            # answer counts when its replay gives the final one (its documents answered
            # for good are kept in it: adapters/base/replay.py).
            done = tuple(a for a in answers if a.verdict is Verdict.VALID and not a.stale_version)
            if done and response.operation is Operation.WRITE_OFF:
                ctx.emit_fact(outbox, written_off(response, case, ctx.clock(), done))
            elif done and response.operation is Operation.GIVE_BACK:
                ctx.emit_fact(outbox, given_back(response, case, ctx.clock(), done))

    def _refuse_envelope(
        self, outbox: Effects, data: bytes, source: SourcePosition, rejection: EnvelopeRejected
    ) -> None:
        metrics.ENVELOPE_REJECTIONS.labels(kind=rejection.kind.value).inc()
        self._dead_letter(outbox, data, source, ErrorClass.SECURITY, rejection.kind, rejection)

    def _dead_letter(
        self,
        outbox: Effects,
        data: bytes,
        source: SourcePosition,
        error_class: ErrorClass,
        kind: str,
        error: Exception,
    ) -> None:
        metrics.DEAD_LETTERS.labels(kind=str(kind)).inc()
        add_dead_letter(
            outbox,
            self._ctx.topics.dlq,
            data,
            error_class=error_class,
            kind=str(kind),
            reason=str(error),
            source=source,
            component=COMPONENT,
        )


def verdicts_taken(case: Case, response: AuthorityResponse) -> list[str]:
    """The verdicts ``case`` took from ``response`` (``Case.record``): its answers', and
    UNAVAILABLE where it left a document of its authority out (an adapter that skips a
    document has not vouched for it). The answer's event listed the answers' alone, and
    the trader's redaction read an authority answering VALID about one document of two as
    giving no UNAVAILABLE: DGA's in advice mode was kept on a release, DGAL's left out
    beside DGA's silence (a review of stop 58, third round)."""
    answered = {(a.goods_item, a.code, a.reference) for a in response.answers}
    verdicts = {a.verdict.value for a in response.answers}
    if any(
        (e.goods_item, e.code, e.reference) not in answered
        for e in case.expected
        if e.authority == response.authority
    ):
        verdicts.add(Verdict.UNAVAILABLE.value)
    return sorted(verdicts)


def written_off(
    response: AuthorityResponse,
    case: Case | None,
    at: datetime,
    answers: tuple[DocumentAnswer, ...] | None = None,
) -> WriteOffFact:
    """What a confirmed write-off took off each document (those of ``answers``, by
    default all of ``response``'s), with the lines and quantities the hub knows
    (:func:`_quoted`)."""
    return WriteOffFact(
        reference=response.reference,
        version=response.version,
        authority=response.authority,
        at=at,
        documents=_lines(response, case, response.answers if answers is None else answers),
    )


def given_back(
    response: AuthorityResponse,
    case: Case | None,
    at: datetime,
    answers: tuple[DocumentAnswer, ...],
) -> GivenBackFact:
    """What a confirmed give-back returned to each document of ``answers``: what the
    invalidation asked to give back, the quantities written off (its documents)."""
    return GivenBackFact(
        reference=response.reference,
        version=response.version,
        authority=response.authority,
        at=at,
        documents=_lines(response, case, answers),
    )


def _lines(
    response: AuthorityResponse, case: Case | None, answers: tuple[DocumentAnswer, ...]
) -> list[WrittenOff]:
    """Each answer with the line and quantity it quoted. The adapter answers each quoted
    line (a certificate quoted on two lines of one goods item gets two answers): the
    answers about one document take its lines in the order they were quoted."""
    quoted = _quoted(response, case)
    documents = []
    for answer in answers:
        lines = quoted.get((answer.goods_item, answer.code, answer.reference), [])
        # The last line stays for an answer repeated (the view keeps it once).
        line = lines.pop(0) if len(lines) > 1 else next(iter(lines), None)
        documents.append(
            WrittenOff(
                goods_item=answer.goods_item,
                code=answer.code,
                reference=answer.reference,
                line=line.line if line else None,
                quantity=line.quantity if line else None,
                unit=line.unit if line else None,
            )
        )
    return documents


def _quoted(
    response: AuthorityResponse, case: Case | None
) -> dict[DocumentKey, list[ExpectedAnswer]]:
    """The documents of ``response``'s version the hub knows its authority was asked
    about, with lines and quantities: the version's own while it is the case's; else
    what the case remembers written off (a retention marker, or a newer version, keeps
    ``Case.written_off``: found by review, stop 37-s, F6), and an invalidation's own
    documents, which are what was written off. Unknown (None) only when the hub does not
    know: a case or marker stored before cases kept their write-offs. A case a later
    version on another partition took over follows up under that version what it held
    and gives back what it wrote off (takeover.py): those are its documents too (stop 52:
    their facts said no quantity)."""
    if case is None:
        return {}
    own = case.expected if case.version == response.version else []
    remembered = [
        *(case.written_off or []),
        *(case.expected if case.stage is Stage.INVALIDATED else []),
        *case.handed_over,
        *case.given_back,
    ]
    quoted: dict[DocumentKey, list[ExpectedAnswer]] = {}
    for source in (own, remembered):
        found: dict[DocumentKey, list[ExpectedAnswer]] = {}
        for e in source:
            if e.authority == response.authority:
                found.setdefault((e.goods_item, e.code, e.reference), []).append(e)
        for key, lines in found.items():
            quoted.setdefault(key, lines)  # the version's own first
    return quoted
