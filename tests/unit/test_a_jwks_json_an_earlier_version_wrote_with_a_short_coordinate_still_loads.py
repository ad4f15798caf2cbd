"""A jwks.json an earlier version wrote still loads after the upgrade that refuses
coordinates not the full 32 bytes (fb5a520).

Before fb5a520 the key store took a coordinate of any length ``cryptography`` reads as the
number: ``keys import-public`` stored a partner's key as the partner's library exported
it. Libraries that write a coordinate as its minimal big-endian bytes (PyJWT's
``to_jwk`` before it padded EC coordinates, for one) drop a leading zero byte: one key in
128 has a 31-byte ``x`` or ``y``. Such an entry, sitting in jwks.json since its import,
now makes ``_parse_public`` refuse the whole file: every process of the hub (and the
gateway, and the CLI) fails to load its keys at the first start of the new version —
an outage of everything for one partner's key, with no migration and no way to say which
key to fix but the error. A key stored by an earlier version must not stop the keystore
loading (at most that key is refused or flagged).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from gun_contract.security.keystore import PUBLIC_JWKS, read_public_keys
from tests.unit.test_keys_import_standard_jwks import hub_machine


def _minimal(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def a_key_with_a_short_x() -> dict[str, str]:
    """A partner's encryption key as a minimal-bytes exporter writes it: x 31 bytes."""
    while True:
        numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
        if numbers.x < 1 << 248 and numbers.y >= 1 << 248:
            return {
                "kty": "EC",
                "crv": "P-256",
                "x": _minimal(numbers.x),
                "y": _minimal(numbers.y),
            }


def test_a_partner_key_an_earlier_import_stored_does_not_stop_the_keystore_loading(
    tmp_path: Path,
) -> None:
    hub = hub_machine(tmp_path)
    jwks = json.loads((hub / PUBLIC_JWKS).read_text())
    entry = a_key_with_a_short_x()
    assert len(base64.urlsafe_b64decode(entry["x"] + "=" * (-len(entry["x"]) % 4))) == 31
    # As an import of before fb5a520 wrote it (_clean_public plus party, status).
    jwks["keys"].append(
        {
            **entry,
            "kid": "dgal-enc-20250101T000000-abcdef",
            "use": "enc",
            "alg": "ECDH-ES+A256KW",
            "party": "dgal",
            "status": "active",
        }
    )
    (hub / PUBLIC_JWKS).write_text(json.dumps(jwks, indent=2))

    keys = read_public_keys(hub / PUBLIC_JWKS)
    assert any(key.party == "hub" for key in keys.values())
