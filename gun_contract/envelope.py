"""The one seam where messages between parties are sealed and opened.

Every value on a ``requests``, ``responses`` or ``decisions`` topic goes through an
:class:`Envelope`, and every heartbeat on ``ops.health`` is signed by one (signed only,
:meth:`Envelope.sign`). The implementation is
:class:`gun_contract.security.jose_envelope.JoseEnvelope` (signed with JWS, then encrypted with
JWE: contract section 5); this module holds what callers depend on, so that no caller
knows about keys or algorithms.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class ContentType(StrEnum):
    XML = "application/xml"
    JSON = "application/json"


class EnvelopeRejectionKind(StrEnum):
    """Why a sealed message was not acted on (a dead-letter kind and a metric label)."""

    MALFORMED = "ENVELOPE_MALFORMED"
    DISALLOWED_ALG = "ENVELOPE_DISALLOWED_ALG"
    UNKNOWN_KID = "ENVELOPE_UNKNOWN_KID"
    RETIRED_KEY = "ENVELOPE_RETIRED_KEY"
    DECRYPTION_FAILED = "ENVELOPE_DECRYPTION_FAILED"
    BAD_SIGNATURE = "ENVELOPE_BAD_SIGNATURE"
    # A protected header outside the policy (security.md): a member the hub does not
    # accept, a claim missing or of the wrong type, a ``crit`` it cannot honour, too large.
    HEADER_REFUSED = "ENVELOPE_HEADER_REFUSED"
    SENDER_MISMATCH = "ENVELOPE_SENDER_MISMATCH"
    NOT_ENTITLED = "ENVELOPE_NOT_ENTITLED"
    WRONG_RECIPIENT = "ENVELOPE_WRONG_RECIPIENT"
    WRONG_TOPIC = "ENVELOPE_WRONG_TOPIC"
    EXPIRED = "ENVELOPE_EXPIRED"
    IAT_SKEW = "ENVELOPE_IAT_SKEW"
    NOT_YET_VALID = "ENVELOPE_NOT_YET_VALID"  # an ``nbf`` ahead, beyond the allowed skew
    REPLAY = "ENVELOPE_REPLAY"


class EnvelopeRejected(ValueError):
    """A sealed message that must not be acted on; ``kind`` says why.

    The message names key ids, parties and topics, never key material or payload.
    """

    def __init__(self, kind: EnvelopeRejectionKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class OpenedMessage:
    """The verified content of an envelope and who sent it to whom."""

    payload: bytes
    content_type: ContentType
    sender: str
    recipient: str
    topic: str
    message_id: str
    issued_at: int
    signing_kid: str
    # The last broker time at which a copy of this message is still fresh (``exp`` plus
    # the allowed skew): how long its id must be remembered (security/replay.py).
    accept_until: int = 0

    @property
    def replay_id(self) -> str:
        """What the replay memories remember it by: its ``jti`` with its sender. A
        ``jti`` is unique for its issuer only (RFC 7519 section 4.1.7); kept alone, one
        partner's id made another's message with the same id a replay (JOSE review of
        stop 48). A party name holds no ``/``, so the pair reads one way only."""
        return f"{self.sender}/{self.message_id}"


def bare_message_id(replay_id: str) -> str:
    """The ``jti`` of a replay id (``sender/jti``); an id kept before stop 48 (a bare
    ``jti``) is itself. What a memory written by a worker of the previous version knows
    an id by, looked up beside the new one while such ids may live (their expiry, and
    for a refused copy the span it may be redriven in)."""
    sender, separator, jti = replay_id.partition("/")
    return jti if separator and sender else replay_id


class Envelope(Protocol):
    """Seals messages from one party and opens those addressed to it."""

    @property
    def party(self) -> str: ...

    def seal(
        self, payload: bytes, *, recipient: str, topic: str, content_type: ContentType
    ) -> bytes: ...

    def sign(self, payload: bytes, *, topic: str, content_type: ContentType) -> bytes:
        """Sign without encrypting, for ``topic``: what every reader of the topic may read
        and no single party is the recipient of (the adapters' heartbeats)."""
        ...

    def open(
        self,
        sealed: bytes,
        *,
        topic: str,
        position: str | None = None,
        accepted_at: float | None = None,
        check_replay: bool = True,
    ) -> OpenedMessage:
        """Verify and decrypt a message read from ``topic`` at ``position``
        (``topic/partition/offset``; a replay is the same message at another one).

        ``accepted_at`` is when the broker accepted the record (its log-append time, in
        seconds): freshness is judged against it, so a backlog read hours later still
        opens, and so is a key's retirement: a key retired after the broker accepted the
        record still serves it. ``None`` (no broker time known) judges freshness against
        the reader's clock and refuses every retired key.
        ``check_replay=False``: every check but the replay one, which the caller makes
        itself with ``message_id`` and ``accept_until`` (the hub's declarations:
        pipeline/admission.py), or later through ``record_sighting``.
        """
        ...

    def record_sighting(
        self, message: OpenedMessage, *, position: str | None, accepted_at: float | None
    ) -> None:
        """The replay check ``open`` left out (``check_replay=False``): remember
        ``message``'s id as read at ``position``, or raise ``EnvelopeRejected`` (REPLAY)
        if it was read at another one. For a reader that first checks what the envelope
        cannot (the record's key): a record refused for it leaves no id behind, so a copy
        read first never makes the genuine record a replay (review stop 38-s, S2)."""
        ...


# Kafka's record timestamp types: 0 is the producer's CreateTime, 1 the broker's
# LogAppendTime (the envelope topics are created with the latter, topics.py).
LOG_APPEND_TIME = 1


def broker_accepted_at(timestamp_ms: int | None, timestamp_type: int | None) -> float | None:
    """The time the broker accepted a record, when the record says so; else ``None``.

    A producer chooses a CreateTime freely, so only a LogAppendTime is evidence of when
    the record entered the log.
    """
    if timestamp_ms is None or timestamp_type != LOG_APPEND_TIME or timestamp_ms < 0:
        return None
    return timestamp_ms / 1000.0
