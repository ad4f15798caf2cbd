"""A party's private file whose keys say another ``use`` than ``jwks.json`` publishes for
them (the signing and encryption keys' ``use`` swapped in a file assembled or edited by
hand) is a key file deployed wrong: refused at start-up naming the file and the key, and
read again by a running process it leaves the keys read before in place (security.md,
"Files": "a private key that does not match its public key" stops the process).

``_check_matches`` compares thumbprints only, and ``_load_party`` takes a key's use from
the private file: the process starts without a word, signs with its encryption key (one
key for ECDH and ECDSA: the key separation of security.md, "Keys", gone) and looks for
what is encrypted to it among its signing keys, so every message it sends and every one
sent to it is dead-lettered ENVELOPE_UNKNOWN_KID, "signing key ... is not registered" of a
key that is registered.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gun_contract.envelope import ContentType
from gun_contract.security import keystore
from gun_contract.security.keystore import KeystoreError, KeyUse, PartyKeys
from gun_contract.topics import topic_registry
from tests.conftest import envelope_of
from tests.keystore_fixtures import KeystoreClocks, active_kid

TOPICS = topic_registry("gun", ["cites", "dga", "dgal"])
RESPONSES = TOPICS.responses("dgal")


def with_uses_swapped(folder: Path, party: str) -> None:
    path = folder / f"{party}.jwk"
    data = json.loads(path.read_text())
    for entry in data["keys"]:
        entry["use"] = {"sig": "enc", "enc": "sig"}[entry["use"]]
        entry.pop("alg", None)
    keystore._write_private(path, data)


def test_a_private_file_with_its_keys_uses_swapped_is_refused_at_start(own_keys_dir: Path) -> None:
    with_uses_swapped(own_keys_dir, "dgal")

    # Loaded as it is now, it signs with the key jwks.json publishes for encryption.
    with pytest.raises(KeystoreError, match=re.escape(str(own_keys_dir / "dgal.jwk"))):
        PartyKeys.load(own_keys_dir, "dgal")


def test_a_running_process_keeps_its_keys_when_its_file_is_replaced_by_one_with_uses_swapped(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks
) -> None:
    signing_kid = active_kid(own_keys_dir, "dgal", KeyUse.SIG)
    dgal = envelope_of("dgal", TOPICS, own_keys_dir)

    with_uses_swapped(own_keys_dir, "dgal")
    keystore_clocks.advance(keystore.KEY_RECHECK_S)

    sealed = dgal.seal(b"{}", recipient="hub", topic=RESPONSES, content_type=ContentType.JSON)
    hub = envelope_of("hub", TOPICS, own_keys_dir)
    assert hub.open(sealed, topic=RESPONSES).signing_kid == signing_kid
