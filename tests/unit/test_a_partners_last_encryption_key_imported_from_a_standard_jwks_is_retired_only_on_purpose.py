"""``keys retire`` refuses a party's last active encryption key without ``--last``
(fb5a520), whoever wrote the key's entry in jwks.json.

The guard (``KeystoreFolder._refuse_a_last_encryption_key``) counts a key as active only
when its entry says ``"status": "active"``; jwks.json, read by ``_parse_public``, takes a
key with no ``status`` as active (the default). ``keys import-public`` takes a partner's
standard JWKS as the partner's library exported it (jwcrypto: no ``status``, no
``party``) and writes the entry without a ``status``. So the partner's one encryption key,
imported from its export, is retired without a word: nothing can be sealed to the partner,
and the worker, meeting ``NoEncryptionKey``, retries and then stops (runtime/app.py) —
exactly what the guard is for. Conversely a key with a ``status`` is refused as the last
while a partner's imported key, active without saying so, is still there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jwcrypto import jwk

from gun_contract.security.keystore import PUBLIC_JWKS, KeystoreError, KeystoreFolder
from tests.unit.test_keys_import_standard_jwks import hub_machine

PARTNER = "dgal"


def exported_encryption_key() -> dict[str, str]:
    """A partner's encryption key as jwcrypto exports it (a thumbprint for its id)."""
    key = jwk.JWK.generate(kty="EC", crv="P-256")
    entry: dict[str, str] = json.loads(key.export_public())
    entry.update(kid=key.thumbprint(), use="enc", alg="ECDH-ES+A256KW")
    return entry


def test_a_partners_only_encryption_key_imported_from_its_export_is_not_retired_silently(
    tmp_path: Path,
) -> None:
    hub = hub_machine(tmp_path)
    folder = KeystoreFolder(hub)
    entry = exported_encryption_key()
    folder.import_public({"keys": [entry]}, party=PARTNER, source="dgal.jwks")
    stored = [
        e for e in json.loads((hub / PUBLIC_JWKS).read_text())["keys"] if e["kid"] == entry["kid"]
    ]
    assert stored
    assert "status" not in stored[0]  # as imported: active by default

    with pytest.raises(KeystoreError, match="last active encryption key"):
        folder.retire(entry["kid"])


def test_a_key_is_not_the_last_while_a_partners_imported_key_is_active(tmp_path: Path) -> None:
    hub = hub_machine(tmp_path)
    folder = KeystoreFolder(hub)
    first, second = exported_encryption_key(), exported_encryption_key()
    first["status"] = "active"  # as gun-hub's own export writes it
    folder.import_public({"keys": [first, second]}, party=PARTNER, source="dgal.jwks")

    assert folder.retire(first["kid"]) == PARTNER  # the second stays, active
