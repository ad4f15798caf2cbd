"""A record under a made-up key id costs the reader a ``stat`` of its key files, nothing
more, and never keeps it from looking again for a key published a moment ago (review stop
39-S, S1).

A reader refused an unknown key id looked at its key files again at most once a second per
process, whoever caused it: one forged record a second (anyone who writes a topic the
process reads) used that look up, and a genuine record signed under a key published just
before it was sealed (``keys rotate --use-now`` after a leak) was dead-lettered for good
(an adapter's dead letters cannot be redriven, ADR 0010), its refusal saying "as re-read at
T" of a look made before the key existed. Now every unknown key id makes the reader
``stat`` its two key files (inode, mtime_ns, size); only a changed stat makes it read them,
and a refusal names when they were last read.

The keystore's clocks are moved, never slept on (``keystore._monotonic``, ``keystore._now``).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from gun_contract.envelope import ContentType, EnvelopeRejected
from gun_contract.envelope import EnvelopeRejectionKind as Kind
from gun_contract.security import keystore
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import KEY_RECHECK_S, KeystoreFolder, KeyUse, PartyKeys
from gun_contract.topics import topic_registry
from tests.conftest import envelope_of
from tests.keystore_fixtures import KeystoreClocks, new_kid

TOPICS = topic_registry("gun", ("dgal", "cites", "dga"))
REQUESTS = TOPICS.requests("dgal")


class Counted:
    """How often the keystore stats the key files of ``folder``, and how often it reads them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
        self.stats = self.reads = 0
        stamp, load = keystore._stamp, keystore._load_party

        def counted_stamp(paths: list[Path]) -> Any:
            self.stats += all(path.parent == folder for path in paths)
            return stamp(paths)

        def counted_load(read: Path, party: str) -> Any:
            self.reads += read == folder
            return load(read, party)

        monkeypatch.setattr(keystore, "_stamp", counted_stamp)
        monkeypatch.setattr(keystore, "_load_party", counted_load)


def running(folder: Path, party: str) -> JoseEnvelope:
    return envelope_of(party, TOPICS, folder)


def request(sender: JoseEnvelope) -> bytes:
    return sender.seal(b"<r/>", recipient="dgal", topic=REQUESTS, content_type=ContentType.XML)


def forged_by_a_stranger(folder: Path, clocks: KeystoreClocks) -> tuple[bytes, str]:
    """A request signed "by the hub" under a key id nobody registered, and that key id."""
    stranger = folder.parent / "stranger"
    shutil.copytree(folder, stranger)
    kids = KeystoreFolder(stranger).rotate("hub", use_from=clocks.wall())
    return request(running(stranger, "hub")), new_kid(kids, KeyUse.SIG)


def refusal(envelope: JoseEnvelope, sealed: bytes) -> EnvelopeRejected:
    with pytest.raises(EnvelopeRejected) as refused:
        envelope.open(sealed, topic=REQUESTS, accepted_at=time.time())
    return refused.value


def test_a_forged_key_id_does_not_make_the_reader_refuse_a_key_published_before_use(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks
) -> None:
    """The reviewer's case: a forged record at t, ``keys rotate hub --use-now`` at t+0.5 s
    on this machine, the hub's genuine record at t+0.6 s, before the 5 s recheck."""
    adapter = running(own_keys_dir, "dgal")  # running since before the rotation
    forged, _ = forged_by_a_stranger(own_keys_dir, keystore_clocks)
    assert refusal(adapter, forged).kind is Kind.UNKNOWN_KID

    keystore_clocks.monotonic += 0.5
    KeystoreFolder(own_keys_dir).rotate("hub", use_from=keystore_clocks.wall())
    genuine = request(running(own_keys_dir, "hub"))
    keystore_clocks.monotonic += 0.1
    assert keystore_clocks.monotonic - 1000.0 < KEY_RECHECK_S
    try:
        opened = adapter.open(genuine, topic=REQUESTS, accepted_at=time.time())
    except EnvelopeRejected as refused:
        pytest.fail(f"genuine record, key published before it was sealed, refused: {refused}")
    assert opened.sender == "hub"


