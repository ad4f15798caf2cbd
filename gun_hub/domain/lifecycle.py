"""The quantity life cycle after a decision, as pure functions over a decided case.

* RELEASE: written off at each authority (the goods leave).
* REFUSE: deleted at each authority (the quantity goes back to the document).
* CONTROL_DOCUMENTARY, CONTROL_PHYSICAL: kept. The control ends in a new declaration
  version (which restates them) or a cancellation (which deletes them).
* ADVICE (pre-lodged): nothing was reserved.
* CANCELLED: the deletions were the case's own requests.
* RELEASED_AFTER_CONTROL: the write-offs were the case's own requests (what the control
  kept reserved), then RELEASE.
* INVALIDATED: the give-backs of the written-off quantities were the case's own
  requests, then CANCELLED. What is given back is what the declaration wrote off
  (:func:`written_off`), not what the invalidation quotes: a case remembers its versions'
  write-offs, and so does its retention marker (found by review, stop 36).

A new version restates every reservation it makes; one it no longer makes (a document it
no longer quotes, or quotes at an authority it no longer asks to reserve) is deleted
(:func:`dropped_documents`, ``Case.dropped``). A version that cannot be
read is refused, and whatever the previous version held is deleted with it
(:func:`held_reservations`).

Only what was asked with the stage's own operation is followed up (rollout.py): an
authority in shadow mode was asked a CHECK, which reserved nothing, and one that is off
was not asked at all.
"""

from __future__ import annotations

from datetime import datetime

from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.case import Case, ExpectedAnswer
from gun_hub.domain.requests import requests_for
from gun_hub.domain.rollout import RolloutMode

FOLLOW_UP = {Outcome.RELEASE: Operation.WRITE_OFF, Outcome.REFUSE: Operation.DELETE}


def follow_up_requests(case: Case, now: datetime) -> list[AuthorityRequest]:
    """Write-offs after a release, deletions after a refusal; nothing otherwise, nor for
    a version refused because a newer one superseded it (the newer one restates or
    deletes its reservations: ``Case.superseded``)."""
    if (
        case.stage is not Stage.LODGED
        or case.outcome not in FOLLOW_UP
        or case.superseded_by is not None
        or case.taken_over_by is not None
    ):
        return []
    documents = _followed_up(case)
    operation = FOLLOW_UP[case.outcome]
    # A write-off says what its version declared, line and quantity: goods released with
    # nothing reserved at the partner (silent in advice mode, or down meanwhile) are
    # reserved, then written off, by the adapter, which needs them (certex.py; the
    # partner's own write-off reads only the version). Without them such goods were
    # written off nowhere (review of stop 56).
    quantities = operation is Operation.WRITE_OFF
    follow_ups = requests_for(case, documents, operation, case.version, now, quantities=quantities)
    return follow_ups + requests_for(
        case, refused_over_an_earlier_position(case), Operation.DELETE, case.version, now
    )


def refused_over_an_earlier_position(case: Case) -> list[ExpectedAnswer]:
    """The documents a later version, released over an advisory refusal, restated and had
    refused: the partner refused the restatement and kept the position of the version
    before, which nothing else would end (the release writes off only what was not
    refused). Deleted: the decision says the document was refused, nothing drawn on it
    (review of stop 56). A first version held nothing before: none."""
    if case.outcome is not Outcome.RELEASE or case.version == 1:
        return []
    refused = _refused(case)
    return [
        d for d in case.reserving() if (d.goods_item, d.code, d.reference, d.authority) in refused
    ]


def _refused(case: Case) -> set[tuple[int, str, str, str | None]]:
    return {
        (r.goods_item, r.code, r.reference, r.authority)
        for r in case.results
        if r.verdict.is_refusal
    }


def _followed_up(case: Case) -> list[ExpectedAnswer]:
    """The documents a decided lodged version's follow-up concerns."""
    documents = case.reserving()
    if case.outcome is Outcome.RELEASE:
        # Released over an advisory refusal (rollout.py): the partner reserved nothing
        # for the refused document under this version, so there is nothing of it to write
        # off (what an earlier version held is deleted: refused_over_an_earlier_position).
        refused = _refused(case)
        documents = [
            d for d in documents if (d.goods_item, d.code, d.reference, d.authority) not in refused
        ]
    return documents


def own_write_offs(case: Case) -> list[ExpectedAnswer]:
    """What this version asked its partners to write off: a lodged version's follow-up
    after a release, a release after a control's own requests, and what it held that a
    release after control read on another partition did not quote (written off from
    here under that version: pipeline/takeover.py)."""
    # Stored before the operation was kept (stop 51's cases): possibly written off, so
    # counted: a give-back of what was never written off is answered 02, one left out
    # would lose the quantity.
    handed_over = case.handed_over if case.handed_over_as in (Operation.WRITE_OFF, None) else []
    if case.stage is Stage.RELEASED_AFTER_CONTROL:
        return [*case.reserving(), *handed_over]
    if case.stage is Stage.LODGED and case.outcome is Outcome.RELEASE:
        return [*_followed_up(case), *handed_over]
    return handed_over


