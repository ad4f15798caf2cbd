"""Signed, then encrypted: JWS (ES256) nested in JWE (ECDH-ES+A256KW, A256GCM).

Sealing signs the exact payload bytes with the sender's newest key, in a protected
header carrying ``typ``, ``cty``, ``iss``, ``aud``, ``iat``, ``exp``, a fresh ``jti`` and
the topic; then encrypts that compact JWS to the recipient's newest encryption key with
a fresh content key (ephemeral ECDH per message). Opening checks, before anything is
used: the outer algorithms against an allow-list, the recipient key id among our own,
decryption, the inner algorithm against the signing key's registered algorithm, the key
id known and not retired before the broker accepted the record, the signature, that the
key belongs to ``iss``, that ``iss`` may send on this topic, ``aud``, the topic, ``exp``,
``iat`` within the skew, ``nbf`` if present, and the ``jti`` never seen. Algorithms are
never taken from the header alone (RFC 8725).

A retired key (ours to decrypt with, or the sender's to verify) still serves for a record
the broker accepted before its retirement: its log-append time says so, which the sender
cannot choose (ADR 0006), never a time the message states. A backlog sealed before a
rotation then opens whenever its reader comes back (review stop 38, L2). Without a broker
time (a topic not stamped ``LogAppendTime``) a retired key is refused, as is anything
the broker accepted at or after the retirement.

Both layers are read and written here, on pyca ``cryptography`` (:mod:`jose_compact`,
ADR 0016), with the key objects the keystore loaded: nothing is parsed per message but the
sender's ephemeral public key, whose point must be on P-256. Past the key id, a protected
header over its cap or outside its rule (below) is HEADER_REFUSED, the reason naming the
member; the inner one is judged only once its signature verifies, so a forgery stays a bad
signature whatever its header holds (found by review, stop 36: a header outside the rule
was reported as "signature does not verify", and operators chased keys). Anything else
wrong with the outer layer is DECRYPTION_FAILED (an ephemeral key that is not a P-256
point, an encrypted key, IV or tag of the wrong length, anything that does not unwrap or
authenticate), with the inner one BAD_SIGNATURE (a signature that is not 64 bytes of
``r || s`` or does not verify); base64url in its one canonical form.

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
import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
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
    PUBLIC_JWKS,
    SIGNING_ALG,
    KeyStatus,
    KeystoreError,
    KeyUse,
    PartyKeys,
    PublicKey,
)
from gun_contract.security.replay import ReplayGuard
from gun_contract.untrusted_json import parse_untrusted

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
# The policy (security.md, "What a protected header may hold"): the members RFC 7515 and
# RFC 7516 register, the claims RFC 7519 registers (``sub`` read and ignored, ``nbf``
# honoured) and the contract's ``topic``, each of its type; the contract's claims present.
# A NumericDate may be any finite number (RFC 7519 section 2); ``aud`` a text or an array
# of texts (section 4.1.3: the reader checks it names itself alone); ``cty`` one of the
# contract's two types, in any of its equivalent spellings (RFC 7515 section 4.1.10).
# ``crit`` may list only claims the hub acts on, each present (RFC 7515 section 4.1.11): it
# can never make the hub ignore what a sender meant. A member no registry defines is
# refused, not ignored: the contract names what a header holds, and a sender who adds one
# meant something by it the hub would not do. ``b64`` (RFC 7797) is refused outright: an
# unencoded payload would change what the signature covers; ``zip`` too: no decompression
# of what a sender chose (a bomb), nothing we seal uses it. ``jku``, ``jwk`` and ``x5*``
# are allowed but never used: the key is the registered one ``kid`` names, never one the
# message brings along (RFC 8725 section 3.10). A header outside this policy is refused as
# ENVELOPE_HEADER_REFUSED, naming the member; an inner one only once its signature
# verifies (a forgery is a bad signature, whatever its header holds).

Check = Callable[[Any], bool]


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_numeric_date(value: Any) -> bool:
    """RFC 7519 section 2: seconds since the epoch, "can be non-integer"; never a boolean,
    never NaN or an infinity (which Python's JSON reader would otherwise let through)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer no float holds (JSON allows 4,300 digits)
        return False


def _is_envelope_type(value: Any) -> bool:
    """RFC 7515 section 4.1.9: ``JOSE``, a media type compared without case, with or
    without its ``application/`` prefix; another type (a signed-only message, a JWT) is
    not an envelope (RFC 8725 section 3.11)."""
    return isinstance(value, str) and value.lower() in ("jose", "application/jose")


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def _is_list_of_str(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_audience(value: Any) -> bool:
    return isinstance(value, str) or _is_list_of_str(value)


_SPELLED_AS_SEALED = {kind.value: kind for kind in ContentType}


def content_type(value: Any) -> ContentType | None:
    """The contract's content type ``value`` names, or None. RFC 7515 section 4.1.10:
    ``xml`` is ``application/xml``; media types are case-insensitive (RFC 9110 section
    8.3.1); a ``charset`` parameter is allowed when it says UTF-8, the only encoding the
    parties write (any other would be read wrongly)."""
    # The spelling every party of the contract writes, found without parsing: an opened
    # message's ``cty`` is judged twice (its header's rule, then its content type), and
    # parsing it cost more than both look-ups (stop 39).
    exact = _SPELLED_AS_SEALED.get(value) if isinstance(value, str) else None
    if exact is not None:
        return exact
    if not isinstance(value, str) or len(value) > 128:
        return None
    media, *parameters = value.split(";")
    media = media.strip().lower()
    if "/" not in media:
        media = "application/" + media
    try:
        kind = ContentType(media)
    except ValueError:
        return None
    for parameter in parameters:
        name, _, setting = parameter.partition("=")
        if name.strip().lower() != "charset" or setting.strip().strip('"').lower() != "utf-8":
            return None
    return kind


def _is_content_type(value: Any) -> bool:
    return content_type(value) is not None


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
_CLAIM_CHECKS: dict[str, Check] = {
    "envelope type": _is_envelope_type,
    "str": _is_str,
    "date": _is_numeric_date,
    "audience": _is_audience,
    "content": _is_content_type,
}


def _named(name: str) -> str:
    """A member name as a rejection says it: quoted, at most 40 characters of it."""
    return repr(name[:40])


@dataclass(frozen=True, slots=True)
class _HeaderRule:
    """The members a protected header may hold, those it must, and those ``crit`` may list."""

    members: Mapping[str, Check]
    required: frozenset[str]
    understood: frozenset[str] = frozenset()

    @classmethod
    def with_claims(
        cls,
        claims: Mapping[str, str],
        optional: Mapping[str, str] | None = None,
        understood: frozenset[str] = frozenset(),
    ) -> _HeaderRule:
        every = {**claims, **(optional or {})}
        members = {**_COMMON, **{name: _CLAIM_CHECKS[kind] for name, kind in every.items()}}
        if understood:
            members["crit"] = _is_list_of_str
        return cls(members, frozenset({"alg", *claims}), understood)

    def problem(self, header: Mapping[str, Any]) -> str | None:
        """What in ``header`` is outside this rule, said precisely; None if nothing is."""
        missing = sorted(self.required.difference(header))
        if missing:
            return f"lacks {', '.join(map(_named, missing))}"
        members = self.members
        for name, value in header.items():
            check = members.get(name)
            if check is None:
                return f"holds {_named(name)}, a member the hub does not accept"
            if not check(value):
                return f"has {_named(name)} of a type or value the hub does not accept"
        critical = header.get("crit")
        if critical is not None:
            if not critical or len(set(critical)) != len(critical):
                return "has a 'crit' that is not a list of distinct member names"
            for name in critical:
                if name not in self.understood:
                    return f"marks {_named(name)} critical, which the hub does not act on"
                if name not in header:
                    return f"marks {_named(name)} critical but does not hold it"
        return None


MESSAGE_ID_MAX_CHARS = 128  # a jti: a UUID's 36 characters, with room to spare
_CLAIMS = {
    "typ": "envelope type",
    "cty": "content",
    "iss": "str",
    "aud": "audience",
    "iat": "date",
    "exp": "date",
    "jti": "str",
    "topic": "str",
}
_OPTIONAL_CLAIMS = {"sub": "str", "nbf": "date"}
# What ``crit`` may list: the claims the hub checks (RFC 7515 names are not allowed there).
_UNDERSTOOD = frozenset({"iss", "aud", "iat", "exp", "nbf", "jti", "topic"})
_SIGNED_CLAIMS = {"cty": "content", "iss": "str", "iat": "date", "topic": "str"}
_ENVELOPE_JWS = _HeaderRule.with_claims(_CLAIMS, _OPTIONAL_CLAIMS, _UNDERSTOOD)
_SIGNED_JWS = _HeaderRule.with_claims(_SIGNED_CLAIMS)
_JWE = _HeaderRule(
    {**_COMMON, "enc": _is_str, "epk": _is_object, "apu": _is_str, "apv": _is_str},
    frozenset({"alg", "enc", "epk"}),
)

# Caps on a protected header as sent (base64url), checked before it is decoded. Ours are
# about 300 bytes (inner) and 330 (outer); the inner one has room for an ``x5c`` chain of a
# few certificates (about 800 bytes each, encoded twice), which a sender may add.
_MAX_SIGNED_HEADER_BYTES = 8192
_MAX_SEALED_HEADER_BYTES = 1024
# Whatever seal() produces, open() accepts: the caps follow the record limit (limits.py).
_MAX_SEGMENT_BYTES = MAX_RECORD_BYTES


def _header_of(encoded: bytes, cap: int) -> tuple[dict[str, Any], bool]:
    """Decode a protected header without trusting it, and whether its base64url is the
    one canonical encoding (a header that is not fails its layer's check later: the
    kinds of rejection stay in the order of the docstring)."""
    if len(encoded) > cap:
        raise EnvelopeRejected(
            Kind.HEADER_REFUSED,
            f"protected header of {len(encoded)} bytes (base64url), over the {cap}-byte cap",
        )
    try:
        try:
            raw, canonical = jose_compact.b64decode(encoded), True
        except ValueError:
            raw = base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4))
            canonical = False
    except (ValueError, binascii.Error):
        raise EnvelopeRejected(Kind.MALFORMED, "not a compact JOSE serialization") from None
    try:
        # Off the interpreter's stack: nested brackets are refused at the parser's own
        # depth limit, a lone surrogate (no text) as not JSON (untrusted_json).
        header = parse_untrusted(raw)
    except ValueError as err:
        # The parser's reason names a place, never the header's content.
        raise EnvelopeRejected(Kind.MALFORMED, f"protected header is not JSON: {err}") from None
    if not isinstance(header, dict):
        raise EnvelopeRejected(Kind.MALFORMED, "protected header is not a JSON object")
    return header, canonical


