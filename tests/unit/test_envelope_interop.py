"""The envelope speaks standard JOSE: two other implementations read what it seals, and it
reads what they seal (ADR 0016: the envelope is written on pyca ``cryptography`` itself).

jwcrypto and joserfc are independent of the envelope's code; each direction is checked
with both, on the contract's own headers (section 5), for the envelope and for a
signed-only message. The primitives are checked against the RFCs' own figures.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jwe as joserfc_jwe
from joserfc import jws as joserfc_jws
from joserfc.jwe import JWERegistry
from joserfc.jws import JWSRegistry
from jwcrypto import jwe as jwcrypto_jwe
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws

from gun_contract.envelope import ContentType
from gun_contract.security.jose_compact import b64decode, b64encode, concat_kdf
from gun_contract.security.jose_envelope import SIGNED_TYPE, verify_signed
from gun_contract.security.keystore import PartyKeys
from gun_contract.topics import topic_registry
from tests.conftest import envelope_of
from tests.forgery import claims, decryption_key, encryption_key, signing_key

TOPICS = topic_registry("gun", ["cites", "dga", "dgal"])
REQUESTS_DGAL = TOPICS.requests("dgal")
PAYLOAD = '{"reference": "26FR000690I0000012", "note": "é"}'.encode()
OUTER = ("alg", "enc", "kid", "cty", "epk")
INNER = ("alg", "kid", "typ", "cty", "iss", "aud", "iat", "exp", "jti", "topic")
# joserfc refuses header members it does not know unless told otherwise.
_JOSERFC_JWS = JWSRegistry(strict_check_header=False, algorithms=["ES256"])
_JOSERFC_JWE = JWERegistry(strict_check_header=False, algorithms=["ECDH-ES+A256KW", "A256GCM"])


def seal_request(keys_dir: Path) -> bytes:
    return envelope_of("hub", TOPICS, keys_dir).seal(
        PAYLOAD, recipient="dgal", topic=REQUESTS_DGAL, content_type=ContentType.JSON
    )


def jwcrypto_key(keys_dir: Path, party: str, *, private: bool) -> jwcrypto_jwk.JWK:
    keys = PartyKeys.load(keys_dir, party)
    if private:
        [key] = keys.decryption_keys.values()
    else:
        key = keys.signing_key
    return jwcrypto_jwk.JWK(**key.as_dict(private=private))


def contract_header(keys_dir: Path) -> dict[str, Any]:
    return {
        "alg": "ES256",
        "kid": signing_key(keys_dir, "hub").kid,
        **claims(iss="hub", aud="dgal", topic=REQUESTS_DGAL),
    }


def outer_header(keys_dir: Path) -> dict[str, str]:
    kid = str(encryption_key(keys_dir, "dgal").kid)
    return {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": kid, "cty": "JOSE"}


# -- what the envelope seals, others open ----------------------------------------------------


def test_jwcrypto_decrypts_and_verifies_what_the_envelope_seals(keys_dir: Path) -> None:
    outer = jwcrypto_jwe.JWE()
    outer.allowed_algs = ["ECDH-ES+A256KW", "A256GCM"]
    outer.deserialize(
        seal_request(keys_dir).decode(), key=jwcrypto_key(keys_dir, "dgal", private=True)
    )
    assert tuple(outer.jose_header) == OUTER
    inner = jwcrypto_jws.JWS()
    inner.allowed_algs = ["ES256"]
    inner.deserialize(bytes(outer.payload).decode())
    inner.verify(jwcrypto_key(keys_dir, "hub", private=False))
    assert inner.payload == PAYLOAD
    assert tuple(inner.jose_header) == INNER
    assert (inner.jose_header["iss"], inner.jose_header["aud"]) == ("hub", "dgal")


def test_joserfc_decrypts_and_verifies_what_the_envelope_seals(keys_dir: Path) -> None:
    outer = joserfc_jwe.decrypt_compact(
        seal_request(keys_dir), decryption_key(keys_dir, "dgal"), registry=_JOSERFC_JWE
    )
    assert tuple(outer.protected) == OUTER
    inner = joserfc_jws.deserialize_compact(
        outer.plaintext or b"", signing_key(keys_dir, "hub"), registry=_JOSERFC_JWS
    )
    assert inner.payload == PAYLOAD
    assert tuple(inner.headers()) == INNER
    assert inner.headers()["topic"] == REQUESTS_DGAL


def test_both_verify_a_signed_only_message(keys_dir: Path) -> None:
    signed = envelope_of("dga", TOPICS, keys_dir).sign(
        PAYLOAD, topic=TOPICS.ops_health, content_type=ContentType.JSON
    )
    by_jwcrypto = jwcrypto_jws.JWS()
    by_jwcrypto.allowed_algs = ["ES256"]
    by_jwcrypto.deserialize(signed.decode())
    by_jwcrypto.verify(jwcrypto_key(keys_dir, "dga", private=False))
    by_joserfc = joserfc_jws.deserialize_compact(
        signed, signing_key(keys_dir, "dga"), registry=_JOSERFC_JWS
    )
    assert by_jwcrypto.payload == by_joserfc.payload == PAYLOAD
    assert by_joserfc.headers()["typ"] == SIGNED_TYPE


# -- what others seal with the contract's headers, the envelope opens ------------------------


def test_the_envelope_opens_what_jwcrypto_seals(keys_dir: Path) -> None:
    inner = jwcrypto_jws.JWS(PAYLOAD)
    inner.add_signature(
        jwcrypto_jwk.JWK(**signing_key(keys_dir, "hub").as_dict(private=True)),
        protected=json.dumps(contract_header(keys_dir)),
    )
    outer = jwcrypto_jwe.JWE(
        inner.serialize(compact=True).encode(), protected=json.dumps(outer_header(keys_dir))
    )
    outer.add_recipient(jwcrypto_jwk.JWK(**encryption_key(keys_dir, "dgal").as_dict(private=False)))
    sealed = outer.serialize(compact=True).encode()

    opened = envelope_of("dgal", TOPICS, keys_dir).open(sealed, topic=REQUESTS_DGAL)
    assert (opened.payload, opened.sender, opened.recipient) == (PAYLOAD, "hub", "dgal")


def test_the_envelope_opens_what_joserfc_seals(keys_dir: Path) -> None:
    signed = joserfc_jws.serialize_compact(
        contract_header(keys_dir), PAYLOAD, signing_key(keys_dir, "hub"), registry=_JOSERFC_JWS
    )
    sealed = joserfc_jwe.encrypt_compact(
        outer_header(keys_dir), signed, encryption_key(keys_dir, "dgal"), registry=_JOSERFC_JWE
    ).encode()

    opened = envelope_of("dgal", TOPICS, keys_dir).open(sealed, topic=REQUESTS_DGAL)
    assert (opened.payload, opened.sender, opened.recipient) == (PAYLOAD, "hub", "dgal")


def test_the_envelope_opens_what_jwcrypto_seals_with_party_infos(keys_dir: Path) -> None:
    """``apu`` and ``apv`` (RFC 7518 section 4.6.1) enter the key derivation when present:
    nobody of ours sends them, a standard sender may."""
    inner = jwcrypto_jws.JWS(PAYLOAD)
    inner.add_signature(
        jwcrypto_jwk.JWK(**signing_key(keys_dir, "hub").as_dict(private=True)),
        protected=json.dumps(contract_header(keys_dir)),
    )
    header = {
        **outer_header(keys_dir),
        "apu": b64encode(b"hub").decode(),
        "apv": b64encode(b"dgal").decode(),
    }
    outer = jwcrypto_jwe.JWE(inner.serialize(compact=True).encode(), protected=json.dumps(header))
    outer.add_recipient(jwcrypto_jwk.JWK(**encryption_key(keys_dir, "dgal").as_dict(private=False)))

    opened = envelope_of("dgal", TOPICS, keys_dir).open(
        outer.serialize(compact=True).encode(), topic=REQUESTS_DGAL
    )
    assert opened.payload == PAYLOAD


def test_a_signed_only_message_of_jwcrypto_verifies(keys_dir: Path) -> None:
    signed = jwcrypto_jws.JWS(PAYLOAD)
    header = {
        "alg": "ES256",
        "kid": signing_key(keys_dir, "dga").kid,
        "typ": SIGNED_TYPE,
        "cty": "application/json",
        "iss": "dga",
        "iat": int(time.time()),
        "topic": TOPICS.ops_health,
    }
    signed.add_signature(
        jwcrypto_jwk.JWK(**signing_key(keys_dir, "dga").as_dict(private=True)),
        protected=json.dumps(header),
    )
    message = verify_signed(
        signed.serialize(compact=True).encode(),
        topic=TOPICS.ops_health,
        public=PartyKeys.load(keys_dir, "hub").public,
    )
    assert (message.payload, message.sender) == (PAYLOAD, "dga")


# -- the primitives, against the RFCs ----------------------------------------------------------


def test_the_signature_travels_as_r_then_s_not_der(keys_dir: Path) -> None:
    """RFC 7518 section 3.4: the 32 bytes of r, then the 32 bytes of s."""
    signed = envelope_of("dga", TOPICS, keys_dir).sign(
        PAYLOAD, topic=TOPICS.ops_health, content_type=ContentType.JSON
    )
    header, payload, signature = signed.split(b".")
    raw = b64decode(signature)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public = signing_key(keys_dir, "dga").public_key
    public.verify(der, header + b"." + payload, ec.ECDSA(hashes.SHA256()))  # raises if not


def test_the_key_derivation_gives_the_figures_of_rfc_7518_appendix_c() -> None:
    """Appendix C: Alice's ephemeral key agreed with Bob's, for A128GCM, apu "Alice", apv
    "Bob": the shared secret Z and the derived key the RFC prints."""

    def integer(text: str) -> int:
        return int.from_bytes(b64decode(text.encode()), "big")

    alice = ec.derive_private_key(
        integer("0_NxaRPUMQoAJt50Gz8YiTr8gRTwyEaCumd-MToTmIo"), ec.SECP256R1()
    )
    bob = ec.EllipticCurvePublicNumbers(
        integer("weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ"),
        integer("e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck"),
        ec.SECP256R1(),
    ).public_key()
    shared = alice.exchange(ec.ECDH(), bob)
    assert list(shared[:4]) == [158, 86, 217, 29]
    assert (
        b64encode(concat_kdf(shared, "A128GCM", b"Alice", b"Bob", 128)) == b"VqqN6vgjbSBcIijNcacQGg"
    )


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [(b"", b""), (b"QQ", b"A"), (b"QUI", b"AB"), (b"QUJD", b"ABC"), (b"-_8", b"\xfb\xff")],
)
def test_base64url_without_padding_decodes(encoded: bytes, decoded: bytes) -> None:
    assert b64decode(encoded) == decoded
    assert b64encode(decoded) == encoded


@pytest.mark.parametrize(
    "encoded",
    [b"QQ==", b"QR", b"QUJ", b"Q", b"+/8", b"QU I", b"QU\nI", b"\xc3\xa9AA"],
    ids=[
        "padding",
        "non-canonical-2",
        "non-canonical-3",
        "one-char",
        "standard",
        "space",
        "newline",
        "non-ascii",
    ],
)
def test_base64url_has_one_encoding_per_value(encoded: bytes) -> None:
    """RFC 7515 section 2: no padding, no other alphabet, no spare bits set."""
    with pytest.raises(ValueError, match="base64"):
        b64decode(encoded)
