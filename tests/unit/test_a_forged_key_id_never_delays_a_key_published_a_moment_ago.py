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

import json
import logging
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gun_contract.envelope import ContentType, EnvelopeRejected
from gun_contract.envelope import EnvelopeRejectionKind as Kind
from gun_contract.security import keystore
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import KEY_RECHECK_S, KeystoreFolder, KeyUse, PartyKeys
from gun_contract.security.replay import MemoryReplayGuard
from gun_contract.topics import topic_registry

TOPICS = topic_registry("gun", ("dgal", "cites", "dga"))
REQUESTS = TOPICS.requests("dgal")


class Clocks:
    """The keystore's monotonic clock (files looked at again) and its wall clock."""

    def __init__(self) -> None:
        self.monotonic = 1000.0
        self.offset = timedelta(0)

    def wall(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.monotonic += seconds
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def clocks(monkeypatch: pytest.MonkeyPatch) -> Clocks:
    fake = Clocks()
    monkeypatch.setattr(keystore, "_monotonic", lambda: fake.monotonic)
    monkeypatch.setattr(keystore, "_now", fake.wall)
    return fake


@pytest.fixture
def folder(keys_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "keys"
    shutil.copytree(keys_dir, copy)
    return copy


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
    return JoseEnvelope(
        PartyKeys.load(folder, party), Entitlements.from_registry(TOPICS), MemoryReplayGuard()
    )


def request(sender: JoseEnvelope) -> bytes:
    return sender.seal(b"<r/>", recipient="dgal", topic=REQUESTS, content_type=ContentType.XML)


def forged_by_a_stranger(folder: Path, clocks: Clocks) -> tuple[bytes, str]:
    """A request signed "by the hub" under a key id nobody registered, and that key id."""
    stranger = folder.parent / "stranger"
    shutil.copytree(folder, stranger)
    kids = KeystoreFolder(stranger).rotate("hub", use_from=clocks.wall())
    [kid] = [k for k in kids if f"-{KeyUse.SIG.value}-" in k]
    return request(running(stranger, "hub")), kid


def refusal(envelope: JoseEnvelope, sealed: bytes) -> EnvelopeRejected:
    with pytest.raises(EnvelopeRejected) as refused:
        envelope.open(sealed, topic=REQUESTS, accepted_at=time.time())
    return refused.value


def test_a_forged_key_id_does_not_make_the_reader_refuse_a_key_published_before_use(
    folder: Path, clocks: Clocks
) -> None:
    """The reviewer's case: a forged record at t, ``keys rotate hub --use-now`` at t+0.5 s
    on this machine, the hub's genuine record at t+0.6 s, before the 5 s recheck."""
    adapter = running(folder, "dgal")  # running since before the rotation
    forged, _ = forged_by_a_stranger(folder, clocks)
    assert refusal(adapter, forged).kind is Kind.UNKNOWN_KID

    clocks.monotonic += 0.5
    KeystoreFolder(folder).rotate("hub", use_from=clocks.wall())
    genuine = request(running(folder, "hub"))
    clocks.monotonic += 0.1
    assert clocks.monotonic - 1000.0 < KEY_RECHECK_S
    try:
        opened = adapter.open(genuine, topic=REQUESTS, accepted_at=time.time())
    except EnvelopeRejected as refused:
        pytest.fail(f"genuine record, key published before it was sealed, refused: {refused}")
    assert opened.sender == "hub"


def test_a_flood_of_unknown_key_ids_costs_a_stat_each_and_no_reading(
    folder: Path, clocks: Clocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = running(folder, "dgal")
    forged, kid = forged_by_a_stranger(folder, clocks)
    counted = Counted(monkeypatch, folder)
    for _ in range(200):
        assert refusal(adapter, forged).kind is Kind.UNKNOWN_KID
    assert counted.reads == 0  # the files did not change: never read
    assert counted.stats == 200  # looked at for each, without any limit in time

    # The key is published here (an import): the very next record under it opens, after
    # one reading; the flood goes on costing stats only.
    shutil.copy(folder.parent / "stranger" / "jwks.json", folder / "jwks.json")
    assert adapter.open(forged, topic=REQUESTS, accepted_at=time.time()).signing_kid == kid
    assert counted.reads == 1
    stranger_again = folder.parent / "again"
    shutil.copytree(folder.parent / "stranger", stranger_again)
    KeystoreFolder(stranger_again).rotate("hub", use_from=clocks.wall())
    forged_again = request(running(stranger_again, "hub"))
    for _ in range(50):
        assert refusal(adapter, forged_again).kind is Kind.UNKNOWN_KID
    assert counted.reads == 1


def test_the_refusal_names_when_the_files_were_last_read_not_looked_at(
    folder: Path, clocks: Clocks
) -> None:
    read_at = clocks.wall()
    adapter = running(folder, "dgal")
    forged, _ = forged_by_a_stranger(folder, clocks)

    # Time passes, the files unchanged: looked at (the recheck, the unknown kid), not read.
    clocks.advance(3 * KEY_RECHECK_S)
    said = str(refusal(adapter, forged))
    assert (
        f"unknown key id (not in jwks.json as last read at {read_at.isoformat(timespec='seconds')})"
        in said
    ), said

    # Another party's rotation changes jwks.json: the unknown kid makes it read them again.
    clocks.advance(30)
    KeystoreFolder(folder).rotate("cites")
    changed_at = clocks.wall().isoformat(timespec="seconds")
    said = str(refusal(adapter, forged))
    assert f"as last read at {changed_at})" in said, said


def test_a_key_file_being_written_is_never_read_half_written(
    folder: Path, clocks: Clocks, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``keys rotate`` writes each file beside it and renames it into place: a reader that
    looks (or a process that starts) in the middle of a write reads the whole old file."""
    adapter = PartyKeys.load(folder, "dgal")
    before = set(adapter.public)
    looks: list[set[str]] = []

    def look_midway() -> None:
        adapter.look_again()
        looks.append(set(adapter.public))
        assert PartyKeys.load(folder, "dgal").public  # a start-up meanwhile reads it whole

    def halfway(write_rest: Callable[[str], None], text: str, flush: Callable[[], None]) -> None:
        write_rest(text[: len(text) // 2])
        flush()
        look_midway()
        write_rest(text[len(text) // 2 :])

    real_write_text = Path.write_text

    def write_text_halfway(path: Path, text: str, *args: Any, **kwargs: Any) -> int:
        with path.open("w") as handle:
            halfway(handle.write, text, handle.flush)
        return len(text)

    def dump_halfway(data: Any, handle: Any, **kwargs: Any) -> None:
        halfway(handle.write, json.dumps(data, **kwargs), handle.flush)

    monkeypatch.setattr(Path, "write_text", write_text_halfway)
    monkeypatch.setattr(keystore.json, "dump", dump_halfway)
    with caplog.at_level(logging.ERROR, logger=keystore.__name__):
        kids = KeystoreFolder(folder).rotate("dgal", use_from=clocks.wall())
    monkeypatch.setattr(Path, "write_text", real_write_text)

    assert len(looks) == 2  # one in the middle of each of the two files' writes
    assert all(seen == before for seen in looks)  # the new jwks.json not in place yet
    assert not [r for r in caplog.records if "keeping the keys loaded before" in r.getMessage()]
    adapter.look_again()
    assert set(kids) <= set(adapter.public)