class UnknownKeyId(EnvelopeRejected):
    """ENVELOPE_UNKNOWN_KID: a key id none of the keys read from ``file`` has. The
    envelope looks at its key files again before it refuses (a key published a moment
    ago), and the refusal says when the keys it holds were read."""

    def __init__(self, message: str, file: str) -> None:
        super().__init__(Kind.UNKNOWN_KID, message)
        self.file = file

    def dated(self, read_at: datetime | None) -> EnvelopeRejected:
        """The refusal as a dead letter keeps it: what the reader had read, and when (the
        files were looked at again just before, and had not changed since, or could not
        be read)."""
        known = (
            f"not in {self.file} as last read at {read_at.isoformat(timespec='seconds')}"
            if read_at is not None
            else "not among the keys this process was given"
        )
        return EnvelopeRejected(self.kind, f"{self}: unknown key id ({known})")


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
    signed: bytes,
    public: Mapping[str, PublicKey],
    rule: _HeaderRule = _ENVELOPE_JWS,
    accepted_at: float | None = None,
) -> tuple[dict[str, Any], bytes]:
    """Verify a compact JWS with the registered key its ``kid`` names; its protected
    header and payload. ``accepted_at``: the record's log-append time, before which a
    retired key still vouches. Raises :class:`EnvelopeRejected`, never anything else."""
    # Counted before split: a record of millions of dots must not become millions of parts.
    if signed.count(b".") != 2:
        raise EnvelopeRejected(Kind.MALFORMED, "inner content is not a compact JWS")
    parts = signed.split(b".")
    header, canonical = _header_of(parts[0], _MAX_SIGNED_HEADER_BYTES)
    return _verify_parts(parts, header, canonical, public, rule, accepted_at)


