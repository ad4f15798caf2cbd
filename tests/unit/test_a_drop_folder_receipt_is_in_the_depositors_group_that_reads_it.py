"""A receipt is readable by the depositors, in the deployment docs/intake-channels.md
gives: the folder in the depositors' group, setgid and sticky (``chmod 3770 DIR``), "so
that done/ and rejected/ are made in that group and the depositors read their receipts
there (0640 ...)", under the ordinary umask 022.

8116870 writes every receipt 0640 (``_RECEIPT_MODE``, ``os.fchmod``): readable by the
receipt's group only. But ``DropFolder.prepare`` makes done/ and rejected/ with
``os.mkdir`` (which inherits the folder's group and its setgid bit) and then
``os.fchmod(part, 0o750)``, which clears the setgid bit it does not name. A file made in
done/ afterwards is in the watcher's own group, not the depositors': 0640 leaves the
depositors nothing. Before 8116870 the receipt was 0644 under umask 022, and the
depositors, through done/'s group, read it as "others".
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gun_hub.gateway.file_drop import RECEIPT_SUFFIX, DropFolder, DropWatcher
from gun_hub.gateway.lodging import Gateway, Lodger
from tests.builders import declaration_xml
from tests.drop_fixtures import TOPICS, gateway, sender
from tests.gateway_fixtures import RecordingSender

__all__ = ["gateway", "sender"]  # fixtures, used by name below


def depositors_group() -> int:
    if os.geteuid() == 0:
        return 4242
    others = [g for g in os.getgroups() if g != os.getegid()]
    if not others:
        pytest.skip("needs root or a second group to give the folder the depositors' group")
    return others[0]


@pytest.fixture
def usual_umask() -> Iterator[None]:
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


@pytest.fixture
def folder(tmp_path: Path, usual_umask: None) -> DropFolder:
    folder = DropFolder(tmp_path / "drop")
    folder.root.mkdir()
    os.chown(folder.root, -1, depositors_group())
    folder.root.chmod(0o3770)
    folder.prepare()
    return folder


async def test_the_depositors_group_reads_a_receipt_in_done_and_in_rejected(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender
) -> None:
    group = folder.root.stat().st_gid
    (folder.root / "good.xml").write_bytes(
        declaration_xml(reference="FR12345678901234-FILE-0000000601")
    )
    (folder.root / "bad.xml").write_bytes(b"<not a declaration")
    running = DropWatcher(
        folder, gateway, Lodger("this drop folder"), topic=TOPICS.declarations, settle_s=0
    )
    assert await running.pass_once() == 2
    receipts = [
        *folder.done.glob(f"*{RECEIPT_SUFFIX}"),
        *folder.rejected.glob(f"*{RECEIPT_SUFFIX}"),
    ]
    assert len(receipts) == 2

    def depositors_read(path: Path) -> bool:
        found = path.stat()
        if found.st_gid == group:
            return bool(found.st_mode & stat.S_IRGRP)
        return bool(found.st_mode & stat.S_IROTH)

    unread = {
        p.parent.name: (p.stat().st_gid, f"{stat.S_IMODE(p.stat().st_mode):04o}")
        for p in receipts
        if not depositors_read(p)
    }
    assert not unread, (
        f"receipts the depositors (group {group}) cannot read, by (group, mode): {unread}; "
        f"done/ is {stat.S_IMODE(folder.done.stat().st_mode):04o}, group "
        f"{folder.done.stat().st_gid}"
    )
