"""State keys and the state cipher: what seals data at rest (issue 11, item 2).

Each party's state key is made with its other keys (``keys init``, both forms), kept in its
private file only (0600, never in ``jwks.json``, never exported), and rotated with
``keys rotate P --state``. A sealed value opens only under the table and record key it was
sealed for, names the key that sealed it (so older values open after a rotation), and a
value that does not open says which table, key and key id, never what it holds.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from typer.testing import CliRunner, Result

from gun_contract.security import keystore
from gun_contract.security.keystore import (
    LOCK_FILE,
    PUBLIC_JWKS,
    KeystoreError,
    KeystoreFolder,
    PartyKeys,
    StateKey,
    read_state_keys,
)
from gun_contract.security.state_cipher import MAGIC, SealedStore, StateCipher, StateUnreadable
from gun_hub.cli import app
from tests.keystore_fixtures import KeystoreClocks

CASE = b'{"reference":"26FR000690E0000001","expected":[{"reference":"LEMG.FR.2026.0042"}]}'
KEY = b"26FR000690E0000001"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("GUN_HUB_")]:
        monkeypatch.delenv(name)


def keys(*args: str | Path) -> Result:
    result = CliRunner().invoke(app, ["keys", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def private(folder: Path, party: str) -> dict[str, Any]:
    return dict(json.loads((folder / f"{party}.jwk").read_text()))


def cipher(seed: int = 1, kid: str = "hub-state-test") -> StateCipher:
    return StateCipher.of([StateKey(f"{kid}-{seed}", bytes([seed]) * 32)])


@pytest.mark.parametrize("form", ["one folder (demo)", "--party"])
def test_keys_init_gives_each_party_a_state_key_that_never_leaves_its_private_file(
    tmp_path: Path, form: str
) -> None:
    folder = tmp_path / "keys"
    if form == "--party":
        keys("init", "--party", "dga", "--dir", folder)
        assert sorted(p.name for p in folder.iterdir() if p.name != LOCK_FILE) == [
            "dga.jwk",
            PUBLIC_JWKS,
        ]
    else:
        keys("init", "--dir", folder)
        assert (folder / "hub.jwk").exists()
    assert (folder / "dga.jwk").stat().st_mode & 0o777 == 0o600
    [state] = private(folder, "dga")["state_keys"]
    assert {k: state[k] for k in ("kty", "use", "alg", "purpose")} == {
        "kty": "oct",
        "use": "enc",
        "alg": "A256GCM",
        "purpose": "state",
    }
    [key] = read_state_keys(folder, "dga")
    assert key.kid == state["kid"]
    assert len(key.secret) == 32
    assert state["k"] not in repr(key)

    public = (folder / PUBLIC_JWKS).read_text()
    exported = keys("export-public", "--party", "dga", "--dir", folder).stdout
    for text in (public, exported):
        assert state["kid"] not in text
        assert state["k"] not in text
        assert '"k"' not in text
    # The envelope does not see it: it is no key to sign with nor to decrypt a message.
    assert state["kid"] not in PartyKeys.load(folder, "dga").decryption_keys


def test_a_value_opens_only_in_the_table_and_under_the_key_it_was_sealed_for() -> None:
    sealed = cipher().seal("cases", KEY, CASE)
    assert sealed.startswith(MAGIC + bytes((len("hub-state-test-1"),)) + b"hub-state-test-1")
    assert b"LEMG" not in sealed
    assert sealed != cipher().seal("cases", KEY, CASE)  # a fresh nonce per value
    assert cipher().open("cases", KEY, sealed) == CASE

    for table, key in (("cases", b"26FR000690E0000002"), ("open-cases", KEY)):
        with pytest.raises(StateUnreadable) as moved:
            cipher().open(table, key, sealed)
        assert str(moved.value).startswith(f"{table}: the value of key '{key.decode()}'")
        assert "hub-state-test-1" in str(moved.value)
        assert "moved" in str(moved.value)
        assert "LEMG" not in str(moved.value)

    altered = bytearray(sealed)
    altered[40] ^= 1
    with pytest.raises(StateUnreadable, match="does not decrypt"):
        cipher().open("cases", KEY, bytes(altered))
    with pytest.raises(StateUnreadable, match="not sealed"):
        cipher().open("cases", KEY, CASE)  # a case written in clear
    with pytest.raises(StateUnreadable, match="truncated"):
        cipher().open("cases", KEY, sealed[:30])
    with pytest.raises(StateUnreadable, match="'hub-state-test-1', which is not among"):
        cipher(2).open("cases", KEY, sealed)


def test_a_value_is_sealed_byte_for_byte_as_the_format_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stop 39: the key's AES-GCM object, its header and each table's part of the
    associated data are made once, not at every seal and open; what is sealed is the same
    bytes, under the same associated data (a value sealed before opens after, and back)."""
    nonce = bytes(range(12))
    monkeypatch.setattr(os, "urandom", lambda size: nonce[:size])
    secret, kid = bytes([7]) * 32, "hub-state-test-7"
    sealing = StateCipher.of([StateKey(kid, secret)])
    for table, key in (("cases", KEY), ("open-cases", KEY), ("cases", "26FR-é"), ("a", b"")):
        record = key.encode() if isinstance(key, str) else key
        header = MAGIC + bytes((len(kid),)) + kid.encode()
        associated = (
            b"gun-hub state v1"
            + struct.pack(">H", len(table))
            + table.encode()
            + struct.pack(">I", len(record))
            + record
            + header
        )
        expected = header + nonce + AESGCM(secret).encrypt(nonce, CASE, associated)
        assert sealing.seal(table, key, CASE) == expected
        assert sealing.open(table, key, expected) == CASE