def _verify_parts(
    parts: list[bytes],
    header: dict[str, Any],
    canonical: bool,
    public: Mapping[str, PublicKey],
    rule: _HeaderRule,
    accepted_at: float | None = None,
) -> tuple[dict[str, Any], bytes]:
    kid = str(header.get("kid"))
    key = public.get(kid)
    if key is None or key.use is not KeyUse.SIG:
        raise UnknownKeyId(f"signing key {kid!r} is not registered", PUBLIC_JWKS)
    if header.get("alg") != key.alg:
        # The key's registered algorithm decides, never the header ("none", HS256...).
        raise EnvelopeRejected(
            Kind.DISALLOWED_ALG,
            f"signature algorithm {header.get('alg')!r} is not allowed for {kid!r}",
        )
    retired = retired_for(key, accepted_at)
    if retired is not None:
        raise EnvelopeRejected(Kind.RETIRED_KEY, f"signing key {kid!r} {retired}")
    outside = _outside_validity(key, accepted_at)
    if outside is not None:
        raise EnvelopeRejected(Kind.RETIRED_KEY, f"signed by {kid!r} {outside}")
    payload = _signed_payload(parts, canonical, key)
    if payload is None:
        raise EnvelopeRejected(Kind.BAD_SIGNATURE, f"signature by {kid!r} does not verify")
    # Judged once the signature verifies: the sender did write this header.
    problem = rule.problem(header)
    if problem is not None:
        raise EnvelopeRejected(
            Kind.HEADER_REFUSED, f"signed by {kid!r}, but its protected header {problem}"
        )
    if header.get("iss") != key.party:
        raise EnvelopeRejected(
            Kind.SENDER_MISMATCH,
            f"signed with a key of {key.party!r} but claims to be {header.get('iss')!r}",
        )
    return header, payload


