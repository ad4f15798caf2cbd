"""A RocksDB database whose info log another opener removed meanwhile opens on the next
try, not a worker's start refused (gun_hub/runtime/due_keys.py and table_store.py).

Every opening of a database rolls its info log (``LOG`` to ``LOG.old.<time>``) and
deletes the oldest beyond ``INFO_LOGS_KEPT``, listed a moment before; the process still
holding the database (a worker being replaced, closing) deletes the same files. The
opening that lost the race failed with "IO error: No such file or directory: while
unlink() file: .../LOG.old.<n>": read as "another hub worker on the same hub.data_dir",
the restarted worker exited (clean-clone CI, stop 48, one run in four). RocksDB's
message, as CI printed it, is injected here: the race itself lasts microseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rocksdict

from gun_hub.runtime import due_keys
from tests.unit.test_a_table_partition_s_changelog_offset_is_written_at_most_once_a_second import (
    _store,
)


def _vanished(folder: Path) -> Exception:
    log = folder / "LOG.old.1764975093123456"
    return Exception(
        f"IO error: No such file or directory: while unlink() file: {log}: "
        "No such file or directory"
    )


def _failing_once(error: Exception, then: Callable[..., Any]) -> Callable[..., Any]:
    return _failing(1, error, then)


def _failing(times: int, error: Exception, then: Callable[..., Any]) -> Callable[..., Any]:
    tries: list[object] = []

    def open_(*args: Any, **kwargs: Any) -> Any:
        tries.append(args)
        if len(tries) <= times:
            raise error
        return then(*args, **kwargs)

    return open_


def test_the_retention_index_opens_once_the_other_opener_has_removed_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "retention-due"
    real = rocksdict.Rdict
    monkeypatch.setattr(rocksdict, "Rdict", _failing_once(_vanished(folder), real))
    index = due_keys.RocksDueKeys(folder, lock_wait_s=10.0)
    index.put(0, 10.0, b"KEY")
    assert index.take(0, 100.0, None, 0) == [b"KEY"]
    index.close()


@pytest.mark.parametrize(
    "what",
    [
        "IO error: While open a file for appending: {folder}/LOG: Permission denied",
        "IO error: No such file or directory: While open a file for random read: "
        "{folder}/000012.sst: No such file or directory",
    ],
)
def test_any_other_io_error_is_still_refused_at_once(
    what: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the vanished info log is tried again: any other IO error names itself, a
    table file gone too (a damage, not a race)."""
    error = Exception(what.format(folder=tmp_path / "retention-due"))
    monkeypatch.setattr(rocksdict, "Rdict", _failing_once(error, rocksdict.Rdict))
    with pytest.raises(due_keys.DueKeysInUse, match="IO error") as refused:
        due_keys.RocksDueKeys(tmp_path / "retention-due", lock_wait_s=10.0)
    assert "another hub worker" not in str(refused.value)


@pytest.mark.parametrize("races_lost", [1, 3])
def test_a_table_partition_opens_once_the_other_openers_have_removed_the_log(
    races_lost: int, tmp_path: Path
) -> None:
    """faust tries a table's partition again only when RocksDB's message names a lock;
    in a rebalance two workers closing and one opening can each remove an info log (tried
    once only, the second race lost stopped the worker)."""
    store = _store(tmp_path)
    options = store.rocksdb_options
    options.open = _failing(races_lost, _vanished(tmp_path), options.open)
    db = store._db_for_partition(0)
    db[b"key"] = b"value"
    assert store._db_for_partition(0)[b"key"] == b"value"
    db.close()


def test_a_table_partition_whose_info_log_keeps_vanishing_is_refused_naming_it(
    tmp_path: Path,
) -> None:
    """Not tried for ever: an info log that vanishes at every try is no race."""
    store = _store(tmp_path)
    options = store.rocksdb_options
    options.open = _failing(1000, _vanished(tmp_path), options.open)
    with pytest.raises(Exception, match=r"LOG\.old"):
        store._db_for_partition(0)
