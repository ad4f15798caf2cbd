"""Issue 13, item 2: the file drop lodges each complete file once, says what became of it
in a receipt, and picks up where a crash left it (gun_hub/gateway/file_drop.py).

The folder is real, the broker a list (tests/gateway_fixtures.py); a crash is played by
leaving the folder as a killed watcher leaves it. The watcher killed for real, with the
hub deciding behind it, is in tests/e2e/test_intake_channels.py.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from gun_contract.security.entitlements import GATEWAY_PARTY
from gun_contract.topics import topic_registry
from gun_hub.gateway import file_drop
from gun_hub.gateway.file_drop import (
    RECEIPT_SUFFIX,
    DropFolder,
    DropFolderBusy,
    DropWatcher,
    Settling,
)
from gun_hub.gateway.lodging import Gateway, Lodger
from tests.builders import EORI, declaration_xml
from tests.conftest import envelope_of
from tests.gateway_fixtures import RecordingSender, gateway_with

TOPICS = topic_registry("gun", ("dgal",))


@pytest.fixture
def folder(tmp_path: Path) -> DropFolder:
    folder = DropFolder(tmp_path / "drop")
    folder.root.mkdir()
    folder.prepare()
    return folder


@pytest.fixture
def sender(keys_dir: Path) -> RecordingSender:
    return RecordingSender(envelope_of(GATEWAY_PARTY, TOPICS, keys_dir), TOPICS.declarations)


@pytest.fixture
async def gateway(sender: RecordingSender) -> Any:
    gateway = gateway_with(sender)
    await gateway.start()
    yield gateway
    await gateway.stop()


def watcher(folder: DropFolder, gateway: Gateway, lodger: Lodger | None = None) -> DropWatcher:
    return DropWatcher(
        folder, gateway, lodger or Lodger("this drop folder"), topic=TOPICS.declarations,
        settle_s=0,
    )  # fmt: skip


def drop(folder: DropFolder, name: str, data: bytes) -> None:
    """As the convention asks: written under a .part name, then renamed into place."""
    part = folder.root / f"{name}.part"
    part.write_bytes(data)
    part.rename(folder.root / name)


def receipts(place: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(place.glob(f"*{RECEIPT_SUFFIX}"))]


def files(place: Path) -> list[str]:
    return sorted(p.name for p in place.iterdir() if not p.name.endswith(RECEIPT_SUFFIX))


async def test_a_complete_file_is_lodged_once_and_moved_to_done_beside_its_receipt(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender
) -> None:
    data = declaration_xml(reference="FR12345678901234-FILE-0000000001")
    drop(folder, "a.xml", data)
    assert await watcher(folder, gateway).pass_once() == 1
    assert await watcher(folder, gateway).pass_once() == 0, "never taken twice"

    assert sender.references() == ["FR12345678901234-FILE-0000000001"]
    [done] = files(folder.done)
    assert done.endswith("--a.xml")
    assert (folder.done / done).read_bytes() == data
    [receipt] = receipts(folder.done)
    assert receipt["file"] == "a.xml"
    assert receipt["result"] == "lodged"
    assert (receipt["reference"], receipt["version"], receipt["declarant"]) == (
        "FR12345678901234-FILE-0000000001",
        1,
        EORI,
    )
    assert (receipt["topic"], receipt["partition"], receipt["offset"]) == ("gun.declarations", 0, 0)
    assert files(folder.root) == ["done", "processing", "rejected"]
    assert files(folder.processing) == []


async def test_a_file_still_being_written_is_never_taken(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender
) -> None:
    (folder.root / "b.xml.part").write_bytes(declaration_xml()[:100])
    (folder.root / ".c.xml").write_bytes(declaration_xml()[:100])
    assert await watcher(folder, gateway).pass_once() == 0
    assert sender.published == []
    assert sorted(p.name for p in folder.root.iterdir() if p.is_file()) == [".c.xml", "b.xml.part"]


def test_a_file_is_settled_once_unchanged_for_the_settle_time() -> None:
    now = [0.0]
    settling = Settling(1.0, clock=lambda: now[0])
    assert settling.settled({"d.xml": (10, 1, 7)}) == []
    now[0] = 0.6
    assert settling.settled({"d.xml": (20, 2, 7)}) == [], "it grew: the wait starts again"
    now[0] = 1.5
    assert settling.settled({"d.xml": (20, 2, 7)}) == []
    now[0] = 1.6
    assert settling.settled({"d.xml": (20, 2, 7)}) == ["d.xml"]


async def test_an_invalid_file_is_moved_to_rejected_with_the_hub_s_kind_and_reason(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender
) -> None:
    broken = declaration_xml(reference="FR12345678901234-FILE-0000000002").replace(
        b"<Version>1</Version>", b"<Version>one</Version>"
    )
    drop(folder, "e.xml", broken)
    assert await watcher(folder, gateway).pass_once() == 1
    assert sender.published == []
    [rejected] = files(folder.rejected)
    assert rejected.endswith("--e.xml")
    [receipt] = receipts(folder.rejected)
    assert receipt["result"] == "rejected"
    assert receipt["kind"] == "XML_SCHEMA"
    assert "/Declaration/Version" in receipt["reason"]
    assert receipt["reference"] == "FR12345678901234-FILE-0000000002", (
        "named for the declarant to find it"
    )


async def test_a_folder_for_named_declarants_rejects_another_declarant_s_file(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender
) -> None:
    drop(folder, "f.xml", declaration_xml())
    lodger = Lodger("this drop folder", frozenset({"DE999999999"}))
    assert await watcher(folder, gateway, lodger).pass_once() == 1
    assert sender.published == []
    [receipt] = receipts(folder.rejected)
    assert receipt["kind"] == "DECLARANT_MISMATCH"
    assert EORI in receipt["reason"]


async def test_the_same_name_dropped_twice_makes_two_lodgements_and_two_receipts(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender
) -> None:
    drop(folder, "g.xml", declaration_xml(reference="FR12345678901234-FILE-0000000003"))
    await watcher(folder, gateway).pass_once()
    drop(folder, "g.xml", declaration_xml(reference="FR12345678901234-FILE-0000000004"))
    await watcher(folder, gateway).pass_once()
    assert sender.references() == [
        "FR12345678901234-FILE-0000000003",
        "FR12345678901234-FILE-0000000004",
    ]
    assert [r["reference"] for r in receipts(folder.done)] == sender.references()


async def test_a_symlink_dropped_in_the_folder_is_not_followed(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.xml"
    outside.write_bytes(declaration_xml())
    (folder.root / "h.xml").symlink_to(outside)
    assert await watcher(folder, gateway).pass_once() == 0
    assert sender.published == []


async def test_after_a_crash_a_claimed_file_is_lodged_again(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender
) -> None:
    """Killed after the claim, before or after the broker had it: published (again)."""
    drop(folder, "i.xml", declaration_xml(reference="FR12345678901234-FILE-0000000005"))
    claimed = folder.claim("i.xml")
    assert claimed is not None
    assert await watcher(folder, gateway).pass_once() == 1
    assert sender.references() == ["FR12345678901234-FILE-0000000005"]
    assert files(folder.done) == [claimed.name]


async def test_after_a_crash_a_file_whose_receipt_was_written_is_only_moved_on(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender
) -> None:
    """Killed between the receipt and the move: it was lodged, it is not published again."""
    drop(folder, "j.xml", declaration_xml(reference="FR12345678901234-FILE-0000000006"))
    claimed = folder.claim("j.xml")
    assert claimed is not None
    receipt = folder.done / f"{claimed.name}{RECEIPT_SUFFIX}"
    receipt.write_text('{"result": "lodged"}')
    assert await watcher(folder, gateway).pass_once() == 1
    assert sender.published == []
    assert files(folder.done) == [claimed.name]
    assert files(folder.processing) == []


async def test_a_file_the_broker_did_not_confirm_stays_claimed_and_is_lodged_next_time(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender
) -> None:
    drop(folder, "k.xml", declaration_xml(reference="FR12345678901234-FILE-0000000007"))
    sender.confirm = False
    assert await watcher(folder, gateway).pass_once() == 0
    [claimed] = files(folder.processing)
    assert files(folder.done) == []
    sender.confirm = True
    assert await watcher(folder, gateway).pass_once() == 1
    assert sender.references() == ["FR12345678901234-FILE-0000000007"]
    assert files(folder.done) == [claimed]


async def test_an_unreadable_file_is_rejected_with_the_reason(
    folder: DropFolder,
    gateway: Gateway,
    sender: RecordingSender,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refused(path: Path, limit: int) -> bytes:
        # What open() raises on a file of mode 000 (the tests may run as root, who reads it).
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(file_drop, "_read_claimed", refused)
    drop(folder, "l.xml", declaration_xml())
    assert await watcher(folder, gateway).pass_once() == 1
    assert sender.published == []
    [receipt] = receipts(folder.rejected)
    assert receipt["kind"] == "FILE_UNREADABLE"
    assert receipt["reason"] == "cannot read: Permission denied"


def test_a_second_watcher_on_the_same_folder_is_refused(folder: DropFolder) -> None:
    with folder.locked(), pytest.raises(DropFolderBusy), folder.locked():
        pass
