"""A file the watcher has lodged (the broker confirmed it) but whose receipt cannot be
written, done/ being full or unwritable (ENOSPC, EROFS, EDQUOT: a depositor filling the
file system the drop folder shares is enough), stays in processing/ "to be tried again"
(gun_hub/gateway/file_drop.py, ``_lodge_one``'s ``except OSError``). At the next pass it
is read, sealed and published again, and again at every pass (one a second) for as long as
the disk stays full: each a new record with a new ``jti`` on gun.declarations, each
counted ``lodged``. The hub ignores the copies as equal versions, but the topic, the hub
and gun.status take one record per file per second. The design accepts one record more
per crash (docs/intake-channels.md); here the watcher did not crash and knows it lodged.

The broker is a list (tests/gateway_fixtures.py); the folder is real, a full disk played
by the receipt's write failing.
"""

from __future__ import annotations

import errno
import json
import os

import pytest

from gun_hub.gateway import file_drop
from gun_hub.gateway.file_drop import RECEIPT_SUFFIX, DropFolder, DropWatcher
from gun_hub.gateway.lodging import Gateway, Lodger
from tests.builders import declaration_xml
from tests.drop_fixtures import TOPICS, folder, gateway, sender
from tests.gateway_fixtures import RecordingSender

__all__ = ["folder", "gateway", "sender"]  # fixtures, used by name below

REFERENCE = "FR12345678901234-FILE-0000000401"


async def test_a_lodged_file_whose_receipt_cannot_be_written_is_published_once(
    folder: DropFolder,
    gateway: Gateway,
    sender: RecordingSender,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running = DropWatcher(
        folder, gateway, Lodger("this drop folder"), topic=TOPICS.declarations, settle_s=0
    )
    (folder.root / "a.xml").write_bytes(declaration_xml(reference=REFERENCE))
    write_atomically = file_drop._write_atomically

    def disk_full(directory: int, name: str, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(file_drop, "_write_atomically", disk_full)
    for _ in range(3):  # three seconds of a full disk
        await running.pass_once()
    assert sender.references() == [REFERENCE], (
        "lodged once, confirmed by the broker: published again at every pass while its "
        "receipt cannot be written"
    )

    # Room again: the receipt is written and the file moved beside it, still once.
    monkeypatch.setattr(file_drop, "_write_atomically", write_atomically)
    await running.pass_once()
    [receipt] = [json.loads(p.read_text()) for p in folder.done.glob(f"*{RECEIPT_SUFFIX}")]
    assert (receipt["result"], receipt["reference"]) == ("lodged", REFERENCE)
    assert sender.references() == [REFERENCE]
