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
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from gun_hub.gateway.file_drop import (
    RECEIPT_SUFFIX,
    DropFolder,
    DropFolderBusy,
    DropFolderUnsafe,
    DropWatcher,
    OpenDropFolder,
    Settling,
)
from gun_hub.gateway.lodging import Gateway, Lodger
from gun_hub.gateway.probes import probes_app
from gun_hub.web.listeners import Listener
from gun_tools.processes import free_port
from tests.builders import EORI, declaration_xml
from tests.drop_fixtures import TOPICS, folder, gateway, sender
from tests.gateway_fixtures import RecordingSender

__all__ = ["folder", "gateway", "sender"]  # fixtures, used by name below


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
    with folder.opened() as opened:
        claimed = opened.claim("i.xml")
    assert claimed is not None
    assert await watcher(folder, gateway).pass_once() == 1
    assert sender.references() == ["FR12345678901234-FILE-0000000005"]
    assert files(folder.done) == [claimed.name]


async def test_after_a_crash_a_file_whose_receipt_was_written_is_only_moved_on(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender
) -> None:
    """Killed between the receipt and the move: it was lodged, it is not published again."""
    drop(folder, "j.xml", declaration_xml(reference="FR12345678901234-FILE-0000000006"))
    with folder.opened() as opened:
        claimed = opened.claim("j.xml")
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
    def refused(opened: OpenDropFolder, path: Path, limit: int) -> bytes:
        # What open() raises on a file of mode 000 (the tests may run as root, who reads it).
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(OpenDropFolder, "read", refused)
    drop(folder, "l.xml", declaration_xml())
    assert await watcher(folder, gateway).pass_once() == 1
    assert sender.published == []
    [receipt] = receipts(folder.rejected)
    assert receipt["kind"] == "FILE_UNREADABLE"
    assert receipt["reason"] == "cannot read: Permission denied"


def test_a_second_watcher_on_the_same_folder_is_refused(folder: DropFolder) -> None:
    with folder.locked(), pytest.raises(DropFolderBusy), folder.locked():
        pass


# -- review stop 37-i, 1: a depositor can write the folder, so it can rename or replace
# processing/, done/ and rejected/, or swap a file it dropped for a link between two looks.
# The watcher follows no link at any depth and uses sub-folders of its own only.

OTHER_DECLARANTS = "DE999999999"
ANOTHER_S_REFERENCE = "FR12345678901234-FILE-0000000099"


def refused_metric() -> float | None:
    return REGISTRY.get_sample_value("gun_hub_gateway_drop_folder_refused")


def another_declarant_s_file(tmp_path: Path) -> Path:
    """A declaration the watcher can read and the depositor cannot: another drop folder's."""
    other = tmp_path / "other-drop" / "done"
    other.mkdir(parents=True)
    secret = other / "x.xml"
    secret.write_bytes(declaration_xml(reference=ANOTHER_S_REFERENCE))
    return secret


def every_receipt_under(place: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(place.rglob(f"*{RECEIPT_SUFFIX}"))]


@pytest.mark.parametrize("part", ["processing", "done", "rejected"])
def test_a_sub_folder_that_is_a_symlink_is_refused_at_start(tmp_path: Path, part: str) -> None:
    folder = DropFolder(tmp_path / "drop")
    folder.root.mkdir()
    (tmp_path / "depositor").mkdir()
    (folder.root / part).symlink_to(tmp_path / "depositor")
    with pytest.raises(DropFolderUnsafe, match=rf"drop/{part} is a symlink"):
        folder.prepare()


@pytest.mark.parametrize(("mode", "warned"), [(0o2770, True), (0o3770, False), (0o2750, False)])
def test_a_folder_depositors_share_without_the_sticky_bit_is_warned_of_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int, warned: bool
) -> None:
    """Depositors who may write the folder may rename or delete any entry of it unless
    its sticky bit is set: the watcher's done/ renamed stops it taking files for every
    depositor, another depositor's file deleted before it is claimed is lost (found by
    review, stop 46; the deployment advice was 2770). Said at start, naming the fix."""
    folder = DropFolder(tmp_path / "drop")
    folder.root.mkdir()
    folder.root.chmod(mode)
    with caplog.at_level("WARNING", logger="gun_hub.gateway.file_drop"):
        folder.prepare()
    said = [r.getMessage() for r in caplog.records if "sticky" in r.getMessage()]
    assert bool(said) is warned, said
    if warned:
        assert "chmod +t" in said[0]


