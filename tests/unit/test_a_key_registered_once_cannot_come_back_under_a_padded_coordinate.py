"""One key, one key id, one party (security.md, "Keys"): ``keys import-public`` refuses a
key already registered under another key id, so that the holder of one party's key
cannot be made to speak for another. The check compares RFC 7638 thumbprints of the
members as the file writes them, and the key store takes a coordinate of any length
``cryptography`` reads as the same number: the hub's own signing key, its ``x`` given 33
bytes with a leading zero (RFC 7518 section 6.2.1.2: "MUST be the full size of a
coordinate for the curve", 32 bytes on P-256), has another thumbprint and is imported as
the clearance system's key. Messages the hub signs under that key id then verify as the
clearance system's declarations (the whole file is refused, nothing imported, when the
same key comes with its coordinates as written).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from gun_contract.security.keystore import PUBLIC_JWKS, KeystoreError, KeystoreFolder
from tests.unit.test_keys_import_standard_jwks import hub_machine


def padded(coordinate: str) -> str:
    raw = base64.urlsafe_b64decode(coordinate + "=" * (-len(coordinate) % 4))
    assert len(raw) == 32
    return base64.urlsafe_b64encode(b"\x00" + raw).rstrip(b"=").decode()


def test_the_hubs_signing_key_with_a_padded_coordinate_is_not_imported_as_anothers(
    tmp_path: Path,
) -> None:
    hub = hub_machine(tmp_path)
    [hub_signing] = [
        e
        for e in json.loads((hub / PUBLIC_JWKS).read_text())["keys"]
        if e["use"] == "sig" and not e.get("purpose")
    ]
    entry = {k: hub_signing[k] for k in ("kty", "crv", "x", "y")}
    entry["x"] = padded(entry["x"])
    entry["kid"] = "clearance-sig-padded"
    entry["use"] = "sig"
    before = (hub / PUBLIC_JWKS).read_bytes()

    with pytest.raises(KeystoreError):
        KeystoreFolder(hub).import_public(
            {"keys": [entry]}, party="clearance", source="clearance.jwks"
        )
    assert (hub / PUBLIC_JWKS).read_bytes() == before
