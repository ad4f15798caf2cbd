"""The JOSE primitives of the envelope, directly on pyca ``cryptography`` (ADR 0016).

Only what the contract uses (section 5), each as its RFC states it:

- base64url without padding, strict on reading (RFC 7515 section 2): no padding, no
  ``+`` or ``/``, no non-canonical last character, so one value has one encoding;
- ES256 (RFC 7518 section 3.4): ECDSA on P-256 with SHA-256, the signature travelling as
  the 64 bytes ``r || s``, not DER;
- ECDH-ES+A256KW (RFC 7518 section 4.6): ECDH between an ephemeral key and the
  recipient's, the Concat KDF of NIST SP 800-56A with SHA-256 (``AlgorithmID`` is the
  ``alg``, ``PartyUInfo``/``PartyVInfo`` the decoded ``apu``/``apv``, ``SuppPubInfo`` the
  key length in bits), and the content key wrapped with AES key wrap (RFC 3394);
- A256GCM (RFC 7518 section 5.3): a 96-bit IV, a 128-bit tag, the encoded protected
  header as additional authenticated data (RFC 7516 section 5.1, step 14).

The functions here check sizes and cryptography; which headers, algorithms and keys are
acceptable is the envelope's to decide (jose_envelope.py), before any of them is called.
Every failure is a :class:`ValueError` (or a ``cryptography`` exception the envelope
names), never a result: nothing half-checked comes out.

Key objects are the loaded ``cryptography`` keys: nothing is parsed per message but the
sender's ephemeral public key, and loading that point checks that it is on P-256.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import os
import struct
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

CURVE = ec.SECP256R1()
COORDINATE_BYTES = 32  # P-256: x, y, r and s are 32 bytes each
SIGNATURE_BYTES = 2 * COORDINATE_BYTES
CEK_BYTES = 32  # A256GCM
WRAPPED_CEK_BYTES = CEK_BYTES + 8  # RFC 3394: the key plus one 64-bit block
IV_BYTES = 12  # RFC 7518 section 5.3: a 96-bit IV
TAG_BYTES = 16  # and a 128-bit tag
KEK_BITS = 256  # A256KW

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_ECDH = ec.ECDH()

# -- base64url (RFC 7515 section 2) --------------------------------------------------------

_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
# The last character of an unpadded group of 2 (3) characters carries 4 (2) bits that must
# be zero: any other character is a second encoding of the same bytes.
_CANONICAL_LAST = {2: b"AQgw", 3: b"AEIMQUYcgkosw048"}


def b64encode(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=")


def b64decode(segment: bytes) -> bytes:
    """Decode base64url without padding; raises ValueError on anything else."""
    remainder = len(segment) % 4
    if remainder == 1:
        raise ValueError("not base64url (length)")
    if remainder and segment[-1] not in _CANONICAL_LAST[remainder]:
        raise ValueError("not base64url (non-canonical last character)")
    if b"+" in segment or b"/" in segment or b"=" in segment:
        raise ValueError("not base64url (standard alphabet or padding)")
    padded = segment.translate(_TO_STANDARD) + b"=" * (-len(segment) % 4)
    return binascii.a2b_base64(padded, strict_mode=True)


# One encoder for every header: json.dumps builds a new one per call when given options.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def json_segment(header: dict[str, Any]) -> bytes:
    """A protected header as it travels: compact ASCII JSON, base64url."""
    return b64encode(_COMPACT_JSON.encode(header).encode("ascii"))


# -- ES256 (RFC 7518 section 3.4) ---------------------------------------------------------


def sign_compact(header: dict[str, Any], payload: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """A compact JWS of ``payload`` under ``header`` (whose ``alg`` must say ES256)."""
    signing_input = json_segment(header) + b"." + b64encode(payload)
    r, s = decode_dss_signature(key.sign(signing_input, _ECDSA_SHA256))
    raw = r.to_bytes(COORDINATE_BYTES, "big") + s.to_bytes(COORDINATE_BYTES, "big")
    return signing_input + b"." + b64encode(raw)


def es256_verifies(signing_input: bytes, signature: bytes, key: ec.EllipticCurvePublicKey) -> bool:
    """Whether ``signature`` (``r || s``, 64 bytes) is ``key``'s over ``signing_input``."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    r = int.from_bytes(signature[:COORDINATE_BYTES], "big")
    s = int.from_bytes(signature[COORDINATE_BYTES:], "big")
    try:
        key.verify(encode_dss_signature(r, s), signing_input, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


# -- ECDH-ES+A256KW with A256GCM (RFC 7518 sections 4.6, 4.4 and 5.3) --------------------


def _length_prefixed(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def concat_kdf(shared: bytes, algorithm: str, apu: bytes, apv: bytes, bits: int) -> bytes:
    """The Concat KDF of RFC 7518 section 4.6.2 with SHA-256, for keys of up to 256 bits:
    one round, ``SHA-256(counter 1 || Z || OtherInfo)`` cut to ``bits``."""
    if not 0 < bits <= 256 or bits % 8:
        raise ValueError("the one-round Concat KDF gives keys of 8 to 256 bits")
    other_info = (
        _length_prefixed(algorithm.encode("ascii"))
        + _length_prefixed(apu)
        + _length_prefixed(apv)
        + struct.pack(">I", bits)
    )
    return hashlib.sha256(b"\x00\x00\x00\x01" + shared + other_info).digest()[: bits // 8]


def encrypt_compact(
    header: dict[str, Any], plaintext: bytes, recipient: ec.EllipticCurvePublicKey
) -> bytes:
    """A compact JWE of ``plaintext`` for ``recipient``: ``header`` (``alg``
    ECDH-ES+A256KW, ``enc`` A256GCM) gains the fresh ephemeral key as ``epk``."""
    ephemeral = ec.generate_private_key(CURVE)
    shared = ephemeral.exchange(_ECDH, recipient)
    point = ephemeral.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    epk = {
        "crv": "P-256",
        "x": b64encode(point[1 : 1 + COORDINATE_BYTES]).decode("ascii"),
        "y": b64encode(point[1 + COORDINATE_BYTES :]).decode("ascii"),
        "kty": "EC",
    }
    protected = json_segment({**header, "epk": epk})
    kek = concat_kdf(shared, header["alg"], b"", b"", KEK_BITS)
    cek = os.urandom(CEK_BYTES)
    iv = os.urandom(IV_BYTES)
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected)
    return b".".join(
        (
            protected,
            b64encode(aes_key_wrap(kek, cek)),
            b64encode(iv),
            b64encode(sealed[:-TAG_BYTES]),
            b64encode(sealed[-TAG_BYTES:]),
        )
    )


def ephemeral_key(epk: object) -> ec.EllipticCurvePublicKey:
    """The sender's ephemeral public key from ``epk``: an EC key on P-256, public only,
    whose point is on the curve (``cryptography`` checks it when loading)."""
    if not isinstance(epk, dict) or epk.get("kty") != "EC" or epk.get("crv") != "P-256":
        raise ValueError("epk is not an EC key on P-256")
    x, y = epk.get("x"), epk.get("y")
    if "d" in epk or not isinstance(x, str) or not isinstance(y, str):
        raise ValueError("epk is not a public key with two coordinates")
    x_bytes, y_bytes = b64decode(x.encode("ascii")), b64decode(y.encode("ascii"))
    if len(x_bytes) != COORDINATE_BYTES or len(y_bytes) != COORDINATE_BYTES:
        raise ValueError("epk coordinates are not 32 bytes each")
    return ec.EllipticCurvePublicKey.from_encoded_point(CURVE, b"\x04" + x_bytes + y_bytes)


def decrypt_compact(
    parts: list[bytes],
    algorithm: str,
    sender: ec.EllipticCurvePublicKey,
    apu: bytes,
    apv: bytes,
    key: ec.EllipticCurvePrivateKey,
) -> bytes:
    """The plaintext of the five ``parts`` of a compact JWE whose protected header was
    read and judged: agree with the ephemeral key ``sender``, unwrap, decrypt and
    authenticate. Raises ValueError, ``InvalidUnwrap`` or ``InvalidTag``."""
    protected, wrapped_segment, iv_segment, ciphertext_segment, tag_segment = parts
    wrapped = b64decode(wrapped_segment)
    iv = b64decode(iv_segment)
    tag = b64decode(tag_segment)
    if len(wrapped) != WRAPPED_CEK_BYTES or len(iv) != IV_BYTES or len(tag) != TAG_BYTES:
        raise ValueError("encrypted key, IV or tag of the wrong length")
    ciphertext = b64decode(ciphertext_segment)
    kek = concat_kdf(key.exchange(_ECDH, sender), algorithm, apu, apv, KEK_BITS)
    cek = aes_key_unwrap(kek, wrapped)
    return AESGCM(cek).decrypt(iv, ciphertext + tag, protected)