def test_a_flood_of_unknown_key_ids_costs_a_stat_each_and_no_reading(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = running(own_keys_dir, "dgal")
    forged, kid = forged_by_a_stranger(own_keys_dir, keystore_clocks)
    counted = Counted(monkeypatch, own_keys_dir)
    for _ in range(200):
        assert refusal(adapter, forged).kind is Kind.UNKNOWN_KID
    assert counted.reads == 0  # the files did not change: never read
    assert counted.stats == 200  # looked at for each, without any limit in time

    # The key is published here (an import): the very next record under it opens, after
    # one reading; the flood goes on costing stats only.
    shutil.copy(own_keys_dir.parent / "stranger" / "jwks.json", own_keys_dir / "jwks.json")
    assert adapter.open(forged, topic=REQUESTS, accepted_at=time.time()).signing_kid == kid
    assert counted.reads == 1
    stranger_again = own_keys_dir.parent / "again"
    shutil.copytree(own_keys_dir.parent / "stranger", stranger_again)
    KeystoreFolder(stranger_again).rotate("hub", use_from=keystore_clocks.wall())
    forged_again = request(running(stranger_again, "hub"))
    for _ in range(50):
        assert refusal(adapter, forged_again).kind is Kind.UNKNOWN_KID
    assert counted.reads == 1


def test_the_refusal_names_when_the_files_were_last_read_not_looked_at(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks
) -> None:
    read_at = keystore_clocks.wall()
    adapter = running(own_keys_dir, "dgal")
    forged, _ = forged_by_a_stranger(own_keys_dir, keystore_clocks)

    # Time passes, the files unchanged: looked at (the recheck, the unknown kid), not read.
    keystore_clocks.advance(3 * KEY_RECHECK_S)
    said = str(refusal(adapter, forged))
    assert (
        f"unknown key id (not in jwks.json as last read at {read_at.isoformat(timespec='seconds')})"
        in said
    ), said

    # Another party's rotation changes jwks.json: the unknown kid makes it read them again.
    keystore_clocks.advance(30)
    KeystoreFolder(own_keys_dir).rotate("cites")
    changed_at = keystore_clocks.wall().isoformat(timespec="seconds")
    said = str(refusal(adapter, forged))
    assert f"as last read at {changed_at})" in said, said


def test_a_key_file_being_written_is_never_read_half_written(
    own_keys_dir: Path,
    keystore_clocks: KeystoreClocks,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``keys rotate`` writes each file beside it and renames it into place: a reader that
    looks (or a process that starts) in the middle of a write reads the whole old file."""
    adapter = PartyKeys.load(own_keys_dir, "dgal")
    before = set(adapter.public)
    looks: list[set[str]] = []

    def look_midway() -> None:
        adapter.look_again()
        looks.append(set(adapter.public))
        assert PartyKeys.load(own_keys_dir, "dgal").public  # a start-up meanwhile reads it whole

    real_fsync = os.fsync

    def fsync_looking(descriptor: int) -> None:
        # The new file written whole beside the old one, not renamed into place yet (the
        # key store syncs it first; stop 47): a look then reads the old file.
        if stat.S_ISREG(os.fstat(descriptor).st_mode):
            look_midway()
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync_looking)
    with caplog.at_level(logging.ERROR, logger=keystore.__name__):
        kids = KeystoreFolder(own_keys_dir).rotate("dgal", use_from=keystore_clocks.wall())
    monkeypatch.setattr(os, "fsync", real_fsync)

    assert len(looks) == 2  # one in the middle of each of the two files' writes
    assert all(seen == before for seen in looks)  # the new jwks.json not in place yet
    assert not [r for r in caplog.records if "keeping the keys loaded before" in r.getMessage()]
    adapter.look_again()
    assert set(kids) <= set(adapter.public)
