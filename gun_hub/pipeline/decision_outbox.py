"""The records of the hub's decision outbox (``gun.hub.decision-outbox``): what the
pipeline writes there and the decision publisher (:mod:`gun_hub.runtime.publisher`) reads."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from gun_hub.domain.case import Case

HEADER_VERSION = "gun.decision.version"
# Who the decided version was lodged by, as ``declarant_tag``: the publisher lane, the one
# place that sees every version of a reference, publishes no decision of a reference for
# another declarant than its first one published (review stop 38-s, S3). Copied to
# ``gun.decisions`` with the other headers, where the lane reads it back at a takeover:
# the clearance system sees it there, a hash, never the EORI.
HEADER_DECLARANT = "gun.decision.declarant"
# The declaration partition whose case decided it (its origin), in decimal: the lane keeps
# each origin's latest decisions apart from its count of all of them, so that a repeat
# from a partition stuck for long is still known when it comes (ADR 0025's addendum of
# stop 47). Copied to ``gun.decisions`` and read back at a takeover like the declarant.
HEADER_ORIGIN = "gun.decision.origin"
# The receipt the decided version was read as (``Case.receipt``, 16 hex digits of
# ``status_events.lodging``): the lane names it in the status event of a decision it
# withholds, so that the operations view withholds that receipt's events alone, not the
# version's other declarant's (review of stop 54). Absent for a version refused unread and
# a case opened before stop 53. Not copied to ``gun.decisions``.
HEADER_LODGING = "gun.decision.lodging"
_LODGING = re.compile(rb"[0-9a-f]{16}")
# What the outbox's records are sealed as (the hub's state key, AES-GCM).
OUTBOX_STATE = "decision-outbox"


def outbox_record_key(reference: bytes, version: bytes) -> bytes:
    """What an outbox record's seal is bound to: a record moved under another reference
    or version does not open."""
    return reference + b"|" + version


def declarant_tag(eori: str) -> bytes:
    """The declarant as the lane compares it: 16 hex digits of a SHA-256 of the EORI
    (64 bits: two declarants of one reference never meet by chance). Not a secret (an
    EORI guessed is confirmed by it); it keeps the EORI out of readable headers."""
    return hashlib.sha256(b"gun.decision.declarant|" + eori.encode()).hexdigest()[:16].encode()


def declarant_tag_of(case: Case) -> str:
    """``case``'s declarant's tag: of its EORI, else the one a retired case's marker kept;
    empty when it names none (a case refused unread, a marker of before stop 52)."""
    return (
        declarant_tag(case.declarant_eori).decode() if case.declarant_eori else case.declarant_tag
    )


def declarant_of(headers: Sequence[tuple[str, bytes | None]]) -> bytes:
    """The declarant header's bytes; empty when absent or null (a decision of a
    declaration refused unread names none: judged by its version only)."""
    value = next((value for key, value in headers if key == HEADER_DECLARANT), b"")
    return value if isinstance(value, bytes) else b""


def origin_of(headers: Sequence[tuple[str, bytes | None]]) -> int | None:
    """The origin header as a partition number; None when absent, null or not a
    partition number (a decision published before the header existed: remembered by the
    lane's count only)."""
    value = next((value for key, value in headers if key == HEADER_ORIGIN), None)
    if not isinstance(value, bytes) or not value.isdigit() or len(value) > 6:
        return None
    return int(value)


def lodging_of(headers: Sequence[tuple[str, bytes | None]]) -> str | None:
    """The receipt header as ``status_events.lodging`` writes it; None when absent, null
    or not such an id (a decision of before the header, of a version refused unread)."""
    value = next((value for key, value in headers if key == HEADER_LODGING), None)
    if not isinstance(value, bytes) or not _LODGING.fullmatch(value):
        return None
    return value.decode()
