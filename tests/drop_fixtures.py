"""The drop folder, the recording sender and the gateway the file-drop tests share.

Imported by name into a test module (``from tests.drop_fixtures import folder, gateway,
sender``), each is a pytest fixture there; a module that needs another folder (a umask of
its own) or another gateway (a size limit) makes it with :func:`prepared_folder` or
:func:`started_gateway`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gun_contract.security.entitlements import GATEWAY_PARTY
from gun_contract.topics import topic_registry
from gun_hub.gateway.file_drop import DropFolder
from gun_hub.gateway.lodging import Gateway
from tests.conftest import envelope_of
from tests.gateway_fixtures import RecordingSender, gateway_with

TOPICS = topic_registry("gun", ("dgal",))


def prepared_folder(root: Path) -> DropFolder:
    """A drop folder at ``root``, made, its sub-folders prepared."""
    folder = DropFolder(root)
    folder.root.mkdir()
    folder.prepare()
    return folder


def recording_sender(keys_dir: Path) -> RecordingSender:
    return RecordingSender(envelope_of(GATEWAY_PARTY, TOPICS, keys_dir), TOPICS.declarations)


async def started_gateway(sender: RecordingSender, **limits: int) -> Gateway:
    gateway = gateway_with(sender, **limits)
    await gateway.start()
    return gateway


@pytest.fixture
def folder(tmp_path: Path) -> DropFolder:
    return prepared_folder(tmp_path / "drop")


@pytest.fixture
def sender(keys_dir: Path) -> RecordingSender:
    return recording_sender(keys_dir)


@pytest.fixture
async def gateway(sender: RecordingSender) -> AsyncIterator[Gateway]:
    started = await started_gateway(sender)
    yield started
    await started.stop()