def retired_for(key: PublicKey, accepted_at: float | None) -> str | None:
    """Why ``key`` may not serve a record the broker accepted at ``accepted_at`` (its
    log-append time, in epoch seconds) because it is retired; None if it may.

    A retired key serves only what the broker accepted strictly before its retirement.
    Without a broker time nothing proves that: a reader's clock, or a time the message
    states, would let a holder of the key seal past its retirement. A key marked retired
    with no retirement time never serves.
    """
    if key.status is not KeyStatus.RETIRED:
        return None
    retired_at = key.retired_at
    if retired_at is None:
        return "is retired"
    since = retired_at.isoformat(timespec="seconds")
    if accepted_at is None:
        return f"is retired (since {since}) and the record has no broker time to show otherwise"
    if accepted_at >= retired_at.timestamp():
        accepted = datetime.fromtimestamp(accepted_at, UTC).isoformat(timespec="seconds")
        return f"was retired on {since}, before the broker accepted the record ({accepted})"
    return None


def _outside_validity(key: PublicKey, accepted_at: float | None) -> str | None:
    """Why ``key``'s stated validity (``not_before``, ``not_after``: a partner's JWKS may
    carry them, ``keys import`` keeps them) does not cover the record the broker accepted
    at ``accepted_at`` (the reader's clock without one); None if it does or none is
    stated. They were read and then ignored for every key but the audit keys: a partner
    who limited a key's life believed it expired (JOSE review of stop 48)."""
    if key.not_before is None and key.not_after is None:
        return None
    when = accepted_at if accepted_at is not None else time.time()
    return key.invalid_at(datetime.fromtimestamp(when, UTC))


