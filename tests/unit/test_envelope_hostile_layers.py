"""Hostile envelopes against the checks the JOSE library used to make (ADR 0016).

The envelope reads the JOSE layers itself now: each check the library made is made here
too. Past the key id, a protected header outside the policy is HEADER_REFUSED, naming
what (the inner one once its signature verifies; found by review, stop 36: it was called
a bad signature); anything else wrong with the outer layer is DECRYPTION_FAILED and with
the inner one BAD_SIGNATURE; no input raises anything but :class:`EnvelopeRejected`.
Several forgeries here are properly sealed or properly signed: only the check they are
named after stops them.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gun_contract.envelope import ContentType, EnvelopeRejected
from gun_contract.envelope import EnvelopeRejectionKind as Kind
from gun_contract.security import jose_compact
from gun_contract.security.jose_compact import b64decode, b64encode
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.topics import topic_registry
from tests.conftest import envelope_of
from tests.forgery import claims, encrypt, encryption_key, sign, signing_key

TOPICS = topic_registry("gun", ["cites", "dga", "dgal"])
REQUESTS_DGAL = TOPICS.requests("dgal")
PAYLOAD = b'{"reference": "26FR000690I0000012"}'


def refused(keys_dir: Path, sealed: bytes) -> Kind:
    with pytest.raises(EnvelopeRejected) as rejection:
        envelope_of("dgal", TOPICS, keys_dir).open(sealed, topic=REQUESTS_DGAL)
    return rejection.value.kind


def seal_request(keys_dir: Path) -> bytes:
    return envelope_of("hub", TOPICS, keys_dir).seal(
        PAYLOAD, recipient="dgal", topic=REQUESTS_DGAL, content_type=ContentType.JSON
    )


def signed_request(keys_dir: Path, **overrides: Any) -> bytes:
    """The inner JWS of a request, properly signed by the hub, with ``overrides`` in its
    header (made with the envelope's own signing: JOSE libraries refuse to write these)."""
    key = signing_key(keys_dir, "hub")
    header = {"alg": "ES256", "kid": key.kid, **claims(iss="hub", aud="dgal", topic=REQUESTS_DGAL)}
    header.update(overrides)
    assert key.private_key is not None
    return jose_compact.sign_compact(header, PAYLOAD, key.private_key)


def sealed_with_header(keys_dir: Path, signed: str | bytes, **members: Any) -> bytes:
    """Properly sealed to DGAL, under an outer header with ``members`` added."""
    key = encryption_key(keys_dir, "dgal")
    header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": key.kid, "cty": "JOSE", **members}
    plaintext = signed.encode() if isinstance(signed, str) else signed
    return jose_compact.encrypt_compact(header, plaintext, key.public_key)


def with_outer_header(sealed: bytes, change: dict[str, Any]) -> bytes:
    parts = sealed.split(b".")
    header = json.loads(b64decode(parts[0]))
    header.update(change)
    parts[0] = b64encode(json.dumps({k: v for k, v in header.items() if v is not None}).encode())
    return b".".join(parts)


def with_part(sealed: bytes, index: int, raw: bytes) -> bytes:
    parts = sealed.split(b".")
    parts[index] = b64encode(raw)
    return b".".join(parts)


# -- the outer layer: DECRYPTION_FAILED ------------------------------------------------------


def test_a_sealed_message_that_opens_is_the_baseline(keys_dir: Path) -> None:
    """The forgeries below change one thing of what the helpers make: unchanged, it opens."""
    dgal = envelope_of("dgal", TOPICS, keys_dir)
    assert dgal.open(sealed_with_header(keys_dir, signed_request(keys_dir)), topic=REQUESTS_DGAL)
    assert dgal.open(seal_request(keys_dir), topic=REQUESTS_DGAL).payload == PAYLOAD


def test_an_ephemeral_key_off_the_curve_is_refused(keys_dir: Path) -> None:
    sealed = seal_request(keys_dir)
    epk = json.loads(b64decode(sealed.split(b".")[0]))["epk"]
    y = int.from_bytes(b64decode(epk["y"].encode()), "big")
    off_curve = {**epk, "y": b64encode(((y + 1) % 2**256).to_bytes(32, "big")).decode()}
    # What refuses it is loading the point, before any key agreement.
    with pytest.raises(ValueError, match="EC key"):
        jose_compact.ephemeral_key(off_curve)
    assert (
        refused(keys_dir, with_outer_header(sealed, {"epk": off_curve})) is Kind.DECRYPTION_FAILED
    )


@pytest.mark.parametrize(
    ("epk", "kind"),
    [
        (None, Kind.HEADER_REFUSED),  # the header lacks it
        ("not a key", Kind.HEADER_REFUSED),  # the header holds it of the wrong type
        ({"kty": "EC", "crv": "P-384"}, Kind.DECRYPTION_FAILED),
        ({"kty": "OKP", "crv": "X25519"}, Kind.DECRYPTION_FAILED),
        ({"kty": "EC", "crv": "P-256", "x": "AAAA"}, Kind.DECRYPTION_FAILED),
        ({"kty": "EC", "crv": "P-256", "x": 7, "y": 7}, Kind.DECRYPTION_FAILED),
    ],
    ids=["missing", "text", "P-384", "X25519", "short-coordinates", "numbers"],
)
def test_an_ephemeral_key_that_is_not_a_p256_point_is_refused(
    keys_dir: Path, epk: Any, kind: Kind
) -> None:
    sealed = with_outer_header(seal_request(keys_dir), {"epk": epk})
    assert refused(keys_dir, sealed) is kind


def test_an_ephemeral_key_sent_with_its_private_part_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).private_numbers()
    epk = {
        "kty": "EC",
        "crv": "P-256",
        "x": b64encode(key.public_numbers.x.to_bytes(32, "big")).decode(),
        "y": b64encode(key.public_numbers.y.to_bytes(32, "big")).decode(),
    }
    assert jose_compact.ephemeral_key(epk) is not None
    with pytest.raises(ValueError, match="public key"):
        jose_compact.ephemeral_key(
            {**epk, "d": b64encode(key.private_value.to_bytes(32, "big")).decode()}
        )


