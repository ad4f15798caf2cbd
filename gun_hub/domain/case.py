"""A case: the hub's memory of one declaration while its answers come in.

Stored in a faust table keyed by reference (one live case per declaration: a new version
replaces the previous one). Serialised as JSON bytes with pydantic, which is several times
faster than faust's own record codec.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from gun_contract.model.decision import Decision, DocumentResult
from gun_contract.model.declaration import Declaration, Direction, Stage
from gun_contract.model.encoding import json_bytes
from gun_contract.model.exchange import (
    AuthorityRequest,
    AuthorityResponse,
    DocumentAnswer,
    Operation,
)
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.override import overriding_items
from gun_hub.domain.risk import RiskHit
from gun_hub.domain.rollout import RolloutMode
from gun_hub.domain.routing import OPERATION_FOR_STAGE, RoutedDeclaration

# A document as a request quotes it to an authority: (goods item, code, reference).
DocumentKey = tuple[int, str, str]


def _gravity(verdict: Verdict) -> int:
    """How far ``verdict`` stands from a release: a refusal, then what degraded mode
    checks by hand, then a verdict that lets the goods go."""
    if verdict.is_refusal:
        return 2
    return 1 if verdict.is_degraded else 0


class ExpectedAnswer(BaseModel):
    model_config = ConfigDict(frozen=True)

    goods_item: int
    code: str
    reference: str
    authority: str
    commodity_code: str = ""
    line: int | None = None
    quantity: Decimal | None = None
    unit: str | None = None
    # The authority's rollout mode for this version (rollout.py): a shadow answer is kept
    # apart from the results the decision is taken on.
    mode: RolloutMode = RolloutMode.ENFORCE


class RiskFinding(BaseModel):
    """A risk hit as stored in the case (evaluated at intake, applied at decision)."""

    model_config = ConfigDict(frozen=True)

    code: str
    action: Outcome
    text: str

    def hit(self) -> RiskHit:
        return RiskHit(self.code, self.action, self.text)


class Case(BaseModel):
    """State of the latest version of one declaration."""

    reference: str
    version: int
    stage: Stage
    direction: Direction = Direction.IMPORT
    procedure: str = ""
    declarant_eori: str = ""
    # A retired case's marker keeps no EORI, only its tag (decision_outbox.declarant_tag):
    # the declarant checks of a later version, read here or elsewhere, are made on it
    # (stop 52: without it, another trader's version was taken after the retention).
    declarant_tag: str = ""
    # Where the goods go and come from, as the version declared them: a write-off asks a
    # partner holding nothing to reserve first (adapters/base/certex.py), and the
    # reservation checks the destination (08). None: stored before stop 53.
    country_of_dispatch: str | None = None
    country_of_destination: str | None = None
    # The receipt of this version its ReceivedFact named (status_events.lodging), which its
    # status events name; None for a case no fact names a receipt of (one refused unread,
    # or opened before stop 53), whose events the view shows by the versions its
    # declarant named (review of stop 53's change: derived from ``opened_from`` alone,
    # such events named a receipt nobody's, and the trader lost its own decision).
    receipt: str | None = None
    opened_at: datetime
    deadline: datetime
    awaiting: list[str]
    expected: list[ExpectedAnswer]
    results: list[DocumentResult]
    risk: list[RiskFinding] = []
    outcome: Outcome | None = None
    # The decision as emitted, and whether the broker is known to have it. A worker
    # killed between writing "decided" and the decision reaching the broker finds the
    # case decided but unannounced when the triggering event is redelivered, and
    # announces it again: a decision can be repeated in that window, never lost.
    decision: Decision | None = None
    announced: bool = True
    # Where the declaration record that opened this case sits in the log: the same
    # record read again is a redelivery (its effects are sent again), a copy elsewhere is
    # a duplicate (ignored).
    opened_from: str = ""
    # Decided earlier versions whose decision the broker had not confirmed when this
    # version replaced them: announced again with it, until confirmed (defect 4).
    pending_announcements: list[Case] = []
    # Every request the hub sent about this declaration (its versions' own requests and
    # follow-ups): an answer is acted on only if it answers one of them (issue 11, item 7).
    requested: list[str] = []
    # What those requests quoted, per authority: an answer speaks only of these (another
    # authority's document, or any text, is left out: review stop 37, i3). Once per
    # document, whatever the number of versions and operations that asked it. None:
    # stored before the hub kept it (derived then from the documents the case knows:
    # ``asked_by_authority``).
    asked: dict[str, list[DocumentKey]] | None = None
    # Goods items carrying the declarant's override (mention 73000, gun_hub/domain/override.py):
    # what they cover is judged when the case is decided, from the results then.
    override_items: list[int] = []
    # The customs office that lodged it, and the rollout mode each routed authority had
    # for it when it was opened (rollout.py): fixed for the version, whatever changes after.
    office: str = ""
    rollout: dict[str, RolloutMode] = {}
    # What the authorities in shadow mode answered: kept for the pilot report, never
    # decided on (pipeline/shadow.py).
    shadow_results: list[DocumentResult] = []
    # Reservations of earlier versions this one no longer makes (documents it does not
    # quote, or at an authority it no longer asks to reserve), deleted under this
    # version: kept to send the deletions again when its record is read again after a
    # crash, as its own requests are (lifecycle.py; found by review in stop 36).
    dropped: list[ExpectedAnswer] = []
    # What earlier versions of the declaration wrote off at its partners and nothing gave
    # back since, with lines and quantities: what an invalidation gives back, whatever it
    # quotes (lifecycle.written_off; found by review, stop 36). A retention marker holds
    # the whole of it, its own version's write-offs included. None: stored before the hub
    # kept it (a marker of then does not know what was written off).
    written_off: list[ExpectedAnswer] | None = None
    # A retired case's marker whose earlier versions' write-offs are not known
    # (``written_off`` None): what its own versions wrote off, which its documents, gone
    # with the marker, no longer tell. Given back when an invalidation read on another
    # partition tells it; the past before stays unknown (an invalidation read here gives
    # back what it quotes). Review of stop 52.
    own_written_off: list[ExpectedAnswer] = []
    # The higher version that replaced this one before it was decided: the decision of
    # such a version is REFUSE, SUPERSEDED (``superseded``), carried by the newer case
    # until the broker has it, with nothing to follow up (review stop 40, W4).
    superseded_by: int | None = None
    # A higher version read on another partition of the declarations (the clearance
    # system's producers split the reference): its case follows up what this one held, so
    # this one holds nothing, waits for no control and follows nothing up
    # (pipeline/takeover.py; outside audit of stop 50, F1).
    taken_over_by: int | None = None
    # What this version reserved that the version taking it over does not quote: written
    # off or deleted from here under that version (pipeline/takeover.py), sent again if
    # the notice is read again.
    handed_over: list[ExpectedAnswer] = []
    # How ``handed_over`` is followed up: WRITE_OFF after a release after control, DELETE
    # otherwise; a write-off sent from here counts as this version's (what an
    # invalidation gives back: lifecycle.own_write_offs; stop 52).
    handed_over_as: Operation | None = None
    # What this case had written off that an INVALIDATED later version, read on another
    # partition, gives back from here under that version (pipeline/takeover.py): no
    # longer written off (lifecycle.written_off), sent again if the notice is read
    # again (stop 52: before, it stayed written off at the partner).
    given_back: list[ExpectedAnswer] = []
    # The INVALIDATED version whose notice had this case give back (``given_back``): its
    # notice read again sends the give-backs again; a lower version read here after it
    # is stale. Apart from ``taken_over_by``: a case taken over by a release, then told
    # of its invalidation, still sends what the release had it write off if that notice
    # is read again (review of stop 52).
    given_back_by: int | None = None
    # Whether this version, read where earlier versions were not, told the other
    # partitions (takeover.py): told again only then when its record is read again.
    told_others: bool = False
    # Whether customs acted on an earlier version of the declaration read here (decided
    # it for a control, released or cancelled it, or one of the office's stages came):
    # carried from version to version and into the retired case's marker, so that a
    # trader's later version through the gateway is never taken once it did, whatever
    # came between (trader_stages.py; a review of stop 56: a later version refused unread
    # made the control forgotten).
    customs_acted: bool = False

    @classmethod
    def open(
        cls,
        *,
        declaration: Declaration,
        routed: RoutedDeclaration,
        opened_at: datetime,
        deadline: datetime,
        modes: dict[str, RolloutMode] | None = None,
    ) -> Case:
        """``modes``: the rollout mode of each routed authority (none given: enforce).
        An authority that is off is not awaited; its documents, and those of an authority
        in shadow, are decided as checked by no one (UNROUTED: at the office)."""
        modes = {a: (modes or {}).get(a, RolloutMode.ENFORCE) for a in routed.authorities}
        return cls(
            reference=declaration.reference,
            version=declaration.version,
            stage=declaration.stage,
            direction=declaration.direction,
            procedure=declaration.procedure,
            declarant_eori=declaration.declarant.eori,
            country_of_dispatch=declaration.country_of_dispatch,
            country_of_destination=declaration.country_of_destination,
            opened_at=opened_at,
            deadline=deadline,
            awaiting=[a for a in routed.authorities if modes[a].asked],
            expected=[
                ExpectedAnswer(
                    goods_item=d.goods_item,
                    code=d.code,
                    reference=d.reference,
                    authority=d.authority,
                    commodity_code=d.commodity_code,
                    line=d.line,
                    quantity=d.quantity,
                    unit=d.unit,
                    mode=modes[d.authority],
                )
                for d in routed.documents
                if d.authority is not None and modes[d.authority].asked
            ],
            results=[
                *routed.local_results(),
                *(
                    DocumentResult(
                        goods_item=d.goods_item,
                        code=d.code,
                        reference=d.reference,
                        authority=d.authority,
                        verdict=Verdict.UNROUTED,
                    )
                    for d in routed.documents
                    if d.authority is not None
                    and modes[d.authority] in (RolloutMode.OFF, RolloutMode.SHADOW)
                ),
            ],
            override_items=overriding_items(declaration),
            office=declaration.customs_office,
            rollout=modes,
            asked={},
        )

    @property
    def decided(self) -> bool:
        return self.outcome is not None

    def reserving(self) -> list[ExpectedAnswer]:
        """The documents asked with the stage's own operation (a lodged version's
        reservations), not merely checked in shadow."""
        return [e for e in self.expected if e.mode.reserves]

    def reserved_at(self) -> set[str]:
        """The authorities this version asked to reserve (or to follow a reservation up)."""
        return {e.authority for e in self.reserving()}

    def unconfirmed(self) -> list[Case]:
        """Decided versions (this one included) whose decision the broker may not have."""
        own = [self] if self.decided and not self.announced and self.decision else []
        return [*self.pending_announcements, *own]

    def expect_answers_to(self, requests: Iterable[AuthorityRequest]) -> None:
        """Record requests sent about this declaration: their answers are solicited, and
        may speak of the documents they quote."""
        known = set(self.requested)
        for request in requests:
            if request.request_id not in known:
                known.add(request.request_id)
                self.requested.append(request.request_id)
        asked = self.asked_by_authority()
        if asked is None:
            return  # unknown stays unknown (asked_by_authority)
        for request in requests:
            quoted = asked.setdefault(request.authority, [])
            already = set(quoted)
            for item in request.items:
                for document in item.documents:
                    key = (item.number, document.code, document.reference)
                    if key not in already:
                        already.add(key)
                        quoted.append(key)
        self.asked = asked

    def asked_by_authority(self) -> dict[str, list[DocumentKey]] | None:
        """The documents the hub asked each authority about (a copy); None when it does not
        know: a case or retention marker stored before the hub kept them (stop 37). Such a
        declaration's answers are taken whole, as then: what it knows of its documents is
        not what it asked (a marker of then keeps none, a superseded version's are gone),
        and deriving it dead-lettered a late deletion as unasked on an upgrade (found by
        review of stop 37's change, G2)."""
        if self.asked is None:
            return None
        return {authority: list(keys) for authority, keys in self.asked.items()}

    def asked_of(self, authority: str) -> frozenset[DocumentKey] | None:
        """The documents ``authority`` may answer about; None: any (not known)."""
        if self.asked is None:
            return None
        return frozenset(self.asked.get(authority, ()))

    def superseding_state(self) -> list[Case]:
        """What a newer version must keep of this case: its unconfirmed decisions."""
        # Not what they asked: the newer case carries that on for the whole declaration.
        return [
            case.model_copy(update={"pending_announcements": [], "asked": {}})
            for case in self.unconfirmed()
        ]

    def superseded(self, by_version: int, decision: Decision) -> Case:
        """This undecided version decided ``decision`` (``decide.refuse_superseded``)
        because ``by_version`` replaced it: what the newer case carries to announce it.

        Taken on no document, it keeps none of its documents, results, risk findings,
        override or rollout: no document use or override is counted or audited for it,
        and nothing is followed up (``lifecycle.follow_up_requests``). Its reservations
        are the newer version's to restate (RESERVE is a PUT), or to delete as dropped
        under it, as before this version had a decision: a DELETE of its own would free,
        for a moment, what the newer version reserves again (another declaration could
        take it in between)."""
        return self.model_copy(
            update={
                "outcome": decision.outcome,
                "decision": decision,
                "announced": False,
                "superseded_by": by_version,
                "awaiting": [],
                "expected": [],
                "results": [],
                "shadow_results": [],
                "risk": [],
                "override_items": [],
                "rollout": {},
                "dropped": [],
                "pending_announcements": [],
                "requested": [],
                "asked": {},
                "written_off": [],
            }
        )

    @property
    def complete(self) -> bool:
        return not self.awaiting

    def operation_asked(self, authority: str) -> Operation:
        """What this version asks ``authority``: the stage's operation, or a CHECK in
        shadow mode (it must reserve nothing)."""
        mode = self.rollout.get(authority, RolloutMode.ENFORCE)
        return OPERATION_FOR_STAGE[self.stage] if mode.reserves else Operation.CHECK

    def awaits(self, response: AuthorityResponse) -> bool:
        """Whether ``response`` is the answer this version waits for from its authority:
        to the operation it asked, about the documents it quotes there. The deletion of
        what an earlier version held and this one dropped (``dropped``) goes to the same
        authority under the same version, before the version's own request; its answer
        is a follow-up, never that one (before: taken for it, the documents this version
        quotes were recorded UNAVAILABLE, the partner up; found by review in stop 36)."""
        if (
            self.decided
            or response.version != self.version
            or response.authority not in self.awaiting
            or response.operation is not self.operation_asked(response.authority)
        ):
            return False
        quoted = {
            (e.goods_item, e.code, e.reference)
            for e in self.expected
            if e.authority == response.authority
        }
        return not response.answers or any(
            (a.goods_item, a.code, a.reference) in quoted for a in response.answers
        )

    def record(self, response: AuthorityResponse) -> bool:
        """Take one authority's answers in; False if they were not awaited (a duplicate,
        or an answer to another request: ``awaits``)."""
        if not self.awaits(response):
            return False
        self.awaiting.remove(response.authority)
        # One certificate on two lines of a goods item may be answered per line: the
        # worse answer counts, whatever their order (the last one did: a refused line
        # followed by a valid one was released; review stop 46).
        answers: dict[tuple[int, str, str], DocumentAnswer] = {}
        for a in response.answers:
            key = (a.goods_item, a.code, a.reference)
            if key not in answers or _gravity(a.verdict) > _gravity(answers[key].verdict):
                answers[key] = a
        for expected in self.expected:
            if expected.authority != response.authority:
                continue
            answer = answers.get((expected.goods_item, expected.code, expected.reference))
            # An adapter that skips a document has not vouched for it.
            self._record_result(
                expected,
                answer.verdict if answer else Verdict.UNAVAILABLE,
                answer.partner_code if answer else None,
            )
        return True

    def time_out(self) -> None:
        """The deadline passed: every awaited answer becomes UNAVAILABLE."""
        for expected in self.expected:
            if expected.authority in self.awaiting:
                self._record_result(expected, Verdict.UNAVAILABLE, None)
        self.awaiting = []

    def _record_result(
        self, expected: ExpectedAnswer, verdict: Verdict, partner_code: str | None
    ) -> None:
        shadow = expected.mode is RolloutMode.SHADOW
        (self.shadow_results if shadow else self.results).append(
            DocumentResult(
                goods_item=expected.goods_item,
                code=expected.code,
                reference=expected.reference,
                authority=expected.authority,
                verdict=verdict,
                partner_code=partner_code,
            )
        )

    def to_bytes(self) -> bytes:
        return json_bytes(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> Case:
        return cls.model_validate_json(data)
