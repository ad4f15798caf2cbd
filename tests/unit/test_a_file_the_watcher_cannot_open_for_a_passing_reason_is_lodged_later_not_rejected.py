"""Any ``OSError`` reading a claimed file rejects it for good, ``FILE_UNREADABLE``
(gun_hub/gateway/file_drop.py, ``_lodge_one``: ``except OSError`` around ``folder.read``),
moved to rejected/ with a receipt telling the depositor to look at its file. That is right
for what is the file's (EACCES: its mode; tests/unit/test_file_drop.py), wrong for what is
the watcher's own, passing, trouble: out of file descriptors (EMFILE: a batch of 50 read
at once beside the producer's sockets; ENFILE: the machine's table, which any local
account can fill) or of memory (ENOMEM). A valid declaration is then refused with a
reason that says nothing of it, and the depositor must drop it again; the folder's own
troubles (a full disk) leave the file in processing/ to be tried again instead. The same
for a file a file server still holds a lease on (the last test, on the real kernel).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
from pathlib import Path

import pytest

from gun_hub.gateway.file_drop import RECEIPT_SUFFIX, DropFolder, DropWatcher, OpenDropFolder
from gun_hub.gateway.lodging import Gateway, Lodger
from tests.builders import declaration_xml
from tests.drop_fixtures import TOPICS, folder, gateway, sender
from tests.gateway_fixtures import RecordingSender

__all__ = ["folder", "gateway", "sender"]  # fixtures, used by name below

REFERENCE = "FR12345678901234-FILE-0000000701"


@pytest.mark.parametrize(
    "error", [errno.EMFILE, errno.ENFILE, errno.ENOMEM], ids=["EMFILE", "ENFILE", "ENOMEM"]
)
async def test_a_file_the_watcher_could_not_open_for_want_of_resources_is_lodged_next_time(
    folder: DropFolder,
    gateway: Gateway,
    sender: RecordingSender,
    monkeypatch: pytest.MonkeyPatch,
    error: int,
) -> None:
    read = OpenDropFolder.read
    failures = [error]

    def out_of_resources(opened: OpenDropFolder, claimed: Path, limit: int) -> bytes:
        if failures:  # what os.open raises when the process (or machine) has none left
            raise OSError(failures.pop(), os.strerror(error), claimed.name)
        return read(opened, claimed, limit)

    monkeypatch.setattr(OpenDropFolder, "read", out_of_resources)
    (folder.root / "a.xml").write_bytes(declaration_xml(reference=REFERENCE))
    running = DropWatcher(
        folder, gateway, Lodger("this drop folder"), topic=TOPICS.declarations, settle_s=0
    )
    await running.pass_once()
    await running.pass_once()
    refused = [json.loads(p.read_text()) for p in folder.rejected.glob(f"*{RECEIPT_SUFFIX}")]
    assert refused == [], f"a valid declaration refused for the watcher's own want: {refused}"
    assert sender.references() == [REFERENCE]


async def test_a_file_under_a_lease_is_lodged_once_the_lease_is_given_up_not_rejected(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender
) -> None:
    """The claimed file is opened ``O_NONBLOCK`` (so that a pipe slipped in does not block
    the reader); on a regular file that makes an open the holder of a lease must first
    give up fail at once with EAGAIN instead of waiting for it (open(2), fcntl(2)
    F_SETLEASE). Leases are what the file servers of a shared drop folder hold for their
    clients: knfsd's NFSv4 write delegations, Samba's kernel oplocks. Such a file is
    rejected for good, "cannot read: Resource temporarily unavailable", while it was
    merely still held by the server of the depositor who wrote it. Here the test holds the
    lease, as such a server would, on the real kernel."""
    (folder.root / "a.xml").write_bytes(declaration_xml(reference=REFERENCE))
    running = DropWatcher(
        folder, gateway, Lodger("this drop folder"), topic=TOPICS.declarations, settle_s=0
    )
    before = signal.signal(signal.SIGIO, signal.SIG_IGN)  # the lease breaker's signal
    holder = os.open(folder.root / "a.xml", os.O_RDONLY)
    try:
        fcntl.fcntl(holder, fcntl.F_SETLEASE, fcntl.F_WRLCK)
        await running.pass_once()
        fcntl.fcntl(holder, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    finally:
        os.close(holder)
        signal.signal(signal.SIGIO, before)
    await running.pass_once()
    refused = [json.loads(p.read_text()) for p in folder.rejected.glob(f"*{RECEIPT_SUFFIX}")]
    assert refused == [], f"a valid declaration refused while a lease was held: {refused}"
    assert sender.references() == [REFERENCE]
