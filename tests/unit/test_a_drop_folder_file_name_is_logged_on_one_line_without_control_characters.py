"""A file name is the depositor's to choose: any bytes but ``/`` and NUL, line feeds and
terminal escapes included. The watcher logs names as they are (gun_hub/gateway/file_drop.py:
``"%s rejected: %s"`` with the claimed name, ``_shown`` escaping only what is not UTF-8),
and the text log format (``GUN_HUB_LOG_FORMAT=text``, and ``auto`` whenever stderr is a
terminal: an operator running ``gun-hub intake watch`` by hand) writes messages raw
(gun_contract/logs.py). A depositor then writes lines of its choosing into the watcher's
log ("... ERROR ... drop folder refused ...", forged), or escape sequences into the
operator's terminal. A name must be shown on one line, its control characters escaped.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gun_hub.gateway.file_drop import DropFolder, DropWatcher
from gun_hub.gateway.lodging import Gateway, Lodger
from tests.drop_fixtures import TOPICS, folder, recording_sender, started_gateway

__all__ = ["folder"]  # fixtures, used by name below

FORGED = (
    "a.xml rejected: XML_EMPTY\n"
    "2026-12-07 16:00:00,000 ERROR   gateway.file gun_hub.gateway.file_drop: drop folder "
    "refused, no file is taken: forged\x1b]0;owned\x07\x1b[2K\r.xml"
)


@pytest.fixture
async def gateway(keys_dir: Path) -> AsyncIterator[Gateway]:
    started = await started_gateway(recording_sender(keys_dir))
    yield started
    await started.stop()


async def test_a_depositor_s_file_name_cannot_write_lines_or_escapes_into_the_log(
    folder: DropFolder, gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assert len(FORGED.encode()) <= DropFolder.LONGEST_NAME_BYTES, "a name the watcher takes"
    (folder.root / FORGED).write_bytes(b"")
    running = DropWatcher(
        folder, gateway, Lodger("this drop folder"), topic=TOPICS.declarations, settle_s=0
    )
    with caplog.at_level(logging.INFO, logger="gun_hub.gateway.file_drop"):
        assert await running.pass_once() == 1
    said = [r.getMessage() for r in caplog.records if r.name == "gun_hub.gateway.file_drop"]
    assert said, "the rejection is logged"
    raw = [m for m in said if any(c in m for c in "\n\r\x1b\x07")]
    assert raw == [], f"control characters of a depositor's name written raw: {raw!r}"