def test_the_store_below_holds_sealed_values_and_its_users_see_plain_ones() -> None:
    below: dict[bytes, bytes] = {}
    store = SealedStore(below, cipher(), "cases")
    store[KEY] = CASE
    assert below[KEY].startswith(MAGIC)
    assert b"LEMG" not in below[KEY]
    assert store.get(KEY) == CASE
    assert store.get(b"unknown") is None
    assert store.pop(KEY) == CASE
    assert KEY not in below
    assert store.pop(KEY, b"default") == b"default"


def test_after_a_rotation_the_newest_key_seals_and_older_values_still_open(
    tmp_path: Path, keystore_clocks: KeystoreClocks
) -> None:
    folder = tmp_path / "keys"
    KeystoreFolder(folder).init(["hub", "dgal"])
    worker_a = StateCipher.load(folder, "hub")
    worker_b = StateCipher.load(folder, "hub")
    first_kid = worker_a.sealing_kid
    old = worker_a.seal("cases", KEY, CASE)

    keys("rotate", "hub", "--state", "--dir", folder)
    new_kid = read_state_keys(folder, "hub")[-1].kid
    assert new_kid != first_kid
    assert (folder / "hub.jwk").stat().st_mode & 0o777 == 0o600
    keystore_clocks.advance(keystore.KEY_RECHECK_S)
    assert worker_a.sealing_kid == first_kid  # read, not in use before its use time
    keystore_clocks.advance(keystore.ROTATION_GRACE.total_seconds())
    assert worker_a.sealing_kid == new_kid  # followed without a restart
    new = worker_a.seal("cases", KEY, CASE)
    assert new[len(MAGIC) + 1 :].startswith(new_kid.encode())
    assert worker_a.open("cases", KEY, old) == CASE

    assert worker_b.open("cases", KEY, new) == CASE

    # A worker that looked at the file a moment ago meets a value sealed with a key made
    # since (another worker rotated): it looks again at once instead of failing.
    worker_c = StateCipher.load(folder, "hub")
    keys("rotate", "hub", "--state", "--use-now", "--dir", folder)
    keystore_clocks.advance(0.1)
    other_worker = StateCipher.load(folder, "hub")
    assert other_worker.sealing_kid != worker_c.sealing_kid  # worker_c has not looked yet
    assert worker_c.open("cases", KEY, other_worker.seal("cases", KEY, CASE)) == CASE
    assert worker_c.sealing_kid == other_worker.sealing_kid

    # Rotating the envelope keys keeps the state keys.
    before = [k.kid for k in read_state_keys(folder, "hub")]
    keys("rotate", "hub", "--dir", folder)
    assert [k.kid for k in read_state_keys(folder, "hub")] == before
    assert StateCipher.load(folder, "hub").open("cases", KEY, old) == CASE


def test_a_keystore_made_before_state_keys_says_how_to_add_one(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    KeystoreFolder(folder).init_party("dga")
    data = private(folder, "dga")
    del data["state_keys"]
    path = folder / "dga.jwk"
    path.write_text(json.dumps(data))
    with pytest.raises(KeystoreError) as missing:
        StateCipher.load(folder, "dga")
    assert str(path) in str(missing.value)
    assert "gun-hub keys rotate dga --state" in str(missing.value)

    keys("rotate", "dga", "--state", "--dir", folder)
    assert len(read_state_keys(folder, "dga")) == 1
    assert PartyKeys.load(folder, "dga").signing_key.kid == data["keys"][0]["kid"]


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda k: k.update(k="AAAA"), "256-bit"),
        (lambda k: k.update(k="not base64url!"), "key material"),
        (lambda k: k.update(kty="EC"), "not a state key"),
        (lambda k: k.update(purpose="audit"), "not a state key"),
        (lambda k: k.update(kid="a b"), "key id"),
    ],
)
def test_a_corrupt_state_key_is_named_by_file_never_shown(
    tmp_path: Path, damage: Any, says: str
) -> None:
    folder = tmp_path / "keys"
    KeystoreFolder(folder).init_party("dga")
    data = private(folder, "dga")
    secret = data["state_keys"][0]["k"]
    damage(data["state_keys"][0])
    (folder / "dga.jwk").write_text(json.dumps(data))
    with pytest.raises(KeystoreError) as error:
        StateCipher.load(folder, "dga")
    assert str(folder / "dga.jwk") in str(error.value)
    assert says in str(error.value)
    assert secret not in str(error.value)


def test_a_private_file_others_may_read_is_refused_for_state_keys_too(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    KeystoreFolder(folder).init_party("dga")
    (folder / "dga.jwk").chmod(0o644)
    with pytest.raises(KeystoreError, match="readable by others"):
        StateCipher.load(folder, "dga")
