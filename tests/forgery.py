"""Building envelopes the way an attacker or a broken partner would, for rejection tests.

Uses the JOSE library directly so that headers, keys and algorithms can be anything.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

from joserfc import jwe, jws
from joserfc.jwe import JWERegistry
from joserfc.jwk import ECKey, OctKey
from joserfc.jws import JWSRegistry

from gun_contract.security.keystore import PartyKeys

_OPEN_JWS = JWSRegistry(strict_check_header=False, algorithms=["ES256", "HS256", "none"])
_OPEN_JWE = JWERegistry(strict_check_header=False, algorithms=["ECDH-ES+A256KW", "A256GCM"])


def kid_of(key: ECKey) -> str:
    """The key id of a key the key store made: each has one (joserfc's is optional)."""
    kid = key.kid
    assert kid is not None, "the key store made a key without a key id"
    return kid


def signing_key(keys_dir: Path, party: str) -> ECKey:
    return PartyKeys.load(keys_dir, party).signing_key


def encryption_key(keys_dir: Path, party: str) -> ECKey:
    """The public key others encrypt to ``party`` with."""
    keys = PartyKeys.load(keys_dir, party)
    return keys.encryption_key_for(party).key


def decryption_key(keys_dir: Path, party: str) -> ECKey:
    """``party``'s own private key for what is encrypted to it."""
    [key] = PartyKeys.load(keys_dir, party).decryption_keys.values()
    return key


def claims(
    *, iss: str, aud: str, topic: str, cty: str = "application/json", **overrides: Any
) -> dict[str, Any]:
    now = int(time.time())
    header = {
        "typ": "JOSE",
        "cty": cty,
        "iss": iss,
        "aud": aud,
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "topic": topic,
    }
    header.update(overrides)
    return header


def sign(header: dict[str, Any], payload: bytes, key: ECKey | OctKey, alg: str = "ES256") -> str:
    full = {"alg": alg, "kid": key.kid, **header}
    return jws.serialize_compact(full, payload, key, algorithms=[alg], registry=_OPEN_JWS)


def encrypt(signed: str | bytes, key: ECKey) -> bytes:
    header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": key.kid, "cty": "JOSE"}
    return jwe.encrypt_compact(
        header, signed, key, algorithms=["ECDH-ES+A256KW", "A256GCM"], registry=_OPEN_JWE
    ).encode()


def b64(data: dict[str, Any] | bytes) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def with_header(compact: bytes, header: dict[str, Any]) -> bytes:
    """The same compact serialization under another protected header."""
    parts = compact.split(b".")
    parts[0] = b64(header).encode()
    return b".".join(parts)


def flip_byte(compact: bytes, part: int) -> bytes:
    """Change one byte inside one part (0-based) of a compact serialization."""
    parts = compact.split(b".")
    raw = bytearray(base64.urlsafe_b64decode(parts[part] + b"=" * (-len(parts[part]) % 4)))
    raw[len(raw) // 2] ^= 0x01
    parts[part] = b64(bytes(raw)).encode()
    return b".".join(parts)
