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

Both layers are read and written here, on pyca ``cryptography`` (:mod:`jose_compact`,
ADR 0016), with the key objects the keystore loaded: nothing is parsed per message but the
sender's ephemeral public key, whose point must be on P-256. Past the key id, a layer is
refused whole, as one kind: the outer one as DECRYPTION_FAILED (a protected header outside
its rule, an ephemeral key that is not a P-256 point, an encrypted key, IV or tag of the
wrong length, anything that does not unwrap or authenticate), the inner one as
BAD_SIGNATURE (a header outside its rule, a signature that is not 64 bytes of ``r || s`` or
does not verify). A header's rule: every member known and of its type, the contract's
claims present; ``crit``, ``b64`` and ``zip`` refused; base64url in its one canonical form.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap
from joserfc.jwk import ECKey

from gun_contract.envelope import ContentType, EnvelopeRejected, OpenedMessage
from gun_contract.envelope import EnvelopeRejectionKind as Kind
from gun_contract.limits import MAX_RECORD_BYTES
from gun_contract.security import jose_compact
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.keystore import (
    CONTENT_ALG,
    KEY_WRAP_ALG,
    SIGNING_ALG,
    KeyStatus,
    KeystoreError,
    KeyUse,
    PartyKeys,
    PublicKey,
)
from gun_contract.security.replay import ReplayGuard

TYPE = "JOSE"
# Signed only: no recipient (``aud``), no one-time id (``jti``), no expiry (``exp``); the
# reader judges freshness by what the content says (a heartbeat's ``at``).
SIGNED_TYPE = "gun-signed"


@dataclass(frozen=True, slots=True)
class EnvelopePolicy:
    """Time rules for envelopes."""

    lifetime_s: int = 3600
    max_clock_skew_s: int = 300


# -- what a protected header may hold ------------------------------------------------------
# Every member must be known and of its shape, and the required ones present; anything
# else is refused, as a header parameter a reader does not understand must be (RFC 7515
# section 4). ``crit`` and ``b64`` (RFC 7797) are refused outright: no party uses an
# extension, and an unencoded payload would change what the signature covers. ``zip`` is
# refused too: no decompression of what a sender chose (a bomb), nothing we seal uses it.
# ``jku``, ``jwk`` and ``x5*`` are allowed but never used: the key is the registered one
# ``kid`` names, never one the message brings along (RFC 8725 section 3.10).

