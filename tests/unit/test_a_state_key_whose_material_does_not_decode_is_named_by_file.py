"""A state key whose ``k`` is one character too long or too short (a copy and paste that
took one more, or one less) is a key file deployed wrong like any other: at start-up it
is refused naming the file (``KeystoreError``, "cannot start: ..."), and read again by a
running process it leaves the keys read before in place, logged (security.md, "Files";
keystore ``_Reloading``). A ``k`` of 4n+1 base64url characters passes the alphabet check
of ``_parse_state_key`` and then fails in ``base64.urlsafe_b64decode`` with
``binascii.Error``, which nothing expects: a traceback naming no file at start-up, and,
once the file is replaced under a running worker, raised out of the next seal or open
(a declaration or answer in hand dead-lettered as a bug by the hub's agents).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gun_contract.security import keystore
from gun_contract.security.keystore import KeystoreError, KeystoreFolder, read_state_keys
from gun_contract.security.state_cipher import StateCipher
from tests.keystore_fixtures import KeystoreClocks

KEY = b"26FR000690E0000001"
CASE = b'{"reference":"26FR000690E0000001"}'


def with_state_key_material(folder: Path, party: str, k: str) -> None:
    path = folder / f"{party}.jwk"
    data = json.loads(path.read_text())
    data["state_keys"][0]["k"] = k
    keystore._write_private(path, data)


@pytest.mark.parametrize("length", [45, 41, 1])
def test_a_state_key_of_4n_plus_1_characters_is_refused_naming_its_file(
    tmp_path: Path, length: int
) -> None:
    folder = tmp_path / "keys"
    KeystoreFolder(folder).init_party("dga")
    with_state_key_material(folder, "dga", "A" * length)
    with pytest.raises(KeystoreError) as refused:
        read_state_keys(folder, "dga")
    assert str(folder / "dga.jwk") in str(refused.value)
    with pytest.raises(KeystoreError):
        StateCipher.load(folder, "dga")


def test_a_running_cipher_keeps_its_keys_when_the_file_is_replaced_by_one_whose_k_does_not_decode(
    tmp_path: Path, keystore_clocks: KeystoreClocks
) -> None:
    folder = tmp_path / "keys"
    KeystoreFolder(folder).init_party("hub")
    cipher = StateCipher.load(folder, "hub")
    sealed = cipher.seal("cases", KEY, CASE)
    good = json.loads((folder / "hub.jwk").read_text())["state_keys"][0]["k"]

    assert len(good) == 43  # 32 bytes, unpadded
    with_state_key_material(folder, "hub", good + "AA")  # 45 characters: 4n+1
    keystore_clocks.advance(keystore.KEY_RECHECK_S)

    # The keys read before stay in place: the worker goes on sealing and opening.
    assert cipher.open("cases", KEY, sealed) == CASE
    assert cipher.open("cases", KEY, cipher.seal("cases", KEY, CASE)) == CASE