def test_a_sub_folder_that_is_not_a_folder_is_refused_at_start(tmp_path: Path) -> None:
    folder = DropFolder(tmp_path / "drop")
    folder.root.mkdir()
    (folder.root / "done").write_bytes(b"")
    with pytest.raises(DropFolderUnsafe, match=r"drop/done is not a folder"):
        folder.prepare()


@pytest.mark.parametrize("mode", [0o770, 0o702, 0o777])
def test_a_sub_folder_others_can_write_is_refused_at_start(folder: DropFolder, mode: int) -> None:
    folder.rejected.chmod(mode)
    with pytest.raises(
        DropFolderUnsafe, match=rf"drop/rejected is writable by others .*{mode:04o}"
    ):
        folder.prepare()


def test_a_sub_folder_someone_else_owns_is_refused_at_start(
    folder: DropFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if the depositor had put a folder of its own in place of the watcher's (the tests
    may run as root, who cannot be shown a folder it does not own otherwise)."""
    owner = folder.processing.stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)
    with pytest.raises(DropFolderUnsafe, match=rf"drop/processing belongs to uid {owner}, not"):
        folder.prepare()


def test_the_sub_folders_are_made_the_watcher_s_alone_whatever_the_umask(tmp_path: Path) -> None:
    folder = DropFolder(tmp_path / "drop")
    folder.root.mkdir()
    umask = os.umask(0)
    try:
        folder.prepare()
    finally:
        os.umask(umask)
    modes = {
        p: stat.S_IMODE((folder.root / p).lstat().st_mode)
        for p in ("processing", "done", "rejected")
    }
    # done/ and rejected/: the folder's group (the depositors) reads its receipts there.
    assert modes == {"processing": 0o700, "done": 0o750, "rejected": 0o750}
    folder.prepare()  # what it made, it accepts


async def test_a_depositor_swapping_processing_for_a_symlink_gets_nothing_read(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender, tmp_path: Path
) -> None:
    """The review's case: processing/ swapped, while the watcher runs, for a folder of the
    depositor's holding a link to another declarant's file. The watcher stops taking files
    and says so; it neither reads the file nor writes a receipt anywhere."""
    secret = another_declarant_s_file(tmp_path)
    mine = tmp_path / "depositor"
    mine.mkdir()
    (mine / "20260101T000000000000Z-abcdef--stolen.xml").symlink_to(secret)
    folder.processing.rmdir()
    folder.processing.symlink_to(mine)
    drop(folder, "a.xml", declaration_xml(reference="FR12345678901234-FILE-0000000010"))
    running = DropWatcher(
        folder, gateway, Lodger("d", frozenset({OTHER_DECLARANTS})), topic=TOPICS.declarations,
        settle_s=0,
    )  # fmt: skip

    assert await running.pass_once() == 0
    assert sender.published == []
    assert every_receipt_under(tmp_path) == [], "nothing read, nothing written"
    assert files(folder.root) == ["a.xml", "done", "processing", "rejected"], "nothing claimed"
    assert running.refused is not None
    assert "drop/processing is a symlink" in running.refused
    assert running.not_ready() == [running.refused], "what /readyz says"
    assert refused_metric() == 1

    # Mended (the watcher's own folder back): the next look takes the waiting file.
    folder.processing.unlink()
    folder.processing.mkdir(mode=0o700)
    assert await running.pass_once() == 1
    assert running.not_ready() == []
    assert refused_metric() == 0
    assert sender.references() == []  # DE999999999's folder: rejected, not lodged
    [receipt] = receipts(folder.rejected)
    assert receipt["file"] == "a.xml"


@pytest.mark.parametrize("part", ["done", "rejected"])
async def test_done_and_rejected_that_are_symlinks_are_refused(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender, tmp_path: Path, part: str
) -> None:
    """No receipt (nor file) is ever written through a link: not into the depositor's reach,
    not over a file the watcher may write."""
    mine = tmp_path / "depositor"
    mine.mkdir()
    (folder.root / part).rmdir()
    (folder.root / part).symlink_to(mine)
    drop(folder, "good.xml", declaration_xml(reference="FR12345678901234-FILE-0000000011"))
    drop(folder, "bad.xml", b"<not a declaration")
    running = watcher(folder, gateway)
    assert await running.pass_once() == 0
    assert list(mine.iterdir()) == []
    assert sender.published == []
    assert files(folder.root) == ["bad.xml", "done", "good.xml", "processing", "rejected"]
    assert running.refused is not None
    assert f"drop/{part} is a symlink" in running.refused


async def test_a_symlink_in_processing_is_not_read(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender, tmp_path: Path
) -> None:
    """A link in processing/ (only a claim racing a swap puts one there) is left alone."""
    link = folder.processing / "20260101T000000000000Z-abcdef--stolen.xml"
    link.symlink_to(another_declarant_s_file(tmp_path))
    assert await watcher(folder, gateway).pass_once() == 0
    assert sender.published == []
    assert every_receipt_under(tmp_path) == []
    assert link.is_symlink()


@pytest.mark.timeout(20)  # a pipe opened for reading without O_NONBLOCK waits for a writer
@pytest.mark.parametrize("swapped_for", ["a symlink", "a pipe"])
async def test_a_file_swapped_between_the_look_and_the_claim_is_rejected_unread(
    folder: DropFolder,
    gateway: Gateway,
    sender: RecordingSender,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    swapped_for: str,
) -> None:
    """The look saw a settled regular file; by the claim, the depositor had put a link (or a
    pipe) in its place. The claim moves whatever is there: it is set aside unread."""
    if swapped_for == "a symlink":
        (folder.root / "m.xml").symlink_to(another_declarant_s_file(tmp_path))
    else:
        os.mkfifo(folder.root / "m.xml")
    monkeypatch.setattr(DropFolder, "waiting", lambda self: {"m.xml": (835, 1, 1)})
    lodger = Lodger("d", frozenset({OTHER_DECLARANTS}))
    assert await watcher(folder, gateway, lodger).pass_once() == 1
    assert sender.published == []
    [receipt] = receipts(folder.rejected)
    assert receipt["kind"] == "FILE_NOT_REGULAR"
    assert receipt["reason"].startswith(swapped_for if swapped_for == "a symlink" else "not a")
    assert (receipt["bytes"], "reference" in receipt) == (0, False), "nothing of it read"
    assert ANOTHER_S_REFERENCE not in json.dumps(receipt)
    [moved] = files(folder.rejected)
    moved_mode = (folder.rejected / moved).lstat().st_mode
    assert not stat.S_ISREG(moved_mode), "the link (or pipe) itself moved, not a copy"


def test_a_lock_file_replaced_by_a_symlink_is_not_followed(
    folder: DropFolder, tmp_path: Path
) -> None:
    target = tmp_path / "the-watcher-could-write-this"
    (folder.root / ".gun-hub-watch.lock").symlink_to(target)
    refused = pytest.raises(DropFolderUnsafe, match=r"drop/\.gun-hub-watch\.lock is a symlink")
    with refused, folder.locked():
        pass
    assert not target.exists(), "not made through the link"


async def test_the_gateway_s_readiness_says_the_folder_is_refused_while_it_is(
    folder: DropFolder, gateway: Gateway
) -> None:
    """Not a crash loop: the process lives (``/livez``), ``/readyz`` says why nothing is taken."""
    running = watcher(folder, gateway)
    listener = Listener("probes", probes_app(gateway, running.not_ready), "127.0.0.1", free_port())
    await listener.start()
    try:
        url = f"http://127.0.0.1:{listener.port}"
        async with aiohttp.ClientSession() as http:
            folder.done.chmod(0o777)
            await running.pass_once()
            async with http.get(f"{url}/readyz") as answer:
                assert answer.status == 503
                [why] = (await answer.json())["waiting"]
                assert "drop/done is writable by others" in why
            async with http.get(f"{url}/livez") as answer:
                assert answer.status == 200
            folder.done.chmod(0o750)
            await running.pass_once()
            async with http.get(f"{url}/readyz") as answer:
                assert (answer.status, await answer.json()) == (200, {"status": "ready"})
    finally:
        await listener.stop()


@pytest.mark.parametrize("name_bytes", [215, 240, 255])
async def test_a_file_whose_name_is_too_long_to_follow_is_rejected_and_the_next_lodged(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender, name_bytes: int
) -> None:
    """A name the filesystem takes (up to 255 bytes) but the watcher's own names cannot
    carry (its claim adds a prefix, its receipt a suffix): it crashed the watcher at every
    start (240 bytes) or was tried again at every look, with no receipt (215) (security
    probe, stop 50). Rejected at the door under a short name, with a receipt naming it
    whole; the watcher goes on."""
    long_name = "é" * ((name_bytes - 4) // 2) + "x" * ((name_bytes - 4) % 2) + ".xml"
    assert len(long_name.encode()) == name_bytes
    data = declaration_xml(reference="FR12345678901234-FILE-0000000009")
    (folder.root / long_name).write_bytes(data)  # no room for a .part name
    drop(folder, "next.xml", declaration_xml(reference="FR12345678901234-FILE-0000000010"))
    assert await watcher(folder, gateway).pass_once() == 2
    assert sender.references() == ["FR12345678901234-FILE-0000000010"], "only the next one"
    [receipt] = receipts(folder.rejected)
    assert receipt["file"] == long_name
    assert receipt["kind"] == "FILE_NAME_TOO_LONG"
    assert f"{name_bytes} bytes" in receipt["reason"]
    assert (receipt["result"], receipt["bytes"]) == ("rejected", len(data))
    [kept] = files(folder.rejected)
    assert (folder.rejected / kept).read_bytes() == data, "set aside whole, unread"
    assert kept in receipt["reason"]
    assert files(folder.processing) == []
    assert sorted(p.name for p in folder.root.iterdir() if p.is_file()) == []
    assert await watcher(folder, gateway).pass_once() == 0, "not taken again"


async def test_the_longest_name_the_watcher_carries_is_lodged(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender
) -> None:
    longest = "a" * (DropFolder.LONGEST_NAME_BYTES - 4) + ".xml"
    drop(folder, longest, declaration_xml(reference="FR12345678901234-FILE-0000000011"))
    assert await watcher(folder, gateway).pass_once() == 1
    [receipt] = receipts(folder.done)
    assert (receipt["file"], receipt["result"]) == (longest, "lodged")


async def test_a_file_the_watcher_cannot_claim_is_left_and_the_watcher_goes_on(
    folder: DropFolder,
    gateway: Gateway,
    sender: RecordingSender,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Any other error moving one file (not the folder's own) leaves that file where it
    is, said once, and the others are lodged: before, it ended the watcher."""
    drop(folder, "stuck.xml", declaration_xml(reference="FR12345678901234-FILE-0000000012"))
    drop(folder, "fine.xml", declaration_xml(reference="FR12345678901234-FILE-0000000013"))
    claim = OpenDropFolder.claim

    def refusing(opened: OpenDropFolder, name: str) -> Path | None:
        if name == "stuck.xml":
            raise OSError(errno.EPERM, "Operation not permitted")
        return claim(opened, name)

    monkeypatch.setattr(OpenDropFolder, "claim", refusing)
    assert await watcher(folder, gateway).pass_once() == 1
    assert sender.references() == ["FR12345678901234-FILE-0000000013"]
    assert (folder.root / "stuck.xml").exists()