Check = Callable[[Any], bool]


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_int(value: Any) -> bool:
    return isinstance(value, int)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def _is_list_of_str(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


_COMMON: dict[str, Check] = {
    "alg": _is_str,
    "kid": _is_str,
    "typ": _is_str,
    "cty": _is_str,
    "jku": _is_url,
    "jwk": _is_object,
    "x5u": _is_url,
    "x5c": _is_list_of_str,
    "x5t": _is_str,
    "x5t#S256": _is_str,
}
_CLAIM_CHECKS = {"str": _is_str, "int": _is_int}


@dataclass(frozen=True, slots=True)
class _HeaderRule:
    """The members a protected header may hold and those it must."""

    members: Mapping[str, Check]
    required: frozenset[str]

    @classmethod
    def with_claims(cls, claims: Mapping[str, str]) -> _HeaderRule:
        members = {**_COMMON, **{name: _CLAIM_CHECKS[kind] for name, kind in claims.items()}}
        return cls(members, frozenset({"alg", *claims}))

    def admits(self, header: Mapping[str, Any]) -> bool:
        members = self.members
        return self.required.issubset(header) and all(
            name in members and members[name](value) for name, value in header.items()
        )


MESSAGE_ID_MAX_CHARS = 128  # a jti: a UUID's 36 characters, with room to spare
_CLAIMS = {"iss": "str", "aud": "str", "iat": "int", "exp": "int", "jti": "str", "topic": "str"}
_SIGNED_CLAIMS = {"iss": "str", "iat": "int", "topic": "str"}
_ENVELOPE_JWS = _HeaderRule.with_claims(_CLAIMS)
_SIGNED_JWS = _HeaderRule.with_claims(_SIGNED_CLAIMS)
_JWE = _HeaderRule(
    {**_COMMON, "enc": _is_str, "epk": _is_object, "apu": _is_str, "apv": _is_str},
    frozenset({"alg", "enc", "epk"}),
)

_MAX_HEADER_BYTES = 2048  # a protected header of ours is about 400 bytes: beyond, malformed
# Tighter caps per layer (those the JOSE library used before ADR 0016, kept): the inner
# header is about 300 bytes encoded, the outer about 330.
_MAX_SIGNED_HEADER_BYTES = 512
_MAX_SEALED_HEADER_BYTES = 1024
# Whatever seal() produces, open() accepts: the caps follow the record limit (limits.py).
_MAX_SEGMENT_BYTES = MAX_RECORD_BYTES


def _header_of(encoded: bytes) -> tuple[dict[str, Any], bool]:
    """Decode a protected header without trusting it, and whether its base64url is the
    one canonical encoding (a header that is not fails its layer's check later: the
    kinds of rejection stay in the order of the docstring)."""
    if len(encoded) > _MAX_HEADER_BYTES:
        raise EnvelopeRejected(Kind.MALFORMED, f"protected header over {_MAX_HEADER_BYTES} bytes")
    try:
        try:
            raw, canonical = jose_compact.b64decode(encoded), True
        except ValueError:
            raw = base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4))
            canonical = False
        header = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        # RecursionError: deeply nested brackets must be a rejection, never a crash.
        raise EnvelopeRejected(Kind.MALFORMED, "not a compact JOSE serialization") from None
    if not isinstance(header, dict):
        raise EnvelopeRejected(Kind.MALFORMED, "protected header is not a JSON object")
    return header, canonical


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
    signed: bytes, public: Mapping[str, PublicKey], rule: _HeaderRule = _ENVELOPE_JWS
) -> tuple[dict[str, Any], bytes]:
    """Verify a compact JWS with the registered key its ``kid`` names; its protected
    header and payload. Raises :class:`EnvelopeRejected`, never anything else."""
    # Counted before split: a record of millions of dots must not become millions of parts.
    if signed.count(b".") != 2:
        raise EnvelopeRejected(Kind.MALFORMED, "inner content is not a compact JWS")
    parts = signed.split(b".")
    header, canonical = _header_of(parts[0])
    return _verify_parts(parts, header, canonical, public, rule)


def _verify_parts(
    parts: list[bytes],
    header: dict[str, Any],
    canonical: bool,
    public: Mapping[str, PublicKey],
    rule: _HeaderRule,
) -> tuple[dict[str, Any], bytes]:
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
    payload = _signed_payload(parts, header, canonical, key, rule)
    if payload is None:
        raise EnvelopeRejected(Kind.BAD_SIGNATURE, f"signature by {kid!r} does not verify")
    if header.get("iss") != key.party:
        raise EnvelopeRejected(
            Kind.SENDER_MISMATCH,
            f"signed with a key of {key.party!r} but claims to be {header.get('iss')!r}",
        )
    return header, payload


def _signed_payload(
    parts: list[bytes],
    header: dict[str, Any],
    canonical: bool,
    key: PublicKey,
    rule: _HeaderRule,
) -> bytes | None:
    """The payload, if the header holds to ``rule`` and ``key``'s signature verifies."""
    header_segment, payload_segment, signature_segment = parts
    # The header is part of what is signed: one that does not hold to the rule (an unknown
    # member, a claim missing or of the wrong type) is not a signed header of ours,
    # whatever the signature says.
    if not (
        canonical
        and len(header_segment) <= _MAX_SIGNED_HEADER_BYTES
        and len(payload_segment) <= _MAX_SEGMENT_BYTES
        and rule.admits(header)
    ):
        return None
    try:
        signature = jose_compact.b64decode(signature_segment)
        payload = jose_compact.b64decode(payload_segment)
    except ValueError:
        return None
    signing_input = header_segment + b"." + payload_segment
    if not jose_compact.es256_verifies(signing_input, signature, key.key.public_key):
        return None
    return payload


