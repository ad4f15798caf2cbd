"""What an adapter dead-letters about the requests it reads, and which of those a redrive
cannot repair (ADR 0010, addendum).

An adapter honours a redrive of its own dead letters (adapters/base/runner.py): the
original request read again, at its position and broker time. That helps only where the
cause lay outside the record, and the operator fixed it: a key imported late
(``ENVELOPE_UNKNOWN_KID``), a retirement corrected or a decryption key restored, the
allowed clock skew corrected (the redrive is judged at the original's broker time), a bug
fixed in a new release (``UNHANDLED_ERROR``), a request of a newer contract than the
adapter read (``REQUEST_INVALID``, once the adapter is upgraded). Where the record itself
is at fault, the same bytes are refused again, and the desk says so instead of redriving
them (gun_hub/pipeline/redrive.py, ``not_redrivable``; a replay, a redrive refused and an
envelope not made for its reader, :data:`ENVELOPES_REFUSED_AS_THEY_ARE`, are every
reader's rule there: the hub's intake and correlation too, since stop 40).
"""

from __future__ import annotations

from collections.abc import Mapping

from gun_contract.envelope import EnvelopeRejectionKind

REQUEST_AGED_OUT = "REQUEST_AGED_OUT_OF_THE_LOG"
"""The dead-letter kind of requests the request topic's retention deleted before any
replica of the adapter read them: what they asked never reached the partner."""
REQUEST_KEY_MISMATCH = "REQUEST_KEY_MISMATCH"
REQUEST_NOT_JSON = "REQUEST_NOT_JSON"
REQUEST_INVALID = "REQUEST_INVALID"
REQUEST_MISADDRESSED = "REQUEST_MISADDRESSED"
REDRIVE_SUPERSEDED = "REDRIVE_SUPERSEDED"
"""A redriven request a later operation of its declaration, sent between the original
and the redrive, superseded (adapters/base/supersession.py): never asked."""
REDRIVE_SUPERSESSION_UNKNOWN = "REDRIVE_SUPERSESSION_UNKNOWN"
"""A redriven request the adapter could not tell superseded or not (too far from its
original, a record of its declaration between them that does not open): never asked."""

# An envelope refused for what it is, not for what its reader lacked: not one its sender
# makes for that reader as the contract says (a forgery, a corruption, another party's or
# another topic's record). The key id it names is registered (else UNKNOWN_KID), and an
# import never binds a known key id to another key (keystore.py, import_public).
_FORGED_OR_BROKEN = (
    EnvelopeRejectionKind.MALFORMED,
    EnvelopeRejectionKind.DISALLOWED_ALG,
    EnvelopeRejectionKind.BAD_SIGNATURE,
    EnvelopeRejectionKind.HEADER_REFUSED,
    EnvelopeRejectionKind.SENDER_MISMATCH,
    EnvelopeRejectionKind.NOT_ENTITLED,
    EnvelopeRejectionKind.WRONG_RECIPIENT,
    EnvelopeRejectionKind.WRONG_TOPIC,
)

REFUSED_AS_IT_IS: Mapping[str, str] = {
    REQUEST_AGED_OUT: (
        "retention deleted the requests before the adapter read them: there is no original "
        "to read again (the hub's FOLLOW_UP_PENDING names the declarations concerned)"
    ),
    REQUEST_KEY_MISMATCH: (
        "its record key is not its reference: a redrive carries the same key and is refused again"
    ),
    REQUEST_NOT_JSON: "its signed header says it is not JSON: the same bytes are refused again",
    REQUEST_MISADDRESSED: (
        "it is addressed to another authority or was sealed by another party than the "
        "hub: the same bytes are refused again"
    ),
    REDRIVE_SUPERSEDED: (
        "a later operation of its declaration, sent after it, superseded it (the reason "
        "names it): redriven again it is superseded again; asked, it would undo what the "
        "hub decided since"
    ),
}
"""The adapter's dead-letter kinds about a request at fault as it is, with why a redrive
would not help (the envelope kinds are every reader's: :data:`ENVELOPES_REFUSED_AS_THEY_ARE`)."""

ENVELOPES_REFUSED_AS_THEY_ARE: Mapping[str, str] = {
    kind.value: (
        "its envelope is not one its sender makes for this reader (forged, damaged, or "
        "another party's or topic's): the same bytes are refused again"
    )
    for kind in _FORGED_OR_BROKEN
}
"""Envelope rejections about the record as it is, whoever reads it (the hub's intake and
correlation, an adapter), with why a redrive would not help."""