async def test_a_file_whose_name_is_not_utf8_is_rejected_and_the_next_lodged(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender
) -> None:
    """Its receipt could not name it: it ended the watcher at every pass (review, stop
    50; before, after its claim, and it was lodged again at every restart)."""
    data = declaration_xml(reference="FR12345678901234-FILE-0000000014")
    (folder.root / os.fsdecode(b"d\xe9claration-\xff.xml")).write_bytes(data)
    drop(folder, "next.xml", declaration_xml(reference="FR12345678901234-FILE-0000000015"))
    assert await watcher(folder, gateway).pass_once() == 2
    assert sender.references() == ["FR12345678901234-FILE-0000000015"]
    [receipt] = receipts(folder.rejected)
    assert (receipt["kind"], receipt["file"]) == ("FILE_NAME_NOT_UTF8", "d\\xe9claration-\\xff.xml")
    [kept] = files(folder.rejected)
    assert (folder.rejected / kept).read_bytes() == data


async def test_a_long_name_dropped_again_is_set_aside_again_beside_the_first(
    folder: DropFolder, gateway: Gateway
) -> None:
    """Each drop keeps its file and its receipt (the short name was the name's alone:
    the second overwrote the first, review stop 50)."""
    long_name = "l" * 230 + ".xml"
    for content in (b"first deposit", b"second deposit, same name"):
        (folder.root / long_name).write_bytes(content)
        assert await watcher(folder, gateway).pass_once() == 1
    assert sorted((folder.rejected / f).read_bytes() for f in files(folder.rejected)) == [
        b"first deposit",
        b"second deposit, same name",
    ]
    assert len(receipts(folder.rejected)) == 2