def written_off(case: Case) -> list[ExpectedAnswer] | None:
    """What the declaration wrote off at its partners and nothing gave back since (per
    document, with the lines and quantities its version declared): what an invalidation
    gives back. A write-off asked counts, answered or not: a give-back of a document the
    partner never wrote off is answered 02 and shown, one left out would lose quantity.

    None when the hub does not know: a case or retention marker stored before cases kept
    their write-offs (stop 36), unless it is the declaration's first version (no earlier
    one can have written anything off; found by the review of stop 36's change, G2)."""
    if case.written_off is None and (
        case.version > 1 or (case.decided and case.decision is None)  # such a marker
    ):
        return None
    return write_offs_known(case)


def write_offs_known(case: Case) -> list[ExpectedAnswer]:
    """What ``case`` knows the declaration wrote off and nothing gave back since: its
    versions' write-offs it carries and its own, less what an invalidation read on
    another partition gave back from here (``Case.given_back``). All an invalidation
    can give back from this partition, even where earlier versions are not known here
    (:func:`written_off` is then None: read elsewhere, they are given back there)."""
    given_back = {_line_of(document) for document in case.given_back}
    # By line too: one certificate quoted on two lines of one goods item is two
    # write-offs at the partner (found by review of stop 37's change, G1: keyed by
    # document, the second line was lost, and an invalidation gave back one of two).
    # A later source replaces an earlier one's line (a version restates); within one, a
    # line quoted twice on a goods item is drawn on twice by the partner: summed (one
    # replaced the other, and the hub's account kept half of what was given back: review
    # of stop 56).
    latest: dict[tuple[str, int, str, str, int | None], ExpectedAnswer] = {}
    for source in (case.written_off or [], case.own_written_off, own_write_offs(case)):
        for key, document in _summed_by_line(source).items():
            if key not in given_back:
                latest[key] = document.model_copy(update={"mode": RolloutMode.ENFORCE})
    return list(latest.values())


def _summed_by_line(
    documents: list[ExpectedAnswer],
) -> dict[tuple[str, int, str, str, int | None], ExpectedAnswer]:
    """``documents`` by line, the quantities of a line quoted twice summed (unknown if
    either is)."""
    by_line: dict[tuple[str, int, str, str, int | None], ExpectedAnswer] = {}
    for document in documents:
        key = _line_of(document)
        before = by_line.get(key)
        if before is None:
            by_line[key] = document
            continue
        both = (
            None
            if before.quantity is None or document.quantity is None
            else before.quantity + document.quantity
        )
        by_line[key] = before.model_copy(update={"quantity": both})
    return by_line


def _line_of(document: ExpectedAnswer) -> tuple[str, int, str, str, int | None]:
    return (
        document.authority,
        document.goods_item,
        document.code,
        document.reference,
        document.line,
    )


# Outcomes of a lodged declaration after which its reservations are still held.
_HOLDING = frozenset({None, Outcome.CONTROL_DOCUMENTARY, Outcome.CONTROL_PHYSICAL})


def held_reservations(case: Case) -> list[ExpectedAnswer]:
    """What ``case`` holds reserved at its partners (undecided, or kept for a control)."""
    if case.stage is not Stage.LODGED or case.outcome not in _HOLDING:
        return []  # nothing reserved (advice, cancellation...), written off or deleted
    if case.taken_over_by is not None:
        return []  # a later version's case, on another partition, follows them up
    return case.reserving()


def only_authority(documents: list[ExpectedAnswer]) -> str | None:
    """The one authority ``documents`` are all at, if there is one: an event about them
    names it, so that a trader never reads one that exists only because a confidential
    authority took part (web/redaction.py leaves out that authority's events; review of
    stop 56: an overdue control kept for a licence alone was shown)."""
    authorities = {document.authority for document in documents}
    return authorities.pop() if len(authorities) == 1 else None


def kept_for_control(case: Case) -> bool:
    """A lodged declaration decided for a control, holding reservations: they wait for
    the control's result (a control of documents no partner was asked to reserve, in a
    rollout, waits for nothing; nor one a later version read on another partition took
    over: pipeline/takeover.py)."""
    return (
        case.stage is Stage.LODGED
        and case.outcome in (Outcome.CONTROL_DOCUMENTARY, Outcome.CONTROL_PHYSICAL)
        and case.taken_over_by is None
        and bool(case.reserving())
    )


def dropped_documents(previous: Case, kept: set[tuple[str, str]]) -> list[ExpectedAnswer]:
    """Documents ``previous`` reserved that a new version no longer quotes.

    ``kept`` holds the (authority, document reference) pairs the new version quotes.
    """
    return [e for e in held_reservations(previous) if (e.authority, e.reference) not in kept]
