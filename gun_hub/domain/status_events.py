"""Status events on ``gun.status``: the dated history of each declaration.

They carry no confidential content: verdicts and outcomes, never a licence's details.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from gun_contract.limits import MAX_STATUS_DETAIL_CHARS
from gun_contract.model.encoding import json_bytes

# Between two entries of a detail that lists documents ("N853 CHEDP...: VALID, ...").
_ENTRY_SEPARATOR = ", "


class StatusKind(StrEnum):
    RECEIVED = "RECEIVED"
    REJECTED = "REJECTED"  # the declaration could not be accepted as sent
    IGNORED_STALE_VERSION = "IGNORED_STALE_VERSION"  # equal or lower version than known
    SUPERSEDED = "SUPERSEDED"  # a pending version replaced by a higher one
    REQUESTS_SENT = "REQUESTS_SENT"
    ANSWER_RECEIVED = "ANSWER_RECEIVED"
    LATE_ANSWER_IGNORED = "LATE_ANSWER_IGNORED"
    DECIDED = "DECIDED"
    # An authority stayed silent: degraded mode, or only a warning for one in advice
    # mode (deadlines.py; a shadow authority's silence is not one).
    DEADLINE_PASSED = "DEADLINE_PASSED"
    FOLLOW_UP_SENT = "FOLLOW_UP_SENT"  # write-offs after release, deletions after refusal
    WRITTEN_OFF = "WRITTEN_OFF"
    RESERVATION_DELETED = "RESERVATION_DELETED"
    GIVEN_BACK = "GIVEN_BACK"  # a write-off returned to the document (invalidation)
    # The partner had already seen a newer version of the declaration: that version's
    # operations took over, nothing is left to do for this one.
    FOLLOW_UP_SUPERSEDED = "FOLLOW_UP_SUPERSEDED"
    FOLLOW_UP_PENDING = "FOLLOW_UP_PENDING"  # the partner is down; the adapter replays it
    FOLLOW_UP_FAILED = "FOLLOW_UP_FAILED"
    POST_RELEASE_ALERT = "POST_RELEASE_ALERT"  # for post-clearance control, not a block
    # A reservation kept for a control has had no result (RELEASED_AFTER_CONTROL or
    # CANCELLED) within the configured period: reported once to operations.
    CONTROL_RESULT_OVERDUE = "CONTROL_RESULT_OVERDUE"
    # What a decided version kept for a control is followed up by a later version read on
    # another partition (pipeline/takeover.py): no control waited for here any more.
    TAKEN_OVER_BY_LATER_VERSION = "TAKEN_OVER_BY_LATER_VERSION"
    # Decided for another declarant than the reference's decisions published, and never
    # published (runtime/publisher.py, DECLARANT_CHANGED): the version is nobody's.
    NOT_PUBLISHED_OTHER_DECLARANT = "NOT_PUBLISHED_OTHER_DECLARANT"
    # Decided by this reference's case on one partition while the case on another decided
    # the same version first, whose decision the publisher published (its ``outcome`` is
    # the one not published; runtime/publisher.py, "One reference on several partitions"
    # in docs/decisions.md): the view and the lookups read the decision published.
    NOT_PUBLISHED_DECIDED_ELSEWHERE = "NOT_PUBLISHED_DECIDED_ELSEWHERE"


# How the publisher's status of a version it decided and withheld begins (its
# IGNORED_STALE_VERSION of a superseded version too): the intake's IGNORED_STALE_VERSION
# of a copy of a version, which may well have been published, says otherwise (ops/view.py).
NOT_PUBLISHED = "decided but not published"


class StatusEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    reference: str
    version: int
    kind: StatusKind
    at: datetime
    detail: str = ""
    authority: str | None = None
    outcome: str | None = None
    # The receipt of the version the event is about (:func:`lodging`): an opaque id that
    # the intake's ReceivedFact ties to the declarant on the hub-internal facts topic.
    # None where the hub read no declarant (a declaration refused unread, a stale copy).
    lodging: str | None = None

    def to_bytes(self) -> bytes:
        return json_bytes(self, exclude_none=True)


def lodging(reference: str, version: int, opened_from: str) -> str | None:
    """Which receipt of a declaration version a status event is about: 16 hex digits of
    a SHA-256 of the version and the record it was read from (``Case.opened_from``).

    Two declarants may lodge one reference: a reference reused once the hub forgot the
    first one's case, or the same version of one read on two partitions at once. The
    view keyed each history by (reference, version) alone, so each trader read the
    other's events (security review of stop 52). Nothing on ``gun.status`` names a
    declarant (not even a hash of the EORI, which a guessed EORI would confirm): this id
    says only which receipt, and the ReceivedFact of that receipt, on the facts topic,
    whose. None when the record is not known (a case stored before it was kept)."""
    if not opened_from:
        return None
    digest = hashlib.sha256(f"gun.status.lodging|{reference}|{version}|{opened_from}".encode())
    return digest.hexdigest()[:16]


def bounded_detail(detail: str, limit: int = MAX_STATUS_DETAIL_CHARS) -> str:
    """``detail``, or as much of it as fits in ``limit`` characters, cut between two
    entries and saying how many are left: an event listing every document of a large
    declaration would not fit what the view reads (review stop 40-W, W1)."""
    if len(detail) <= limit:
        return detail
    entries = detail.split(_ENTRY_SEPARATOR)
    kept: list[str] = []
    size = 0
    room = limit - 100  # for the tail
    for entry in entries:
        size += len(entry) + (len(_ENTRY_SEPARATOR) if kept else 0)
        if size > room:
            break
        kept.append(entry)
    if not kept:  # one entry longer than the room: cut inside it
        return f"{detail[:room]} … cut at {limit} characters"
    left = len(entries) - len(kept)
    return (
        f"{_ENTRY_SEPARATOR.join(kept)} … and {left} more (the decision and the facts list "
        "every document)"
    )
