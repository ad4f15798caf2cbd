"""The watcher's lock file, ``DIR/.gun-hub-watch.lock``, lives in the folder the
depositors write (gun_hub/gateway/file_drop.py, ``DropFolder.locked``). It is opened
``O_WRONLY | O_CREAT | O_NOFOLLOW`` without ``O_NONBLOCK``: a depositor who puts a named
pipe there (``mkfifo DIR/.gun-hub-watch.lock``) makes that open wait for a reader, for
ever. ``gun-hub intake watch DIR`` then hangs at start, before its probes listen and
before any file is taken, for every depositor of the folder, and at every restart: no
error, no log line. A symlink there is refused (``DropFolderUnsafe``, exit 2, naming
it); a pipe, or anything else that is not a regular file, must be too, at once.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

import pytest

from gun_hub.gateway.file_drop import LOCK_NAME, DropFolder, DropFolderBusy, DropFolderUnsafe


def test_a_lock_file_replaced_by_a_pipe_is_refused_at_once(tmp_path: Path) -> None:
    folder = DropFolder(tmp_path / "drop")
    folder.root.mkdir()
    folder.prepare()
    lock = folder.root / LOCK_NAME
    os.mkfifo(lock)
    outcome: list[BaseException | None] = []

    def start() -> None:
        try:
            with folder.locked():
                outcome.append(None)
        except BaseException as err:  # noqa: BLE001 (what start-up says is the test's)
            outcome.append(err)

    starting = threading.Thread(target=start, daemon=True)
    starting.start()
    starting.join(timeout=3)
    hung = starting.is_alive()
    if hung:  # let the thread go: be the reader it waits for
        reader = os.open(lock, os.O_RDONLY | os.O_NONBLOCK)
        starting.join(timeout=3)
        os.close(reader)
    assert not hung, "the watcher's start waits for ever on a pipe a depositor made"
    [err] = outcome
    assert isinstance(err, DropFolderUnsafe), err
    assert LOCK_NAME in str(err)


def test_the_watcher_s_own_lock_file_still_locks(tmp_path: Path) -> None:
    folder = DropFolder(tmp_path / "drop")
    folder.root.mkdir()
    folder.prepare()
    with folder.locked():
        pass
    with folder.locked():  # its own regular file, left by the last run: taken again
        pass


def test_a_lock_file_replaced_by_a_folder_is_refused_naming_it(tmp_path: Path) -> None:
    """``mkdir DIR/.gun-hub-watch.lock``: the open raises IsADirectoryError, which the
    command does not say as a refusal (``cannot start: ...``) but ends on as a traceback."""
    folder = DropFolder(tmp_path / "drop")
    folder.root.mkdir()
    folder.prepare()
    (folder.root / LOCK_NAME).mkdir()
    try:
        with folder.locked():
            raised: BaseException | None = None
    except BaseException as err:  # noqa: BLE001 (what start-up says is the test's)
        raised = err
    assert isinstance(raised, DropFolderUnsafe), repr(raised)
    assert LOCK_NAME in str(raised)


def test_a_lock_file_a_depositor_made_and_holds_is_refused_as_not_the_watcher_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A depositor makes the lock file first (before the watcher's first start, or in a
    folder without the sticky bit after deleting the watcher's) and holds a lock on it
    from a process of its own: every start of the watcher is then refused as "another
    watcher is watching", for ever, and the operator is sent looking for a second
    watcher. The lock file is not the watcher's: that is tampering, to be said so."""
    folder = DropFolder(tmp_path / "drop")
    folder.root.mkdir()
    folder.prepare()
    lock = folder.root / LOCK_NAME
    lock.write_bytes(b"")
    depositor = lock.stat().st_uid
    # As if the watcher were another user than the lock file's maker (the tests may run
    # as root, who cannot be shown a file it does not own otherwise).
    monkeypatch.setattr(os, "geteuid", lambda: depositor + 1)
    with lock.open("rb") as held:  # the depositor's process, holding it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            with folder.locked():
                raised: BaseException | None = None
        except (DropFolderBusy, DropFolderUnsafe) as err:
            raised = err
    assert isinstance(raised, DropFolderUnsafe), repr(raised)
    assert f"uid {depositor}" in str(raised)
