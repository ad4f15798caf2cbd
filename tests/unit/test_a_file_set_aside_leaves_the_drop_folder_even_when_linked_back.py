"""A file whose name the watcher cannot carry (too long, not UTF-8) is set aside in
rejected/ under a short name made of its name and its inode (gun_hub/gateway/file_drop.py,
``_set_aside_name``), by ``os.rename``. The depositor owns that file and may traverse
rejected/ (0750, the folder's group), so it may hard-link it back into the folder under
the same long name: the same name and the same inode make the same short name, and
rename(2) of one link onto another link of the same inode does nothing and succeeds. The
file then never leaves the folder: it is "set aside" again at every pass (its receipt
rewritten and fsynced), each pass counts it as work so the watcher never waits between
passes, and with as many such links as the batch holds no other file is ever taken.

The broker is a list (tests/gateway_fixtures.py); the folder is real.
"""

from __future__ import annotations

import os

from gun_hub.gateway.file_drop import RECEIPT_SUFFIX, DropFolder, DropWatcher
from gun_hub.gateway.lodging import Gateway, Lodger
from tests.builders import declaration_xml
from tests.drop_fixtures import TOPICS, folder, gateway, sender
from tests.gateway_fixtures import RecordingSender

__all__ = ["folder", "gateway", "sender"]  # fixtures, used by name below

LONG_NAME = "l" * 230 + ".xml"  # over the 206 bytes the watcher carries: set aside


def watcher(folder: DropFolder, gateway: Gateway, batch: int = 50) -> DropWatcher:
    return DropWatcher(
        folder, gateway, Lodger("this drop folder"), topic=TOPICS.declarations, settle_s=0,
        batch=batch,
    )  # fmt: skip


def set_aside_files(folder: DropFolder) -> list[str]:
    return sorted(p.name for p in folder.rejected.iterdir() if not p.name.endswith(RECEIPT_SUFFIX))


async def test_a_set_aside_file_linked_back_under_its_name_is_not_set_aside_at_every_pass(
    folder: DropFolder, gateway: Gateway
) -> None:
    running = watcher(folder, gateway)
    (folder.root / LONG_NAME).write_bytes(b"a deposit whose name is too long")
    assert await running.pass_once() == 1
    [short] = set_aside_files(folder)

    # The depositor owns the file set aside and may traverse rejected/: it links it back.
    os.link(folder.rejected / short, folder.root / LONG_NAME)
    await running.pass_once()

    assert not (folder.root / LONG_NAME).exists(), (
        "the link dropped again must leave the folder like any file set aside; rename(2) "
        "onto the same inode did nothing and it is still there"
    )
    assert await running.pass_once() == 0, "nothing left to do: the watcher may wait"


async def test_links_to_set_aside_files_do_not_keep_every_other_file_waiting(
    folder: DropFolder, gateway: Gateway, sender: RecordingSender
) -> None:
    """As many such links as the batch holds (here 2), named to sort first: every pass
    is spent setting them aside again, and a good file behind them is never taken."""
    running = watcher(folder, gateway, batch=2)
    for first_letter in "ab":
        name = first_letter + LONG_NAME[1:]
        (folder.root / name).write_bytes(f"deposit {first_letter}".encode())
        assert await running.pass_once() == 1
    # Link each set-aside file back under the long name it came from.
    for short in set_aside_files(folder):
        first_letter = short.partition("--")[2][0]
        os.link(folder.rejected / short, folder.root / (first_letter + LONG_NAME[1:]))

    good = declaration_xml(reference="FR12345678901234-FILE-0000000301")
    (folder.root / "z-good.xml").write_bytes(good)
    for _ in range(5):
        await running.pass_once()
    assert sender.references() == ["FR12345678901234-FILE-0000000301"], (
        "a good file waits for ever behind links the watcher sets aside again at every pass"
    )
