"""Takeover: a later version read on another partition takes over what an earlier held.

The clearance system's producers choose partitions (contract section 2) and cases are
kept per partition (ADR 0005), so the versions of one reference may be read on two
partitions, each keeping a case of its own. A version read where the previous one was
replaces that case (intake.py ``_supersede``); one read elsewhere did not, and the
earlier case went on holding: a documentary control on partition 0 whose
RELEASED_AFTER_CONTROL came on partition 1 kept its reservations "for the control",
was reported CONTROL_RESULT_OVERDUE to operations a week later although the office had
released the goods, and never retired (outside audit of stop 50, F1).

So a version whose earlier versions its partition did not see (its first there above 1,
or a gap in the numbers: versions read elsewhere meanwhile) sends a :class:`Notice` to
every other partition of the hub's deadlines topic, keyed by reference: its version, its
stage, a tag of its declarant, and the documents it restates or follows up itself (what
it quotes at the authorities where its operation reserves), sealed with the hub's state
key (``NOTICE_STATE``). Each partition's deadlines
agent hands it here, in event context (only an event may write the tables), and the case
of a lower version of that reference, if the partition holds one for the same declarant,
is taken over as if the version had arrived there:

* what it held that the later version does not quote is followed up from here, under the
  later version (the partner refuses an operation older than the newest version it saw):
  written off after a RELEASED_AFTER_CONTROL (contract section 4: whatever the release
  quotes), deleted otherwise, as ``_supersede`` deletes a dropped document; its answers
  come back to this case, which keeps the requests it sent;
* undecided, it is decided REFUSE, SUPERSEDED and announced, with the earlier decisions it
  carries unconfirmed;
* decided and kept for a control (``lifecycle.kept_for_control``), it holds nothing any
  more, waits for no control's result, and retires like any finalised case; a status
  TAKEN_OVER_BY_LATER_VERSION says where;
* a release or refusal already followed up, a retention marker, the same or a higher
  version, another declarant's case: left as it is, but for an invalidation, which has
  it give back what it wrote off.

Both kinds are marked ``taken_over_by``; the same notice read again (a crash before its
offset was committed) sends the follow-ups and lost announcements again. A version read
again tells the others again only if its first reading did (``Case.told_others``). A
notice costs one record per other partition, for such a version only: a clearance system
sending every version of a reference to one partition pays nothing.

A notice that finds no case (the partition behind on its declarations: the lower
version's record not read yet) leaves a marker of the later version, as a retired case
does (retention.py, forgotten with the markers): a lower version read after it is stale,
ignored and recorded (contract section 4), and a higher one read there tells the others.

An INVALIDATED later version has each partition give back what it wrote off (stop 52):
its own partition gives back what it knows, and every other one, told, what it wrote off
itself (``Case.given_back``), including what it wrote off for an earlier release after
control read elsewhere (``Case.handed_over_as``). Once a reference is split, every later
version tells the others (``tells_other_partitions``), so an invalidation read after the
release it follows still reaches them. A version refused unread tells them as any other,
restating nothing: what a lower version holds there is deleted, as on one partition.

A notice whose handling fails is dead-lettered by ``hub.takeover`` (``agent_name``) and
can be redriven once the cause is fixed (redrive.py): read again as the original, as after
a crash. What is left (docs/decisions.md, "One reference on several partitions"): a notice
not read within the deadlines topic's retention (7 days, as the declarations) is lost.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Outcome
from gun_contract.security.state_cipher import MAGIC as SEALED
from gun_contract.security.state_cipher import StateKeyMissing, StateUnreadable
from gun_contract.untrusted_json import parse_untrusted
from gun_hub.domain.case import Case, ExpectedAnswer
from gun_hub.domain.lifecycle import (
    FOLLOW_UP,
    held_reservations,
    kept_for_control,
    only_authority,
    write_offs_known,
    written_off,
)
from gun_hub.domain.requests import requests_for
from gun_hub.domain.routing import restates_reservations
from gun_hub.domain.status_events import StatusKind
from gun_hub.pipeline.decision_outbox import declarant_tag_of
from gun_hub.pipeline.hub_context import CaseStore, HubContext
from gun_hub.pipeline.published_elsewhere import KEY as NOT_PUBLISHED
from gun_hub.pipeline.published_elsewhere import NotPublished

log = logging.getLogger(__name__)


# The notices' values are sealed with the hub's state key under this table name (bound
# to the reference): they name the documents a version quotes, a war-material licence
# among them, and the deadlines topic is kept for days on the brokers and their backups
# (a confidentiality sweep of stop 56 found them in clear there, and on the dead-letter
# desk when one failed).
NOTICE_STATE = "takeover-notice"


def is_notice(value: bytes) -> bool:
    """Whether a deadlines-topic value is a notice (a tick's is a number or a word):
    sealed, or a JSON object in clear as workers before stop 56 wrote them."""
    return value.startswith((SEALED, b"{"))


# What the dead letters of a notice's handling name as their component: the deadlines
# agent reads notices and ticks, and a tick is not redriven (the hub ticks again for as
# long as a case waits) while a notice is (redrive.py). Under the agent's name,
# hub.deadlines, a notice a handling bug dead-lettered could not be redriven, and
# nothing else brought it back (carried defect "takeover notices dead-lettered by a bug
# cannot be redriven").
COMPONENT = "hub.takeover"


def agent_name(value: bytes) -> str:
    """The name the deadlines agent handles the record ``value`` under, which its dead
    letters carry (``hub.<name>``): ``takeover`` for a notice, ``deadlines`` otherwise."""
    return COMPONENT.removeprefix("hub.") if is_notice(value) else "deadlines"


@dataclass(frozen=True, slots=True)
class Notice:
    """A version of a reference read on another partition."""

    version: int
    read_at: str  # the record's position (topic/partition/offset)
    stage: Stage
    declarant: str  # decision_outbox.declarant_tag of its declarant's EORI
    # (authority, document reference) pairs it restates or follows up itself.
    quotes: frozenset[tuple[str, str]]

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "superseded_by": self.version,
                "read_at": self.read_at,
                "stage": self.stage.value,
                "declarant": self.declarant,
                "quotes": sorted(self.quotes),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> Notice:
        """``ValueError`` naming the notice for anything that does not read as one."""
        return cls.from_fields(_fields_of(value))

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Notice:
        """``ValueError`` naming the notice for fields that do not read as one."""
        version, read_at = fields.get("superseded_by"), fields.get("read_at", "")
        declarant, quotes = fields.get("declarant", ""), fields.get("quotes", [])
        named: Any = fields.get("stage")
        try:
            stage = Stage(named)
        except ValueError:
            raise ValueError(f"a takeover notice names no stage: {named!r}") from None
        if (
            type(version) is not int
            or version < 1
            or not isinstance(read_at, str)
            or not isinstance(declarant, str)
            or not isinstance(quotes, list)
            or not all(
                isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
                for pair in quotes
            )
        ):
            raise ValueError(
                "a takeover notice must name a version >= 1 (superseded_by), the position "
                "it was read at, its stage, its declarant's tag and [authority, document] "
                "pairs (quotes)"
            )
        return cls(version, read_at, stage, declarant, frozenset((a, d) for a, d in quotes))


def _fields_of(value: bytes) -> dict[str, Any]:
    """A notice's fields (empty for JSON that is no object: refused as naming nothing);
    ``ValueError`` for a value that is not JSON."""
    try:
        fields: Any = parse_untrusted(value)
    except ValueError as err:
        raise ValueError(f"a takeover notice that is not JSON: {err}") from None
    return fields if isinstance(fields, dict) else {}


def tells_other_partitions(version: int, known: Case | None, partition: int) -> bool:
    """Whether a new ``version``, read on ``partition``, may supersede a case on another
    partition: versions below it were read elsewhere (or forgotten) if this partition
    knows none of them, or not the one just below, or knows it as read elsewhere (a
    notice's marker, ``Takeover._remember``). Once a reference is split, every later
    version tells the others (the one below told them, ``Case.told_others``): an
    invalidation read here must have the others give back what they wrote off (stop 52:
    read after the release it followed, it told no one)."""
    if known is None:
        return version > 1
    return version > known.version + 1 or known.told_others or _read_elsewhere(known, partition)


def _read_elsewhere(known: Case, partition: int) -> bool:
    """Whether ``known`` was opened from a record of another partition than ``partition``
    (its ``opened_from``, ``topic/partition/offset``; empty for a case stored before it
    was kept: not known, so not told)."""
    parts = known.opened_from.rsplit("/", 2)
    return len(parts) == 3 and parts[1] != str(partition)


def notices(
    context: HubContext, notice: Notice, reference: str, partition: int
) -> Iterator[tuple[str, bytes, bytes, int]]:
    """(topic, key, value, partition) of ``notice`` to each partition but ``partition``:
    every hub topic has the declarations' partition count (ADR 0005)."""
    value = notice.to_bytes()
    if context.seal_takeover_notices:
        value = context.outbox_cipher.seal(NOTICE_STATE, reference, value)
    for other in range(context.outbox_partitions):
        if other != partition:
            yield context.topics.deadlines, reference.encode(), value, other


class Takeover:
    """Handles the notices that reach one partition."""

    def __init__(self, context: HubContext, cases: CaseStore) -> None:
        self._ctx = context
        self._cases = cases

    def handle(self, reference: str, value: bytes, source: SourcePosition) -> Effects:
        """``ValueError`` (dead-lettered by the agent, nothing else done) for a notice
        that does not open or does not read as one."""
        sealed = value.startswith(SEALED)
        if sealed:
            try:
                value = self._ctx.outbox_cipher.open(NOTICE_STATE, reference, value)
            except StateKeyMissing:
                raise  # a key another worker rotated to, not deployed here yet: retried
            except StateUnreadable as unreadable:
                # Not StateUnreadable: the agent takes that for the reference's stored
                # case not opening, and forgets the case (unreadable_state.py), which
                # is whole; only the message is bad (review of stop 56).
                raise ValueError(f"a takeover notice that does not open: {unreadable}") from None
        # else in clear: written by a worker from before stop 56, read through an upgrade.
        fields = _fields_of(value)
        if NOT_PUBLISHED in fields:
            # From the publisher's lane: a version two partitions' cases decided, this
            # one's decision published or not (published_elsewhere.py). Sealed by every
            # lane that writes one: one in clear is nobody's the hub wrote.
            if not sealed:
                raise ValueError("a notice of a decision not published that is not sealed")
            return self._follow_the_published(
                reference, NotPublished.from_fields(fields), source.partition
            )
        notice = Notice.from_fields(fields)
        outbox = Effects()
        stored = self._cases.get(reference.encode())
        if stored is None:
            self._remember(reference, notice, source.partition)
            return outbox
        case = Case.from_bytes(stored)
        if case.version >= notice.version:
            return outbox
        if notice.declarant and (tag := declarant_tag_of(case)) and tag != notice.declarant:
            # Another trader's version (refused as DECLARANT_CHANGED where it is read
            # with this case): it takes nothing over, even of a case another version
            # took over (review of stop 52); the publisher's lane gates it.
            log.warning(
                "%s version %d, read at %s, is another declarant's than version %d here: "
                "nothing taken over",
                reference,
                notice.version,
                notice.read_at,
                case.version,
            )
            return outbox
        partition = source.partition
        if notice.version in (case.taken_over_by, case.given_back_by):
            # Read again (a crash before its offset was committed): what may be lost,
            # the decisions first, as their follow-ups go before the later version's.
            self._ctx.announce_again_if_lost(outbox, case, partition)
            if case.taken_over_by == notice.version:
                self._follow_up(outbox, case, notice, again=True)
            if case.given_back_by == notice.version:
                self._give_back(outbox, case, notice, again=True)
            self._store(case, partition)
        elif case.taken_over_by is not None or case.given_back_by is not None:
            # Taken over by a lower version than this one: only an invalidation (the first)
            # has more to do, give back what was written off.
            if notice.stage is Stage.INVALIDATED and case.given_back_by is None:
                self._invalidated(outbox, case, notice, partition)
        elif not case.decided:
            self._supersede(outbox, case, notice, partition)
        elif kept_for_control(case):
            self._end_control(outbox, case, notice)
        elif notice.stage is Stage.INVALIDATED:
            self._invalidated(outbox, case, notice, partition)
        return outbox

    def _follow_the_published(
        self, reference: str, notice: NotPublished, partition: int
    ) -> Effects:
        """``notice`` of a version two partitions' cases decided, read on ``partition``
        (published_elsewhere.py): the reference is split, so a later version read here
        tells the others (``told_others``), and the case whose control was not published
        follows the outcome that was."""
        outbox = Effects()
        stored = self._cases.get(reference.encode())
        if stored is None:
            return outbox  # retired and forgotten: nothing held here
        case = Case.from_bytes(stored)
        if case.version > notice.version:
            # Read here before the notice: it told the others nothing if it did not know
            # of the split (the case published elsewhere may hold for a control it ends).
            if not case.told_others:
                self._tell_others_of(outbox, case, partition)
                case.told_others = True
                self._store(case, partition)
            return outbox
        if case.version < notice.version or not case.decided:
            return outbox  # a marker of a lower version; never undecided, as announced
        changed = not case.told_others
        case.told_others = True
        operation = FOLLOW_UP.get(notice.published_outcome) if notice.published_outcome else None
        published_here = notice.published_from == partition
        if not published_here and kept_for_control(case) and operation is not None:
            held = held_reservations(case)
            case.taken_over_by = case.version
            case.handed_over = held
            case.handed_over_as = operation
            self._ctx.open_cases.pop(reference.encode(), None)  # its report date
            self._send_as_published(outbox, case, notice, again=False)
            changed = True
        elif not published_here and case.taken_over_by == case.version and case.handed_over:
            # Read again (a crash before its offset was committed): what may be lost.
            self._send_as_published(outbox, case, notice, again=True)
            changed = True  # the requests it expects answers to
        elif not published_here and kept_for_control(case):
            log.warning(
                "%s version %d: the control decided on partition %d was not published (the "
                "decision of partition %d's case was, %s): it keeps holding, and is reported "
                "if no result comes",
                reference,
                case.version,
                partition,
                notice.published_from,
                "a control" if notice.published_outcome else "its outcome not known here",
            )
        if changed:
            self._store(case, partition)
        return outbox

    def _send_as_published(
        self, outbox: Effects, case: Case, notice: NotPublished, *, again: bool
    ) -> None:
        """``case.handed_over`` followed up as the outcome published for its version
        elsewhere has its own case follow them up: under this version, so the same
        documents make the same idempotent calls."""
        assert notice.published_outcome is not None  # noqa: S101 - followed up: known
        self._send(
            outbox,
            case,
            case.handed_over,
            case.handed_over_as or FOLLOW_UP[notice.published_outcome],
            case.version,
            f"as the {notice.published_outcome.value} published for this version (decided "
            f"on partition {notice.published_from}) has them,",
            again=again,
        )

    def _tell_others_of(self, outbox: Effects, case: Case, partition: int) -> None:
        """Every other partition told of ``case``'s version, as the intake tells them of
        a version read where earlier ones were not (intake.py ``_tell_other_partitions``):
        what it quotes is what it reserves with its own operation (none for a pre-lodged
        version or an invalidation: ``intake.restated``)."""
        quotes = (
            frozenset((e.authority, e.reference) for e in case.reserving())
            if restates_reservations(case.stage)
            else frozenset()
        )
        notice = Notice(case.version, case.opened_from, case.stage, declarant_tag_of(case), quotes)
        for topic, key, value, other in notices(self._ctx, notice, case.reference, partition):
            outbox.add(topic, key, value, partition=other)

    def _store(self, case: Case, partition: int) -> None:
        """``case`` stored where it was read: a retired case's marker stays a marker (its
        entry, sealed, forgotten in time), never a live case again, which nothing would
        retire (review of stop 52)."""
        if case.decided and case.decision is None and self._ctx.retention is not None:
            self._ctx.retention.remember(case, partition)
        else:
            self._ctx.store_case(self._cases, case)

    def _remember(self, reference: str, notice: Notice, partition: int) -> None:
        """No case here yet: the lower version's record may still come (this partition
        behind on its declarations). A marker of the later version, as a retired case
        leaves: a lower version read here then is stale (ignored and recorded, contract
        section 4), and one above it tells the others again (``tells_other_partitions``:
        the marker was read elsewhere)."""
        if self._ctx.retention is None:
            return
        now = self._ctx.clock()
        marker = Case(
            reference=reference,
            version=notice.version,
            stage=notice.stage,
            opened_at=now,
            deadline=now,
            awaiting=[],
            expected=[],
            results=[],
            declarant_tag=notice.declarant,  # a version above it is checked against it
            # Decided, holding nothing, announced: a marker's outcome is never published
            # nor followed up (any that holds nothing: lifecycle.held_reservations).
            outcome=Outcome.RELEASE,
            opened_from=notice.read_at,
        )
        self._ctx.retention.remember(marker, partition)

    def _supersede(self, outbox: Effects, case: Case, notice: Notice, partition: int) -> None:
        """As ``intake._supersede`` with the newer version's case here: REFUSE,
        SUPERSEDED, announced, with the earlier decisions ``case`` carries unconfirmed.
        The case stored keeps what it asked (its late answers are solicited) and what was
        written off (an invalidation gives it back), which the newer case carries on one
        partition."""
        ctx = self._ctx
        taken = ctx.superseded_undecided(
            outbox, case, notice.version, read_elsewhere=notice.read_at
        )
        taken.taken_over_by = notice.version
        taken.pending_announcements = case.superseding_state()
        taken.requested = list(case.requested)
        taken.asked = case.asked_by_authority()
        taken.written_off = written_off(case)
        taken.handed_over = _not_quoted(case, notice)
        taken.handed_over_as = _handed_over_as(notice)
        taken.given_back = _to_give_back(case, notice)  # its write-offs: before it was stripped
        taken.given_back_by = _given_back_by(notice)
        ctx.open_cases.pop(case.reference.encode(), None)  # its deadline: nothing waits
        for earlier in taken.pending_announcements:
            if (earlier.reference, earlier.version) not in ctx.announcing:
                ctx.announce(outbox, earlier, partition, stored=taken, again=True)
        ctx.announce(outbox, taken, partition)
        self._follow_up(outbox, taken, notice, again=False)
        self._give_back(outbox, taken, notice, again=False)
        ctx.store_case(self._cases, taken)

    def _end_control(self, outbox: Effects, case: Case, notice: Notice) -> None:
        """The control's reservations are the later version's now, but for what it does
        not quote, followed up from here; no control's result is waited for."""
        assert case.decision is not None  # noqa: S101 - kept for a control: decided
        holder = only_authority(held_reservations(case))  # before it holds nothing
        case.taken_over_by = notice.version
        case.handed_over = _not_quoted(case, notice)
        case.handed_over_as = _handed_over_as(notice)
        case.given_back = _to_give_back(case, notice)
        case.given_back_by = _given_back_by(notice)
        self._ctx.open_cases.pop(case.reference.encode(), None)  # its report date
        self._ctx.emit_status(
            outbox,
            case.reference,
            case.version,
            StatusKind.TAKEN_OVER_BY_LATER_VERSION,
            f"what the {case.decision.outcome.value} kept is followed up by version "
            f"{notice.version}, read at {notice.read_at}",
            authority=holder,
            lodging=case.receipt,
        )
        self._follow_up(outbox, case, notice, again=False)
        self._give_back(outbox, case, notice, again=False)
        self._ctx.store_case(self._cases, case)

    def _invalidated(self, outbox: Effects, case: Case, notice: Notice, partition: int) -> None:
        """A decided case holding nothing (released, refused, taken over by a lower
        version, or a retired case's marker) whose declaration an INVALIDATED later
        version ends: what it wrote off is given back from here, under that version. Its
        own partition gives back what it knows was written off, not this one's (stop 52:
        it stayed written off). A decision the broker may not have goes first, with its
        write-off: given back before it, the write-off would be refused as older than
        the invalidation, the reservation kept (review of stop 52)."""
        self._ctx.announce_again_if_lost(outbox, case, partition)
        to_give_back = _to_give_back(case, notice)
        if not to_give_back:
            return
        case.given_back = to_give_back
        case.given_back_by = notice.version
        self._ctx.emit_status(
            outbox,
            case.reference,
            case.version,
            StatusKind.TAKEN_OVER_BY_LATER_VERSION,
            f"what was written off is given back by version {notice.version} "
            f"(invalidated), read at {notice.read_at}",
            authority=only_authority(to_give_back),
            lodging=case.receipt,
        )
        self._give_back(outbox, case, notice, again=False)
        self._store(case, partition)

    def _give_back(self, outbox: Effects, case: Case, notice: Notice, *, again: bool) -> None:
        """``case.given_back`` given back under the later version, each document with the
        line and quantity written off (what the partner returns to its balance)."""
        self._send(
            outbox,
            case,
            case.given_back,
            Operation.GIVE_BACK,
            notice.version,
            f"written off, for version {notice.version} (invalidated),",
            again=again,
        )

    def _follow_up(self, outbox: Effects, case: Case, notice: Notice, *, again: bool) -> None:
        """``case.handed_over`` written off or deleted under the later version."""
        self._send(
            outbox,
            case,
            case.handed_over,
            case.handed_over_as or _handed_over_as(notice),
            notice.version,
            f"version {notice.version} does not quote",
            again=again,
        )

    def _send(
        self,
        outbox: Effects,
        case: Case,
        documents: list[ExpectedAnswer],
        operation: Operation,
        version: int,
        which: str,
        *,
        again: bool,
    ) -> None:
        """``operation`` of ``documents`` under ``version`` (the partner refuses an
        operation older than the newest version it saw), from ``case``: their answers
        come back to it. A give-back or a write-off says what it concerns, line and
        quantity."""
        if not documents:
            return
        # A give-back says what it gives back; a write-off what it writes off, for the
        # adapter's reservation of what was never reserved (a degraded control's
        # documents; lifecycle.follow_up_requests, review of stop 56).
        quantities = operation in (Operation.GIVE_BACK, Operation.WRITE_OFF)
        requests = requests_for(
            case, documents, operation, version, self._ctx.clock(), quantities=quantities
        )
        self._ctx.send_requests(outbox, requests, case)
        self._ctx.emit_status(
            outbox,
            case.reference,
            case.version,
            StatusKind.FOLLOW_UP_SENT,
            f"{operation.value} of {len(documents)} document(s) {which} "
            f"{'sent again' if again else 'sent'} to " + ", ".join(r.authority for r in requests),
            authority=only_authority(documents),
            lodging=case.receipt,
        )


def _handed_over_as(notice: Notice) -> Operation:
    """What becomes of a reservation the later version does not quote: written off after
    a release after control (contract section 4: whatever it quotes), deleted otherwise."""
    if notice.stage is Stage.RELEASED_AFTER_CONTROL:
        return Operation.WRITE_OFF
    return Operation.DELETE


def _given_back_by(notice: Notice) -> int | None:
    return notice.version if notice.stage is Stage.INVALIDATED else None


def _to_give_back(case: Case, notice: Notice) -> list[ExpectedAnswer]:
    """What an INVALIDATED later version has this partition give back: all it knows was
    written off here and not given back (the write-offs of the versions read here)."""
    return write_offs_known(case) if notice.stage is Stage.INVALIDATED else []


def _not_quoted(case: Case, notice: Notice) -> list[ExpectedAnswer]:
    """What ``case`` reserves that the later version does not restate or follow up."""
    return [e for e in case.reserving() if (e.authority, e.reference) not in notice.quotes]
