"""A party's own key an earlier version kept with a short coordinate still loads.

ee071bd reads a public key's coordinates in their full 32 bytes (``_parse_public``), so
that "a key an earlier import kept shorter loads again". Only the public side: a party's
private key file is imported as written (``_private_keys``), and ``_check_matches``
compares the two by RFC 7638 thumbprint, which joserfc computes over the members as
written. A party whose key pair was written by a minimal-bytes exporter (one key in 128
has a 31-byte ``x``: each party makes its keys where it runs, contract section 5), the
same short ``x`` in its private file and in jwks.json, loaded before fb5a520; after
ee071bd the public entry is padded, the private one is not, and the process refuses to
start: "does not match the public key of that id", about its own, matching, key.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from gun_contract.security.keystore import PUBLIC_JWKS, PartyKeys
from tests.unit.test_keys_import_standard_jwks import hub_machine


def _minimal(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _full(number: int) -> str:
    return base64.urlsafe_b64encode(number.to_bytes(32, "big")).rstrip(b"=").decode()


def a_key_pair_with_a_short_x() -> dict[str, str]:
    while True:
        private = ec.generate_private_key(ec.SECP256R1())
        numbers = private.public_key().public_numbers()
        if numbers.x < 1 << 248 and numbers.y >= 1 << 248:
            return {
                "x": _minimal(numbers.x),
                "y": _minimal(numbers.y),
                "d": _full(private.private_numbers().private_value),
            }


def test_a_partys_own_signing_key_with_a_short_x_loads(tmp_path: Path) -> None:
    hub = hub_machine(tmp_path)
    private_file = hub / "hub.jwk"
    private = json.loads(private_file.read_text())
    [signing] = [k for k in private["keys"] if k.get("use") == "sig"][:1]
    pair = a_key_pair_with_a_short_x()
    signing.update(pair)
    private_file.write_text(json.dumps(private, indent=2))  # its mode kept
    jwks = json.loads((hub / PUBLIC_JWKS).read_text())
    [published] = [k for k in jwks["keys"] if k["kid"] == signing["kid"]]
    published.update(x=pair["x"], y=pair["y"])
    (hub / PUBLIC_JWKS).write_text(json.dumps(jwks, indent=2))

    keys = PartyKeys.load(hub, "hub")  # raised KeystoreError: "does not match"
    assert keys is not None
