"""The one place where messages between parties are sealed and opened.

Every value on a ``requests``, ``responses`` or ``decisions`` topic goes through an
:class:`Envelope`. The foundation ships :class:`PlainEnvelope`: the protected header of the
contract (``typ``, ``cty``, ``iss``, ``aud``, ``iat``, ``exp``, ``jti``, topic) in the shape
of a JWS compact serialization, **unsigned and unencrypted**. The signed-then-encrypted
JOSE envelope (contract section 5) replaces it behind the same two methods.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class ContentType(StrEnum):
    XML = "application/xml"
    JSON = "application/json"


class EnvelopeRejectionKind(StrEnum):
    MALFORMED = "ENVELOPE_MALFORMED"
    WRONG_RECIPIENT = "ENVELOPE_WRONG_RECIPIENT"
    WRONG_TOPIC = "ENVELOPE_WRONG_TOPIC"
    EXPIRED = "ENVELOPE_EXPIRED"


class EnvelopeRejected(ValueError):
    """A sealed message that must not be acted on; ``kind`` says why."""

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


class Envelope(Protocol):
    """Seals messages from one party and opens those addressed to it."""

    party: str

    def seal(
        self, payload: bytes, *, recipient: str, topic: str, content_type: ContentType
    ) -> bytes: ...

    def open(self, sealed: bytes, *, topic: str) -> OpenedMessage: ...


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(data: bytes) -> bytes:
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))


class PlainEnvelope:
    """Header-checked, unprotected envelope: the seam before signing and encryption."""

    TYPE = "gun-hub+plain"

    def __init__(self, party: str, *, lifetime_s: int = 3600) -> None:
        self.party = party
        self._lifetime_s = lifetime_s

    def seal(
        self, payload: bytes, *, recipient: str, topic: str, content_type: ContentType
    ) -> bytes:
        now = int(time.time())
        header = {
            "alg": "none",
            "typ": self.TYPE,
            "cty": content_type.value,
            "iss": self.party,
            "aud": recipient,
            "iat": now,
            "exp": now + self._lifetime_s,
            "jti": uuid.uuid4().hex,
            "topic": topic,
        }
        return _b64(json.dumps(header, separators=(",", ":")).encode()) + b"." + _b64(payload)

    def open(self, sealed: bytes, *, topic: str) -> OpenedMessage:
        try:
            encoded_header, encoded_payload = sealed.split(b".")
            header = json.loads(_unb64(encoded_header))
            payload = _unb64(encoded_payload)
            opened = OpenedMessage(
                payload=payload,
                content_type=ContentType(header["cty"]),
                sender=str(header["iss"]),
                recipient=str(header["aud"]),
                topic=str(header["topic"]),
                message_id=str(header["jti"]),
                issued_at=int(header["iat"]),
            )
            expires = int(header["exp"])
        except (ValueError, KeyError, TypeError) as err:
            raise EnvelopeRejected(
                EnvelopeRejectionKind.MALFORMED, f"not an envelope: {type(err).__name__}"
            ) from None
        if opened.recipient != self.party:
            raise EnvelopeRejected(
                EnvelopeRejectionKind.WRONG_RECIPIENT,
                f"addressed to {opened.recipient!r}, not {self.party!r}",
            )
        if opened.topic != topic:
            raise EnvelopeRejected(
                EnvelopeRejectionKind.WRONG_TOPIC,
                f"sealed for topic {opened.topic!r}, read from {topic!r}",
            )
        if expires < time.time():
            raise EnvelopeRejected(EnvelopeRejectionKind.EXPIRED, "the message has expired")
        return opened