def verify_signed(signed: bytes, *, topic: str, public: Mapping[str, PublicKey]) -> SignedMessage:
    """Verify a signed-only message (:meth:`JoseEnvelope.sign`) read from ``topic``, with
    public keys only. Raises :class:`EnvelopeRejected`, never anything else."""
    if signed.count(b".") != 2:
        raise EnvelopeRejected(Kind.MALFORMED, "not a compact JWS (three parts expected)")
    parts = signed.split(b".")
    header, canonical = _header_of(parts[0])
    if header.get("typ") != SIGNED_TYPE:
        # An envelope's inner JWS (typ JOSE), an audit checkpoint: not meant to travel alone.
        raise EnvelopeRejected(Kind.MALFORMED, f"not a signed message (typ is not {SIGNED_TYPE})")
    header, payload = _verify_parts(parts, header, canonical, public, _SIGNED_JWS)
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
        signed = jose_compact.sign_compact(
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
            _private(signing_key),
        )
        recipient_key = self._keys.encryption_key_for(recipient)
        return jose_compact.encrypt_compact(
            {"alg": KEY_WRAP_ALG, "enc": CONTENT_ALG, "kid": recipient_key.kid, "cty": TYPE},
            signed,
            recipient_key.key.public_key,
        )

    def sign(self, payload: bytes, *, topic: str, content_type: ContentType) -> bytes:
        """Signed, not encrypted: a compact JWS (``typ`` gun-signed) that any reader of
        ``topic`` verifies with public keys alone (:func:`verify_signed`)."""
        signing_key = self._keys.signing_key
        return jose_compact.sign_compact(
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
            _private(signing_key),
        )

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
        parts = sealed.split(b".")
        header, canonical = _header_of(parts[0])
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
            return _decrypted(parts, header, canonical, _private(key))
        except (ValueError, TypeError, KeyError, InvalidUnwrap, InvalidTag):
            # ValueError covers a point off the curve, bad base64url and wrong lengths.
            raise EnvelopeRejected(
                Kind.DECRYPTION_FAILED, f"cannot decrypt with {kid!r} (tampered or corrupt)"
            ) from None

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
        if not 0 < len(message_id) <= MESSAGE_ID_MAX_CHARS or not message_id.isprintable():
            # The key of the hub's claim and of every replay memory: a lone surrogate
            # (valid JSON, no UTF-8) made it unencodable after the hub had put the
            # declaration waiting for its claim, holding its partition (stop 32, review).
            raise EnvelopeRejected(
                Kind.MALFORMED, f"jti: not 1 to {MESSAGE_ID_MAX_CHARS} printable characters"
            )
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


def _decrypted(
    parts: list[bytes], header: dict[str, Any], canonical: bool, key: ec.EllipticCurvePrivateKey
) -> bytes:
    """The plaintext of a sealed message whose algorithms and key id were accepted.
    Raises ValueError, TypeError, ``InvalidUnwrap`` or ``InvalidTag``."""
    if not (
        canonical
        and len(parts[0]) <= _MAX_SEALED_HEADER_BYTES
        and len(parts[3]) <= _MAX_SEGMENT_BYTES
        and _JWE.admits(header)
    ):
        raise ValueError("protected header refused")
    return jose_compact.decrypt_compact(
        parts,
        KEY_WRAP_ALG,
        jose_compact.ephemeral_key(header["epk"]),
        _party_info(header, "apu"),
        _party_info(header, "apv"),
        key,
    )


def _party_info(header: dict[str, Any], name: str) -> bytes:
    """``apu`` or ``apv`` decoded (RFC 7518 section 4.6.1): absent, it is empty."""
    encoded = header.get(name)
    return jose_compact.b64decode(encoded.encode("ascii")) if encoded else b""


def _private(key: ECKey) -> ec.EllipticCurvePrivateKey:
    """The loaded private key of one of our own JWKs (the keystore reads only those)."""
    private = key.private_key
    if private is None:  # pragma: no cover - the keystore refuses a key without "d"
        raise KeystoreError(f"key {key.kid!r} has no private part")
    return private
