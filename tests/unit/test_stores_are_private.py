"""Every SQLite store is readable by its owner only, whatever the umask.

The operations view holds each declarant's EORI, documents and history; the adapters'
pending queue the operations waiting for a partner; the replay memories what was read
where. Under the usual umask 022 they were made 0644 in a 0755 folder: readable by every
local account (found by review in stop 35). A store is now made 0600 in a folder made
0700, its write-ahead log and shared-memory file with it (SQLite gives those the main
file's mode), and a store made before is narrowed to 0600 when it is opened.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.base.pending import PendingOperations
from gun_contract.security.replay import SqliteReplayGuard
from gun_contract.sqlite import open_database
from gun_contract.topics import topic_registry
from gun_hub.ops.view import FeedTopics, OpsView
from partner_sim.store import LedgerStore


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def files_of(database: Path) -> list[Path]:
    """The database and the files SQLite keeps beside it while it is open."""
    found = [database.with_name(database.name + suffix) for suffix in ("-wal", "-shm")]
    return [database, *(path for path in found if path.exists())]


def view(path: Path) -> object:
    topics = topic_registry("gun", ["dgal", "cites", "dga"])
    return OpsView(
        path,
        FeedTopics(
            status=topics.status, facts=topics.facts, dlq=topics.dlq, health=topics.ops_health
        ),
    )


STORES: dict[str, Callable[[Path], object]] = {
    "operations view": view,
    "replay memory": lambda path: SqliteReplayGuard(path, keep_after_expiry_s=60),
    "pending queue": PendingOperations,
    "partner ledger": LedgerStore,
}


@pytest.mark.parametrize("make", STORES.values(), ids=STORES)
def test_a_store_is_made_readable_by_its_owner_only(
    tmp_path: Path, make: Callable[[Path], object]
) -> None:
    database = tmp_path / "new-folder" / "store.sqlite3"
    store = make(database)
    assert mode(database.parent) == 0o700
    assert database.with_name(database.name + "-wal").exists()  # open, in WAL mode
    for path in files_of(database):
        assert mode(path) == 0o600, path.name
    del store


def test_the_write_ahead_log_and_shared_memory_take_the_database_s_mode(
    tmp_path: Path,
) -> None:
    db = open_database(tmp_path / "s.sqlite3")
    db.execute("CREATE TABLE t (x INTEGER)")
    db.execute("INSERT INTO t VALUES (1)")
    written = files_of(tmp_path / "s.sqlite3")
    assert [path.name for path in written] == ["s.sqlite3", "s.sqlite3-wal", "s.sqlite3-shm"]
    assert [mode(path) for path in written] == [0o600, 0o600, 0o600]


def test_a_store_made_before_is_narrowed_when_opened(tmp_path: Path) -> None:
    database = tmp_path / "s.sqlite3"
    open_database(database).close()
    database.chmod(0o644)
    db = open_database(database)
    db.execute("CREATE TABLE t (x INTEGER)")
    assert [mode(path) for path in files_of(database)] == [0o600, 0o600, 0o600]


def test_an_existing_folder_is_left_as_it_is(tmp_path: Path) -> None:
    """The folder may be a volume, or /tmp, that others use too: only what the store
    makes is its own."""
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    open_database(folder / "s.sqlite3")
    assert mode(folder) == 0o755
    assert mode(folder / "s.sqlite3") == 0o600


# component (as tests/started_components.py builds it) -> its data folder there
DATA_FOLDERS = {"view": "view", "hub": "data"}


@pytest.mark.parametrize("component", sorted(DATA_FOLDERS))
def test_a_process_makes_its_missing_data_folder_readable_by_its_owner_only(
    tmp_path: Path, component: str
) -> None:
    """``gun-hub view`` made its data folder (the operations view's) 0755 before the
    SQLite helper, which leaves a folder that exists as it is; the hub its data folder
    likewise (review stop 39-C). Built as at start-up, in a process of its own (the
    metrics registry is process-wide), under the usual umask."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.started_components", component, str(tmp_path)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert mode(tmp_path / DATA_FOLDERS[component]) == 0o700