async def test_a_file_an_earlier_version_claimed_under_a_name_too_long_is_set_aside(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender
) -> None:
    """Claimed before names were checked: its receipt cannot be written, so it was
    lodged again at every look (review stop 50)."""
    claimed = "20261206T000000000000Z-abcdef--" + "c" * 205 + ".xml"
    (folder.processing / claimed).write_bytes(declaration_xml())
    assert await watcher(folder, gateway).pass_once() == 1
    assert sender.published == []
    [receipt] = receipts(folder.rejected)
    assert (receipt["kind"], receipt["file"]) == ("FILE_NAME_TOO_LONG", "c" * 205 + ".xml")
    assert files(folder.processing) == []


async def test_a_drop_folder_gone_for_a_while_stops_nothing_and_is_watched_again(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender
) -> None:
    """The folder itself moved away (an unmounted share, an operator's rename): opening
    it raised, and the error ended the watcher, and the gateway with it (stop 50's open
    item). Now the folder is refused while it is gone (``/readyz``, the metric, the log
    once) and taken again once back."""
    running = watcher(folder, gateway)
    away = folder.root.with_name("drop-moved-away")
    folder.root.rename(away)
    assert await running.pass_once() == 0
    assert await running.pass_once() == 0, "looked again, still refused, not ended"
    [why] = running.not_ready()
    assert str(folder.root) in why
    assert "No such file or directory" in why
    assert refused_metric() == 1
    away.rename(folder.root)
    drop(folder, "back.xml", declaration_xml(reference="FR12345678901234-FILE-0000000021"))
    assert await running.pass_once() == 1
    assert (running.not_ready(), refused_metric()) == ([], 0)
    assert sender.references() == ["FR12345678901234-FILE-0000000021"]


@pytest.mark.parametrize("listed", ["the folder", "processing/"])
async def test_a_folder_that_cannot_be_listed_is_refused_until_it_can(
    folder: DropFolder,
    gateway: Gateway,
    sender: RecordingSender,
    monkeypatch: pytest.MonkeyPatch,
    listed: str,
) -> None:
    """An I/O error listing the folder or processing/ (a failing disk, a share's
    timeout; as root on this machine, no permission can make one): the pass is given up,
    the folder refused with the error, the watcher goes on."""
    scandir = os.scandir

    def failing(where: Any) -> Any:
        # processing/ is listed through its descriptor, the folder by its path.
        if (listed == "the folder") == (where == folder.root):
            raise OSError(errno.EIO, "Input/output error")
        return scandir(where)

    monkeypatch.setattr(os, "scandir", failing)
    drop(folder, "later.xml", declaration_xml(reference="FR12345678901234-FILE-0000000022"))
    running = watcher(folder, gateway)
    assert await running.pass_once() == 0
    [why] = running.not_ready()
    assert "Input/output error" in why
    monkeypatch.setattr(os, "scandir", scandir)
    assert await running.pass_once() == 1
    assert running.not_ready() == []
    assert sender.references() == ["FR12345678901234-FILE-0000000022"]
