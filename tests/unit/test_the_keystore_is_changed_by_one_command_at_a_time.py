"""The key commands change a keystore folder one at a time, write it durably, and refuse
what would leave a party's running processes deaf to later retirements (review of stop
47, key management).

- Two commands at once (``keys prune --apply`` from cron while an operator rotates) each
  read a party's private file and wrote back what they had read: the new envelope and
  state keys were lost, while ``jwks.json`` published them (every message then encrypted
  to the hub's new key refused ``ENVELOPE_UNKNOWN_KID``; cases sealed with the lost state
  key never opened again). They shared one temporary file name too.
- A file narrowed by ``chmod 600`` after it was put in place was never read again: the
  look in between refused it, and ``chmod`` changes no inode, time or size.
- Retiring a party's last active signing key made its running processes keep every key
  they had loaded, every later retirement (another party's leaked key) ignored.
- ``keys init --party P --force`` dropped P's state keys: what they sealed never opened.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from gun_contract.security import keystore
from gun_contract.security.keystore import KeystoreError, KeystoreFolder
from gun_contract.security.state_cipher import StateCipher

PARTIES = ["hub", "dgal", "clearance", "gateway"]


@pytest.fixture
def folder(tmp_path: Path) -> KeystoreFolder:
    keys = KeystoreFolder(tmp_path / "keys")
    keys.init(PARTIES)
    return keys


def test_a_command_waits_while_another_changes_the_folder(folder: KeystoreFolder) -> None:
    lock = os.open(folder.folder / keystore.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # another command, mid-change
    rotated = threading.Event()

    def rotate() -> None:
        folder.rotate("hub", state=True)
        rotated.set()

    worker = threading.Thread(target=rotate)
    try:
        worker.start()
        assert not rotated.wait(1.0), "rotated while another command held the folder"
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    assert rotated.wait(30.0)
    worker.join()


def test_commands_one_after_the_other_keep_each_others_keys(folder: KeystoreFolder) -> None:
    """What a command writes is what the folder holds when it has the lock: a prune and
    two rotations, from three threads, keep both rotations' keys."""
    before = len(StateCipher.load(folder.folder, "hub")._keys())
    threads = [
        threading.Thread(target=folder.rotate, args=("hub",)),
        threading.Thread(target=folder.rotate, args=("hub",), kwargs={"state": True}),
        threading.Thread(
            target=folder.prune,
            args=("hub",),
            kwargs={"keep_for": timedelta(days=30), "apply": True},
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(StateCipher.load(folder.folder, "hub")._keys()) == before + 1
    private = {key["kid"] for key in json.loads(folder.private_file("hub").read_text())["keys"]}
    for kid, key in folder.public_keys().items():
        if key.party == "hub" and key.purpose != keystore.AUDIT_PURPOSE:
            assert kid in private, f"{kid} published but its private part was lost"


def test_a_key_file_reaches_the_disk_before_it_replaces_the_old_one(
    folder: KeystoreFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        synced.append(descriptor)
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    folder.rotate("hub", state=True)
    assert len(synced) >= 2  # the file, then its folder


def test_a_file_narrowed_after_it_was_put_in_place_is_read_again(tmp_path: Path) -> None:
    live, staging = KeystoreFolder(tmp_path / "live"), KeystoreFolder(tmp_path / "staging")
    live.init(PARTIES)
    worker = StateCipher.load(live.folder, "hub")  # running, sharing the folder
    (staging.folder).mkdir(mode=0o700)
    for name in ("hub.jwk", "jwks.json"):
        (staging.folder / name).write_bytes((live.folder / name).read_bytes())
    (staging.folder / "hub.jwk").chmod(0o600)
    staging.rotate("hub", state=True, use_from=keystore._now())
    copied = live.folder / "hub.jwk.new"
    copied.write_bytes((staging.folder / "hub.jwk").read_bytes())  # 0644 by umask
    copied.chmod(0o644)
    copied.replace(live.folder / "hub.jwk")
    look = worker._check_now
    assert look is not None
    look()  # the worker looks while it is readable by others: refused
    (live.folder / "hub.jwk").chmod(0o600)
    sealed = StateCipher.load(live.folder, "hub").seal("cases", b"REF1", b"case")
    look()
    assert worker.open("cases", b"REF1", sealed) == b"case"


def test_a_partys_last_signing_key_is_not_retired_without_saying_so(
    folder: KeystoreFolder,
) -> None:
    [signing] = [
        kid
        for kid, key in folder.public_keys().items()
        if key.party == "dgal" and key.use.value == "sig"
    ]
    with pytest.raises(KeystoreError, match="rotate"):
        folder.retire(signing)
    assert folder.public_keys()[signing].status.value == "active"
    folder.rotate("dgal")
    assert folder.retire(signing) == "dgal"  # another one to sign with: retired
    # Said: retired all the same.
    [again] = [
        kid
        for kid, key in folder.public_keys().items()
        if key.party == "dgal" and key.use.value == "sig" and key.status.value == "active"
    ]
    assert folder.retire(again, last=True) == "dgal"


def test_keys_init_forced_keeps_the_partys_state_keys(folder: KeystoreFolder) -> None:
    sealed = StateCipher.load(folder.folder, "hub").seal("cases", b"REF1", b"case")
    folder.init_party("hub", force=True)
    assert StateCipher.load(folder.folder, "hub").open("cases", b"REF1", sealed) == b"case"
