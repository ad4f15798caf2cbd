"""The depositors of a drop folder read their receipts in done/ and rejected/ through the
folder's group (docs/intake-channels.md, "Deploying it"): that receipt is the only answer a
file gets, and for a refused one the only place its reason is said. The watcher makes
done/ and rejected/ 0750 "whatever the umask" (``DropFolder.prepare``), but writes each
receipt with ``os.open(..., 0o644)`` (gun_hub/gateway/file_drop.py, ``_write_atomically``),
which the umask narrows: a watcher run with the hardened umask 077 (systemd's
``UMask=0077``, a service account's login profile) writes receipts 0600, and no depositor
can read whether its file was lodged, nor why it was refused.
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


@pytest.fixture
def hardened_umask() -> Iterator[None]:
    before = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(before)


@pytest.fixture
def folder(tmp_path: Path, hardened_umask: None) -> DropFolder:
    folder = DropFolder(tmp_path / "drop")
    folder.root.mkdir()
    folder.root.chmod(0o3770)
    folder.prepare()
    return folder


async def test_a_receipt_is_readable_by_the_folder_s_group_under_a_umask_of_077(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender
) -> None:
    (folder.root / "good.xml").write_bytes(
        declaration_xml(reference="FR12345678901234-FILE-0000000501")
    )
    (folder.root / "bad.xml").write_bytes(b"<not a declaration")
    running = DropWatcher(
        folder, gateway, Lodger("this drop folder"), topic=TOPICS.declarations, settle_s=0
    )
    assert await running.pass_once() == 2
    assert sender.references() == ["FR12345678901234-FILE-0000000501"]
    receipts = sorted(
        [*folder.done.glob(f"*{RECEIPT_SUFFIX}"), *folder.rejected.glob(f"*{RECEIPT_SUFFIX}")]
    )
    assert len(receipts) == 2
    modes = {p.parent.name: stat.S_IMODE(p.stat().st_mode) for p in receipts}
    assert all(mode & stat.S_IRGRP for mode in modes.values()), (
        f"receipts the depositors' group cannot read: { {k: f'{v:04o}' for k, v in modes.items()} }"
    )
    assert not any(mode & (stat.S_IWGRP | stat.S_IWOTH) for mode in modes.values())
