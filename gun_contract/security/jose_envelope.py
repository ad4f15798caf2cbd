"""Signed, then encrypted: JWS (ES256) nested in JWE (ECDH-ES+A256KW, A256GCM).

Sealing signs the exact payload bytes with the sender's newest key, in a protected
header carrying ``typ``, ``cty``, ``iss``, ``aud``, ``iat``, ``exp``, a fresh ``jti`` and
the topic; then encrypts that compact JWS to the recipient's newest encryption key with
a fresh content key (ephemeral ECDH per message). Opening checks, before anything is
used: the outer algorithms against an allow-list, the recipient key id among our own,
decryption, the inner algorithm against the signing key's registered algorithm, the key
id known and not retired, the signature, that the key belongs to ``iss``, that ``iss``
may send on this topic, ``aud``, the topic, ``exp``, ``iat`` within the skew, and the
``jti`` never seen. Algorithms are never taken from the header alone (RFC 8725).

Signed only (:meth:`JoseEnvelope.sign`, :func:`verify_signed`): a JWS alone, typed
``gun-signed``, with ``iss``, ``iat`` and the topic, for what every reader of a topic may
read and no single party receives (the adapters' heartbeats). It is the envelope's inner
layer and is verified by the same code: the key chosen by ``kid`` among the registered
signing keys, its algorithm, not retired, the signature, the key's owner is ``iss``, the
topic. Who may say what on the topic is the reader's to check (ops/heartbeats.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from joserfc import jwe, jws
from joserfc.errors import JoseError
from joserfc.jwe import JWERegistry
from joserfc.jws import JWSRegistry
from joserfc.registry import HeaderParameter

from gun_contract.envelope import ContentType, EnvelopeRejected, OpenedMessage
from gun_contract.envelope import EnvelopeRejectionKind as Kind
from gun_contract.limits import MAX_RECORD_BYTES
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.keystore import (
    CONTENT_ALG,
    KEY_WRAP_ALG,
    SIGNING_ALG,
    KeyStatus,
    KeyUse,
    PartyKeys,
    PublicKey,
)
from gun_contract.security.replay import ReplayGuard

TYPE = "JOSE"
_CLAIMS = {"iss": "str", "aud": "str", "iat": "int", "exp": "int", "jti": "str", "topic": "str"}
# joserfc refuses header parameters it does not know: register the contract's own.
_JWS_REGISTRY = JWSRegistry(
    header_registry={name: HeaderParameter(name, kind, True) for name, kind in _CLAIMS.items()},
    algorithms=[SIGNING_ALG],
)
_JWE_REGISTRY = JWERegistry(algorithms=[KEY_WRAP_ALG, CONTENT_ALG])
# joserfc's default caps (128 kB signed payload, 64 kB ciphertext) are far below what the
# contract lets travel; the caps follow the record limit instead (limits.py), so whatever
# seal() produces, open() accepts.
_JWS_REGISTRY.max_payload_length = MAX_RECORD_BYTES
_JWE_REGISTRY.max_ciphertext_length = MAX_RECORD_BYTES

# Signed only: no recipient (``aud``), no one-time id (``jti``), no expiry (``exp``); the
# reader judges freshness by what the content says (a heartbeat's ``at``).
SIGNED_TYPE = "gun-signed"
_SIGNED_CLAIMS = {"iss": "str", "iat": "int", "topic": "str"}
_SIGNED_REGISTRY = JWSRegistry(
    header_registry={
        name: HeaderParameter(name, kind, True) for name, kind in _SIGNED_CLAIMS.items()
    },
    algorithms=[SIGNING_ALG],
)
_SIGNED_REGISTRY.max_payload_length = MAX_RECORD_BYTES


@dataclass(frozen=True, slots=True)
class EnvelopePolicy:
    """Time rules for envelopes."""

    lifetime_s: int = 3600
    max_clock_skew_s: int = 300


_MAX_HEADER_BYTES = 2048  # a protected header of ours is about 400 bytes


def _header_of(compact: bytes) -> dict[str, Any]:
    """Decode the protected header of a compact serialization, without trusting it."""
    encoded = compact.split(b".", 1)[0]
    if len(encoded) > _MAX_HEADER_BYTES:
        raise EnvelopeRejected(Kind.MALFORMED, f"protected header over {_MAX_HEADER_BYTES} bytes")
    try:
        header = json.loads(base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        # RecursionError: deeply nested brackets must be a rejection, never a crash.
        raise EnvelopeRejected(Kind.MALFORMED, "not a compact JOSE serialization") from None
    if not isinstance(header, dict):
        raise EnvelopeRejected(Kind.MALFORMED, "protected header is not a JSON object")
    return header


@dataclass(frozen=True, slots=True)
class SignedMessage:
    """The verified content of a signed-only message and who signed it."""

    payload: bytes
    content_type: ContentType
    sender: str
    topic: str
    issued_at: int
    signing_kid: str


def verify_jws(
    signed: bytes, public: Mapping[str, PublicKey], registry: JWSRegistry = _JWS_REGISTRY
) -> tuple[dict[str, Any], bytes]:
    """Verify a compact JWS with the registered key its ``kid`` names; its protected
    header and payload. Raises :class:`EnvelopeRejected`, never anything else."""
    if signed.count(b".") != 2:
        raise EnvelopeRejected(Kind.MALFORMED, "inner content is not a compact JWS")
    header = _header_of(signed)
    kid = str(header.get("kid"))
    key = public.get(kid)
    if key is None or key.use is not KeyUse.SIG:
        raise EnvelopeRejected(Kind.UNKNOWN_KID, f"signing key {kid!r} is not registered")
    if header.get("alg") != key.alg:
        # The key's registered algorithm decides, never the header ("none", HS256...).
        raise EnvelopeRejected(
            Kind.DISALLOWED_ALG,
            f"signature algorithm {header.get('alg')!r} is not allowed for {kid!r}",
        )
    if key.status is KeyStatus.RETIRED:
        raise EnvelopeRejected(Kind.RETIRED_KEY, f"signing key {kid!r} is retired")
    try:
        verified = jws.deserialize_compact(signed, key.key, algorithms=[key.alg], registry=registry)
    except (JoseError, ValueError, RecursionError):
        raise EnvelopeRejected(
            Kind.BAD_SIGNATURE, f"signature by {kid!r} does not verify"
        ) from None
    if header.get("iss") != key.party:
        raise EnvelopeRejected(
            Kind.SENDER_MISMATCH,
            f"signed with a key of {key.party!r} but claims to be {header.get('iss')!r}",
        )
    return dict(verified.headers()), bytes(verified.payload)


def verify_signed(signed: bytes, *, topic: str, public: Mapping[str, PublicKey]) -> SignedMessage:
    """Verify a signed-only message (:meth:`JoseEnvelope.sign`) read from ``topic``, with
    public keys only. Raises :class:`EnvelopeRejected`, never anything else."""
    if signed.count(b".") != 2:
        raise EnvelopeRejected(Kind.MALFORMED, "not a compact JWS (three parts expected)")
    if _header_of(signed).get("typ") != SIGNED_TYPE:
        # An envelope's inner JWS (typ JOSE), an audit checkpoint: not meant to travel alone.
        raise EnvelopeRejected(Kind.MALFORMED, f"not a signed message (typ is not {SIGNED_TYPE})")
    header, payload = verify_jws(signed, public, _SIGNED_REGISTRY)
    if header.get("topic") != topic:
        raise EnvelopeRejected(
            Kind.WRONG_TOPIC, f"signed for topic {header.get('topic')!r}, read from {topic!r}"
        )
    try:
        content_type = ContentType(header["cty"])
        issued_at = int(header["iat"])
    except (KeyError, TypeError, ValueError):
        raise EnvelopeRejected(Kind.MALFORMED, "protected header lacks a claim") from None
    return SignedMessage(
        payload=payload,
        content_type=content_type,
        sender=str(header["iss"]),
        topic=topic,
        issued_at=issued_at,
        signing_kid=str(header["kid"]),
    )


class JoseEnvelope:
    """The envelope of one party: seals with its keys, opens what is addressed to it."""

    def __init__(
        self,
        keys: PartyKeys,
        entitlements: Entitlements,
        replay: ReplayGuard,
        policy: EnvelopePolicy | None = None,
    ) -> None:
        self._keys = keys
        self._entitlements = entitlements
        self._replay = replay
        self._policy = policy or EnvelopePolicy()

    @property
    def party(self) -> str:
        return self._keys.party

    def seal(
        self, payload: bytes, *, recipient: str, topic: str, content_type: ContentType
    ) -> bytes:
        now = int(time.time())
        signing_key = self._keys.signing_key
        signed = jws.serialize_compact(
            {
                "alg": SIGNING_ALG,
                "kid": signing_key.kid,
                "typ": TYPE,
                "cty": content_type.value,
                "iss": self.party,
                "aud": recipient,
                "iat": now,
                "exp": now + self._policy.lifetime_s,
                "jti": uuid.uuid4().hex,
                "topic": topic,
            },
            payload,
            signing_key,
            algorithms=[SIGNING_ALG],
            registry=_JWS_REGISTRY,
        )
        recipient_key = self._keys.encryption_key_for(recipient)
        sealed = jwe.encrypt_compact(
            {"alg": KEY_WRAP_ALG, "enc": CONTENT_ALG, "kid": recipient_key.kid, "cty": TYPE},
            signed,
            recipient_key.key,
            registry=_JWE_REGISTRY,
        )
        return sealed.encode("ascii")

    def sign(self, payload: bytes, *, topic: str, content_type: ContentType) -> bytes:
        """Signed, not encrypted: a compact JWS (``typ`` gun-signed) that any reader of
        ``topic`` verifies with public keys alone (:func:`verify_signed`)."""
        signing_key = self._keys.signing_key
        signed = jws.serialize_compact(
            {
                "alg": SIGNING_ALG,
                "kid": signing_key.kid,
                "typ": SIGNED_TYPE,
                "cty": content_type.value,
                "iss": self.party,
                "iat": int(time.time()),
                "topic": topic,
            },
            payload,
            signing_key,
            algorithms=[SIGNING_ALG],
            registry=_SIGNED_REGISTRY,
        )
        return signed.encode("ascii")

    def open(
        self,
        sealed: bytes,
        *,
        topic: str,
        position: str | None = None,
        accepted_at: float | None = None,
        check_replay: bool = True,
    ) -> OpenedMessage:
        signed = self._decrypt(sealed)
        header, payload = self._verify(signed)
        return self._check_claims(
            header, payload, topic, position, accepted_at, check_replay=check_replay
        )

    # -- outer layer: confidentiality ----------------------------------------------------

    def _decrypt(self, sealed: bytes) -> bytes:
        if sealed.count(b".") != 4:
            raise EnvelopeRejected(Kind.MALFORMED, "not a compact JWE (five parts expected)")
        header = _header_of(sealed)
        if header.get("alg") != KEY_WRAP_ALG or header.get("enc") != CONTENT_ALG:
            raise EnvelopeRejected(
                Kind.DISALLOWED_ALG,
                f"encryption {header.get('alg')!r}/{header.get('enc')!r} is not allowed",
            )
        kid = str(header.get("kid"))
        key = self._keys.decryption_keys.get(kid)
        if key is None:
            raise EnvelopeRejected(
                Kind.UNKNOWN_KID, f"encrypted to key {kid!r}, not an active key of {self.party}"
            )
        try:
            # The allow-list is the registry's: joserfc builds a default-capped registry of
            # its own when ``algorithms`` is passed, which refused anything above 64 kB.
            decrypted = jwe.decrypt_compact(sealed, key, registry=_JWE_REGISTRY)
        except (JoseError, ValueError, RecursionError):
            raise EnvelopeRejected(
                Kind.DECRYPTION_FAILED, f"cannot decrypt with {kid!r} (tampered or corrupt)"
            ) from None
        return decrypted.plaintext or b""

    # -- inner layer: origin and integrity ---------------------------------------------------

    def _verify(self, signed: bytes) -> tuple[dict[str, Any], bytes]:
        return verify_jws(signed, self._keys.public)

    def _check_claims(
        self,
        header: dict[str, Any],
        payload: bytes,
        topic: str,
        position: str | None,
        accepted_at: float | None,
        *,
        check_replay: bool,
    ) -> OpenedMessage:
        sender = str(header["iss"])
        if header.get("topic") != topic:
            raise EnvelopeRejected(
                Kind.WRONG_TOPIC, f"sealed for topic {header.get('topic')!r}, read from {topic!r}"
            )
        if not self._entitlements.may_send(sender, topic):
            raise EnvelopeRejected(Kind.NOT_ENTITLED, f"{sender!r} may not send on {topic!r}")
        if header.get("aud") != self.party:
            raise EnvelopeRejected(
                Kind.WRONG_RECIPIENT, f"addressed to {header.get('aud')!r}, not {self.party!r}"
            )
        try:
            issued_at, expires_at = int(header["iat"]), int(header["exp"])
            message_id = str(header["jti"])
            content_type = ContentType(header["cty"])
        except (KeyError, TypeError, ValueError):
            raise EnvelopeRejected(Kind.MALFORMED, "protected header lacks a claim") from None
        # Freshness is judged when the broker accepted the record (its log-append time),
        # not when this reader reads it: a backlog read an hour or days later is as fresh
        # as when it was written. Without a broker time, the reader's clock stands in.
        now = accepted_at if accepted_at is not None else time.time()
        when = "accepted by the broker" if accepted_at is not None else "read"
        skew = self._policy.max_clock_skew_s
        if expires_at + skew < now:
            raise EnvelopeRejected(
                Kind.EXPIRED, f"expired {int(now - expires_at)}s before it was {when}"
            )
        if abs(issued_at - now) > skew:
            raise EnvelopeRejected(
                Kind.IAT_SKEW,
                f"issued {int(now - issued_at)}s before it was {when}, beyond {skew}s",
            )
        if expires_at - issued_at > self._policy.lifetime_s + skew:
            raise EnvelopeRejected(Kind.EXPIRED, "lifetime longer than policy allows")
        # Without a position every second sighting is a replay.
        where = position or uuid.uuid4().hex
        if check_replay and not self._replay.first_sighting(
            message_id, expires_at + skew, where, accepted_at
        ):
            raise EnvelopeRejected(Kind.REPLAY, f"message {message_id} was already received")
        return OpenedMessage(
            payload=payload,
            content_type=content_type,
            sender=sender,
            recipient=self.party,
            topic=topic,
            message_id=message_id,
            issued_at=issued_at,
            signing_kid=str(header["kid"]),
            accept_until=expires_at + skew,
        )