@pytest.mark.parametrize(
    ("index", "raw"),
    [
        (1, b"\x00" * 32),  # encrypted key: 40 bytes for a wrapped 256-bit key
        (1, b""),
        (2, b"\x00" * 16),  # IV: 96 bits
        (2, b""),
        (4, b"\x00" * 12),  # tag: 128 bits
        (4, b""),
        (3, b""),
    ],
    ids=["key-32", "key-empty", "iv-16", "iv-empty", "tag-12", "tag-empty", "no-ciphertext"],
)
def test_wrong_lengths_are_refused(keys_dir: Path, index: int, raw: bytes) -> None:
    assert (
        refused(keys_dir, with_part(seal_request(keys_dir), index, raw)) is Kind.DECRYPTION_FAILED
    )


@pytest.mark.parametrize(
    "members",
    [
        {"zip": "DEF"},
        {"crit": ["exp"], "exp": 1},
        {"unknown": "member"},
        {"apu": 5},
        {"x5u": "file:///etc/passwd"},
    ],
    ids=["zip", "crit", "unknown", "apu-number", "x5u-not-url"],
)
def test_an_outer_header_outside_the_rules_is_refused_though_it_decrypts(
    keys_dir: Path, members: dict[str, Any]
) -> None:
    signed = signed_request(keys_dir)
    plaintext = zlib.compress(signed)[2:-4] if "zip" in members else signed
    sealed = sealed_with_header(keys_dir, plaintext, **members)
    assert refused(keys_dir, sealed) is Kind.HEADER_REFUSED


def test_non_canonical_base64url_in_a_part_is_refused(keys_dir: Path) -> None:
    """One value, one encoding: a part padded with "=" decodes to the same bytes but is
    not what was sealed."""
    parts = seal_request(keys_dir).split(b".")
    parts[2] += b"="
    assert refused(keys_dir, b".".join(parts)) is Kind.DECRYPTION_FAILED


# -- the inner layer: HEADER_REFUSED, BAD_SIGNATURE -----------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"unknown": "member"},
        {"crit": ["sub"], "sub": "FR1"},
        {"b64": False},
        {"iat": "now"},
        {"exp": True},
        {"iat": float("nan")},
        {"jti": None},
        {"jku": "not a url"},
    ],
    ids=["unknown", "crit", "b64", "iat-text", "exp-bool", "iat-nan", "jti-null", "jku"],
)
def test_a_signed_header_outside_the_rules_is_refused_though_it_verifies(
    keys_dir: Path, overrides: dict[str, Any]
) -> None:
    sealed = encrypt(signed_request(keys_dir, **overrides), encryption_key(keys_dir, "dgal"))
    assert refused(keys_dir, sealed) is Kind.HEADER_REFUSED


def test_a_signed_header_missing_a_claim_is_refused(keys_dir: Path) -> None:
    header = claims(iss="hub", aud="dgal", topic=REQUESTS_DGAL)
    del header["jti"]
    signed = sign(header, PAYLOAD, signing_key(keys_dir, "hub"))
    assert (
        refused(keys_dir, encrypt(signed, encryption_key(keys_dir, "dgal"))) is Kind.HEADER_REFUSED
    )


@pytest.mark.parametrize(
    ("message_id", "reason"),
    [
        # No text at all: its header is refused as JSON, before any claim is read
        # (stop 37: headers are parsed as untrusted JSON, which a lone surrogate is not).
        ("\ud800", "protected header is not JSON"),
        ("", "jti: not 1 to 128 printable characters"),
        ("two\nlines", "jti: not 1 to 128 printable characters"),
        ("x" * 129, "jti: not 1 to 128 printable characters"),
        ("tab\there", "jti: not 1 to 128 printable characters"),
    ],
    ids=["lone-surrogate", "empty", "newline", "too-long", "tab"],
)
def test_a_message_id_that_is_not_a_short_printable_text_is_malformed(
    keys_dir: Path, message_id: str, reason: str
) -> None:
    """A ``jti`` is the key of the hub's claim and of every replay memory: one that is
    not text (a lone surrogate cannot be encoded) held its declaration, and every
    declaration after it on its partition, for good (found by review in stop 32)."""
    sealed = encrypt(signed_request(keys_dir, jti=message_id), encryption_key(keys_dir, "dgal"))
    with pytest.raises(EnvelopeRejected) as rejection:
        envelope_of("dgal", TOPICS, keys_dir).open(sealed, topic=REQUESTS_DGAL)
    assert rejection.value.kind is Kind.MALFORMED
    assert reason in str(rejection.value)


