"""A file the watcher cannot move into processing/ (its claim fails: a folder's permission,
a file server's trouble) is left where it is and said once, not at every pass. Once the
depositor takes it away, the watcher forgets it: the names it remembered were never
trimmed before (stop 56's note), so a folder whose files came and went grew that memory
for ever, and a new file dropped later under a name once refused was never said at all.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest

from gun_hub.gateway.file_drop import DropFolder, DropWatcher, OpenDropFolder
from gun_hub.gateway.lodging import Gateway, Lodger
from tests.builders import declaration_xml
from tests.drop_fixtures import TOPICS, folder, gateway, sender
from tests.gateway_fixtures import RecordingSender

__all__ = ["folder", "gateway", "sender"]  # fixtures, used by name below

REFERENCE = "FR12345678901234-FILE-0000000801"


async def test_a_new_file_under_the_name_of_one_that_could_not_be_taken_is_said_again(
    folder: DropFolder,
    gateway: Gateway,
    sender: RecordingSender,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def cannot_move(opened: OpenDropFolder, name: str) -> Path:
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), name)

    monkeypatch.setattr(OpenDropFolder, "claim", cannot_move)
    running = DropWatcher(
        folder, gateway, Lodger("this drop folder"), topic=TOPICS.declarations, settle_s=0
    )
    dropped = folder.root / "a.xml"
    with caplog.at_level(logging.WARNING, logger="gun_hub.gateway.file_drop"):
        dropped.write_bytes(declaration_xml(reference=REFERENCE))
        await running.pass_once()
        await running.pass_once()
        assert caplog.text.count("cannot be taken") == 1, "said once, not at every pass"
        dropped.unlink()  # the depositor takes it back
        await running.pass_once()
        dropped.write_bytes(declaration_xml(reference=REFERENCE))  # and drops a new one
        await running.pass_once()
    assert caplog.text.count("cannot be taken") == 2, "the new file's trouble was never said"
    assert sender.references() == []
