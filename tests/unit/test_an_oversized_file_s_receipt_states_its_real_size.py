"""A file over the size limit is read only up to the limit and one byte
(gun_hub/gateway/file_drop.py, ``OpenDropFolder.read``: enough to tell it is over), and
everything said of it is then said of that prefix: the refusal's reason ("document is
1048577 bytes, over the limit"), the receipt's ``bytes`` and its ``sha256``. A 3 MiB file
is refused as a file of the limit plus one byte, under a digest of no file anyone has:
the depositor cannot tell from its receipt which of its files it was, nor how much too
large, and the reason is not the precise one the gateway promises. (Its size is known
without reading it, fstat; a digest of a prefix had better not be given at all.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gun_hub.gateway.file_drop import RECEIPT_SUFFIX, DropFolder, DropWatcher
from gun_hub.gateway.lodging import Gateway, Lodger
from tests.builders import declaration_xml
from tests.drop_fixtures import TOPICS, folder, recording_sender, started_gateway

__all__ = ["folder"]  # fixtures, used by name below

LIMIT = 64 * 1024


@pytest.fixture
async def gateway(keys_dir: Path) -> AsyncIterator[Gateway]:
    started = await started_gateway(recording_sender(keys_dir), max_bytes=LIMIT)
    yield started
    await started.stop()


async def test_an_oversized_file_is_refused_under_its_own_size_and_digest(
    folder: DropFolder, gateway: Gateway
) -> None:
    data = declaration_xml(reference="FR12345678901234-FILE-0000000901") + b" " * (3 * LIMIT)
    (folder.root / "big.xml").write_bytes(data)
    running = DropWatcher(
        folder, gateway, Lodger("this drop folder"), topic=TOPICS.declarations, settle_s=0
    )
    assert await running.pass_once() == 1
    [receipt] = [json.loads(p.read_text()) for p in folder.rejected.glob(f"*{RECEIPT_SUFFIX}")]
    assert receipt["kind"] == "XML_OVERSIZED"
    assert receipt["bytes"] == len(data), (
        f"the receipt says {receipt['bytes']} bytes, the file has {len(data)}"
    )
    assert receipt.get("sha256") in (None, hashlib.sha256(data).hexdigest()), (
        "a digest of the file's first bytes only, which matches no file"
    )
    assert f"{len(data)} bytes" in receipt["reason"], receipt["reason"]