def test_a_message_id_of_128_printable_characters_any_script_is_accepted(keys_dir: Path) -> None:
    message_id = ("déclaration-" * 11)[:128]
    sealed = encrypt(signed_request(keys_dir, jti=message_id), encryption_key(keys_dir, "dgal"))
    opened = envelope_of("dgal", TOPICS, keys_dir).open(sealed, topic=REQUESTS_DGAL)
    assert opened.message_id == message_id


def _signing_input(keys_dir: Path) -> bytes:
    header = {
        "alg": "ES256",
        "kid": signing_key(keys_dir, "hub").kid,
        **claims(iss="hub", aud="dgal", topic=REQUESTS_DGAL),
    }
    return jose_compact.json_segment(header) + b"." + b64encode(PAYLOAD)


def _es256(keys_dir: Path, signing_input: bytes) -> bytes:
    """The hub's signature of ``signing_input`` as JOSE sends it (r || s, base64url)."""
    private = signing_key(keys_dir, "hub").private_key
    assert private is not None
    r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def test_a_der_encoded_signature_is_refused(keys_dir: Path) -> None:
    """A valid ECDSA signature, in the X.509 form rather than JOSE's r || s."""
    signing_input = _signing_input(keys_dir)
    private = signing_key(keys_dir, "hub").private_key
    assert private is not None
    der = private.sign(signing_input, ec.ECDSA(hashes.SHA256()))
    signed = signing_input + b"." + b64encode(der)
    assert (
        refused(keys_dir, encrypt(signed, encryption_key(keys_dir, "dgal"))) is Kind.BAD_SIGNATURE
    )


@pytest.mark.parametrize("change", [b"", b"\x00"], ids=["63-bytes", "65-bytes"])
def test_a_signature_of_the_wrong_length_is_refused(keys_dir: Path, change: bytes) -> None:
    signed = signed_request(keys_dir)
    head, signature = signed.rsplit(b".", 1)
    raw = b64decode(signature)
    raw = raw[:-1] if not change else raw + change
    forged = head + b"." + b64encode(raw)
    assert (
        refused(keys_dir, encrypt(forged, encryption_key(keys_dir, "dgal"))) is Kind.BAD_SIGNATURE
    )


def test_a_payload_signed_in_a_non_canonical_encoding_is_refused(keys_dir: Path) -> None:
    """The signature covers the text as sent; the payload must still have one encoding."""
    header_segment = _signing_input(keys_dir).split(b".")[0]
    payload_segment = b64encode(b"AB")  # "QUI"
    sloppy = payload_segment[:-1] + b"J"  # decodes to the same bytes, spare bits set
    signing_input = header_segment + b"." + sloppy
    forged = signing_input + b"." + _es256(keys_dir, signing_input)
    assert (
        refused(keys_dir, encrypt(forged, encryption_key(keys_dir, "dgal"))) is Kind.BAD_SIGNATURE
    )


# -- anything at all: a rejection, never another exception ----------------------------------


@pytest.fixture(scope="module")
def dgal_and_sealed(keys_dir: Path) -> tuple[JoseEnvelope, bytes]:
    return envelope_of("dgal", TOPICS, keys_dir), seal_request(keys_dir)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(position=st.integers(min_value=0), value=st.integers(min_value=0, max_value=255))
def test_any_byte_changed_is_a_rejection(
    dgal_and_sealed: tuple[JoseEnvelope, bytes], position: int, value: int
) -> None:
    dgal, sealed = dgal_and_sealed
    position %= len(sealed)
    changed = sealed[:position] + bytes([value]) + sealed[position + 1 :]
    if changed == sealed:
        return
    with pytest.raises(EnvelopeRejected):
        dgal.open(changed, topic=REQUESTS_DGAL, check_replay=False)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    parts=st.lists(
        st.one_of(
            st.binary(max_size=80),
            st.sampled_from(
                [
                    b"e30",
                    b"W10",
                    b"bnVsbA",
                    b"eyJhbGciOiJFQ0RILUVTK0EyNTZLVyIsImVuYyI6IkEyNTZHQ00ifQ",
                ]
            ),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_any_bytes_are_a_rejection(
    dgal_and_sealed: tuple[JoseEnvelope, bytes], parts: list[bytes]
) -> None:
    dgal, _ = dgal_and_sealed
    with pytest.raises(EnvelopeRejected):
        dgal.open(b".".join(parts), topic=REQUESTS_DGAL)