def _signed_payload(parts: list[bytes], canonical: bool, key: PublicKey) -> bytes | None:
    """The payload, if every part has its one encoding and ``key``'s signature verifies."""
    header_segment, payload_segment, signature_segment = parts
    if not (canonical and len(payload_segment) <= _MAX_SEGMENT_BYTES):
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
    header, canonical = _header_of(parts[0], _MAX_SIGNED_HEADER_BYTES)
    if header.get("typ") != SIGNED_TYPE:
        # An envelope's inner JWS (typ JOSE), an audit checkpoint: not meant to travel alone.
        raise EnvelopeRejected(Kind.MALFORMED, f"not a signed message (typ is not {SIGNED_TYPE})")
    header, payload = _verify_parts(parts, header, canonical, public, _SIGNED_JWS)
    if header.get("topic") != topic:
        raise EnvelopeRejected(
            Kind.WRONG_TOPIC, f"signed for topic {header.get('topic')!r}, read from {topic!r}"
        )
    return SignedMessage(
        payload=payload,
        content_type=_checked_content_type(header),
        sender=str(header["iss"]),
        topic=topic,
        issued_at=math.floor(header["iat"]),
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
        try:
            return self._open(sealed, topic, position, accepted_at, check_replay)
        except UnknownKeyId as unknown:
            # Published a moment ago (a rotation used at once, an import): look at the key
            # files now rather than at the next recheck, before refusing for good (review
            # stop 39-U, U1; each time: a stat, stop 39-S, S1). Nothing was remembered of
            # the record yet: the replay memory is written only once everything else holds.
            if not self._keys.look_again():
                raise unknown.dated(self._keys.read_at) from None
        try:
            return self._open(sealed, topic, position, accepted_at, check_replay)
        except UnknownKeyId as unknown:
            raise unknown.dated(self._keys.read_at) from None

    def _open(
        self,
        sealed: bytes,
        topic: str,
        position: str | None,
        accepted_at: float | None,
        check_replay: bool,
    ) -> OpenedMessage:
        signed = self._decrypt(sealed, accepted_at)
        header, payload = verify_jws(signed, self._keys.public, accepted_at=accepted_at)
        return self._check_claims(
            header, payload, topic, position, accepted_at, check_replay=check_replay
        )

    # -- outer layer: confidentiality ----------------------------------------------------

    def _decrypt(self, sealed: bytes, accepted_at: float | None) -> bytes:
        if sealed.count(b".") != 4:
            raise EnvelopeRejected(Kind.MALFORMED, "not a compact JWE (five parts expected)")
        parts = sealed.split(b".")
        header, canonical = _header_of(parts[0], _MAX_SEALED_HEADER_BYTES)
        if header.get("alg") != KEY_WRAP_ALG or header.get("enc") != CONTENT_ALG:
            raise EnvelopeRejected(
                Kind.DISALLOWED_ALG,
                f"encryption {header.get('alg')!r}/{header.get('enc')!r} is not allowed",
            )
        kid = str(header.get("kid"))
        key = self._decryption_key(kid, accepted_at)
        problem = _JWE.problem(header)
        if problem is not None:
            raise EnvelopeRejected(
                Kind.HEADER_REFUSED, f"encrypted to {kid!r}, but its protected header {problem}"
            )
        try:
            return _decrypted(parts, header, canonical, _private(key))
        except (ValueError, TypeError, KeyError, InvalidUnwrap, InvalidTag):
            # ValueError covers a point off the curve, bad base64url and wrong lengths.
            raise EnvelopeRejected(
                Kind.DECRYPTION_FAILED, f"cannot decrypt with {kid!r} (tampered or corrupt)"
            ) from None

    def _decryption_key(self, kid: str, accepted_at: float | None) -> ECKey:
        """Our private key ``kid``: an active one, or one retired after the broker accepted
        the record (a backlog encrypted to it before a rotation)."""
        key = self._keys.decryption_keys.get(kid)
        if key is not None:
            return key
        retired = self._keys.retired_decryption_keys.get(kid)
        pruned = self._keys.pruned_decryption_keys.get(kid) if retired is None else None
        if pruned is not None:
            # Its public part still names it: a late record gets the precise reason, not
            # "unknown key" (review stop 38-s: keys prune).
            gone = retired_for(pruned.public, accepted_at) or pruned.describe()
            retired_key = pruned.public.status is KeyStatus.RETIRED
            kind = Kind.RETIRED_KEY if retired_key else Kind.UNKNOWN_KID
            raise EnvelopeRejected(kind, f"encrypted to key {kid!r}, which {gone}")
        if retired is None:
            raise UnknownKeyId(
                f"encrypted to key {kid!r}, not a key of {self.party}", f"{self.party}.jwk"
            )
        why = retired_for(retired.public, accepted_at)
        if why is not None:
            raise EnvelopeRejected(Kind.RETIRED_KEY, f"encrypted to key {kid!r}, which {why}")
        return retired.key

    # -- inner layer: origin and integrity (verify_jws), then the claims ---------------------

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
        audience = header["aud"]
        if audience != self.party and audience != [self.party]:
            # RFC 7519 section 4.1.3 lets ``aud`` be an array; the one the hub accepts names
            # this reader alone (a message for several is not one only it may act on).
            raise EnvelopeRejected(
                Kind.WRONG_RECIPIENT, f"addressed to {audience!r:.80}, not {self.party!r} alone"
            )
        # The rule checked every claim's type: NumericDates are finite numbers.
        issued_at: float = header["iat"]
        expires_at: float = header["exp"]
        not_before: float | None = header.get("nbf")
        message_id = str(header["jti"])
        kind = _checked_content_type(header)
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
            # Said as the sender's clock runs: ahead ("in the future") or behind, never a
            # negative age (review stop 38, D5).
            raise EnvelopeRejected(
                Kind.IAT_SKEW,
                f"issued {int(issued_at - now)}s in the future of when it was {when}, "
                f"beyond {skew}s"
                if issued_at > now
                else f"issued {int(now - issued_at)}s before it was {when}, beyond {skew}s",
            )
        if not_before is not None and not_before - skew > now:
            raise EnvelopeRejected(
                Kind.NOT_YET_VALID,
                f"not valid before {int(not_before - now)}s after it was {when}, beyond {skew}s",
            )
        # A message opens only within the skew of its ``iat``, so an ``exp`` further than
        # the policy's lifetime widens nothing; its id is remembered until the lifetime
        # the policy allows, not for as long as a sender writes (an ``exp`` years ahead
        # would otherwise keep it in every replay memory for years).
        accept_until = math.ceil(min(expires_at, issued_at + self._policy.lifetime_s) + skew)
        opened = OpenedMessage(
            payload=payload,
            content_type=kind,
            sender=sender,
            recipient=self.party,
            topic=topic,
            message_id=message_id,
            issued_at=math.floor(issued_at),
            signing_kid=str(header["kid"]),
            accept_until=accept_until,
        )
        if check_replay:
            self.record_sighting(opened, position=position, accepted_at=accepted_at)
        return opened

    def record_sighting(
        self, message: OpenedMessage, *, position: str | None, accepted_at: float | None
    ) -> None:
        # Without a position every second sighting is a replay.
        where = position or uuid.uuid4().hex
        if not self._replay.first_sighting(
            message.replay_id,
            message.accept_until,
            where,
            accepted_at,
            known_before_as=message.message_id,  # as a memory kept it before stop 48
        ):
            raise EnvelopeRejected(
                Kind.REPLAY, f"message {message.message_id} was already received"
            )


def _checked_content_type(header: Mapping[str, Any]) -> ContentType:
    """The content type of a header its rule admitted (which checked ``cty``)."""
    kind = content_type(header.get("cty"))
    if kind is None:  # pragma: no cover - every rule requires a content type
        raise EnvelopeRejected(Kind.HEADER_REFUSED, "protected header has no content type")
    return kind


def _decrypted(
    parts: list[bytes], header: dict[str, Any], canonical: bool, key: ec.EllipticCurvePrivateKey
) -> bytes:
    """The plaintext of a sealed message whose algorithms and key id were accepted.
    Raises ValueError, TypeError, ``InvalidUnwrap`` or ``InvalidTag``."""
    if not (canonical and len(parts[3]) <= _MAX_SEGMENT_BYTES):
        raise ValueError("a part in a non-canonical encoding, or too large")
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
