"""The retention index's keys in due order, on the worker's disk (``DueKeys`` of
pipeline/retention.py).

The ``case-retention`` table holds an entry per retained case and per marker for days:
some 147 million at production's 100 declarations a second. The index used to hold the
next hour's keys in memory and read the whole table again every half hour to find those
coming due (2.8 to 3.2 µs an entry on RocksDB: a quarter of a core at that volume,
``./tasks bench-retention-read``). Here every entry's key is a row of a RocksDB database
of the worker's own, ordered by partition then due time, so a look reads only what is
due and a read of the table happens only when the partitions change.

A row is ``partition (2 bytes) | due (8 bytes) | key``, big-endian, with an empty value:
positive IEEE doubles sort as their bytes do. The database is a cache of the table, not
state: it is not changelogged, it is wiped when the worker starts, and each partition is
built again from the table when the worker takes it (``RetentionIndex.refresh``).

Taking the oldest rows leaves tombstones at the front of each partition's range until
RocksDB compacts them; each look seeks from where the last one stopped (or from an
earlier due time put since), not from the partition's start, so it does not walk them.
"""

from __future__ import annotations

import logging
import struct
import time
from pathlib import Path

import rocksdict

from gun_contract.private_files import make_private_folder
from gun_hub.pipeline.retention import takes, window_end
from gun_hub.runtime.table_store import INFO_LOG_BYTES, INFO_LOGS_KEPT, info_log_vanished

log = logging.getLogger(__name__)

_HEAD = struct.Struct(">Hd")  # partition, due
_PARTITION = struct.Struct(">H")

# A small database (keys of about 30 bytes, no values): one write buffer of a few MiB,
# outside the tables' shared budget.
_WRITE_BUFFER_BYTES = 4 * 1024 * 1024


def _sortable(due: float) -> float:
    """``due``, or 0.0 (due at once) for a time whose bytes would not sort: a negative
    double sorts after every positive one, -0.0 too (``max(-0.0, 0.0)`` is -0.0, and a
    partition's looks then sought past its rows until the next read), and NaN anywhere
    (found by the review of stop 45)."""
    return due if due > 0.0 else 0.0


class DueKeysInUse(RuntimeError):
    """The database cannot be opened: another process holds it (two workers given one
    ``hub.data_dir``), or the folder is not the worker's to write."""


# How RocksDB begins the message of a database whose files do not read.
_DAMAGED = "Corruption:"
# How long a start waits for a database another process holds (faust: 30 tries a second
# apart for its tables), and how often it tries.
LOCK_WAIT_S = 30.0
_LOCK_RETRY_S = 0.5


def _locked(err: Exception) -> bool:
    """RocksDB's refusal of a database another holder has locked: "While lock file: ..."
    from another process, "lock hold by current process" from this one (not any message
    naming a path with "lock" in it)."""
    message = str(err)
    return "While lock file" in message or "lock hold by" in message


def _open_waiting_for_the_lock(
    path: Path, options: rocksdict.Options, wait_s: float
) -> rocksdict.Rdict:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return rocksdict.Rdict(str(path), options)
        except Exception as err:  # rocksdict raises its own errors as Exception
            if not (_locked(err) or info_log_vanished(err)) or time.monotonic() >= deadline:
                raise
            if _locked(err):
                log.info("the retention index at %s is held by another process: waiting", path)
            else:
                log.info("the retention index at %s: an info log went meanwhile: again", path)
            time.sleep(_LOCK_RETRY_S)  # at start-up, before the worker runs anything


def _cannot_open(path: Path, err: Exception) -> str:
    if _locked(err):
        return (
            f"cannot open the retention index at {path} (another hub worker on the same "
            f"hub.data_dir?): {err}"
        )
    return f"cannot open the retention index at {path}: {err}"


class RocksDueKeys:
    """``DueKeys`` in a RocksDB database at ``path``, emptied when it is opened."""

    def __init__(self, path: Path, *, lock_wait_s: float = LOCK_WAIT_S) -> None:
        """``lock_wait_s``: how long a database another process holds is waited for (the
        worker this one replaces may still be exiting), as faust does for its tables."""
        # Declaration references: the owner's only, as the hub's data folder it is in.
        make_private_folder(path.parent)
        make_private_folder(path)
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(_WRITE_BUFFER_BYTES)
        options.set_max_write_buffer_number(2)
        options.set_max_log_file_size(INFO_LOG_BYTES)
        options.set_keep_log_file_num(INFO_LOGS_KEPT)
        try:
            self._db = _open_waiting_for_the_lock(path, options, lock_wait_s)
        except Exception as err:  # rocksdict raises its own errors as Exception
            if not str(err).startswith(_DAMAGED):
                raise DueKeysInUse(_cannot_open(path, err)) from err
            # RocksDB reads its files once it holds the lock: no worker has it open. A
            # cache of the table, emptied at every start anyway: made again, not a start
            # refused until someone deletes the folder by hand (review stop 45).
            log.warning("the retention index at %s was damaged (%s): made again", path, err)
            try:
                rocksdict.Rdict.destroy(str(path), options)
                make_private_folder(path)
                self._db = rocksdict.Rdict(str(path), options)
            except Exception as again:  # rocksdict raises its own errors as Exception
                raise DueKeysInUse(_cannot_open(path, again)) from again
        # What a previous run left is not trusted: every partition is read from the table
        # when this worker takes it (its rows may predate writes made elsewhere since).
        # Emptied once open, never removed before: a second worker given this folder by
        # mistake fails on RocksDB's lock above instead of wiping the first one's rows.
        self._db.delete_range(b"", b"\xff" * (_HEAD.size + 1))
        self._rows: dict[int, int] = {}  # rows held, by partition
        self._from: dict[int, float] = {}  # no row of the partition is due before this

    def __len__(self) -> int:
        return sum(self._rows.values())

    def put(self, partition: int, due: float, key: bytes) -> None:
        due = _sortable(due)
        row = _HEAD.pack(partition, due) + key
        if self._db.get(row) is None:
            self._db.put(row, b"")
            self._rows[partition] = self._rows.get(partition, 0) + 1
        self._from[partition] = min(self._from.get(partition, due), due)

    def load(self, rows: list[tuple[int, float, bytes]]) -> None:
        """Rows none of which is held (a read into partitions just dropped): written in
        one batch, not looked up first as ``put`` does (a third of the time)."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        for partition, due, key in rows:
            due = _sortable(due)
            batch.put(_HEAD.pack(partition, due) + key, b"")
            self._rows[partition] = self._rows.get(partition, 0) + 1
            self._from[partition] = min(self._from.get(partition, due), due)
        if rows:
            self._db.write(batch)

    def take(
        self, partition: int, now: float, within_s: float | None, at_least: int
    ) -> list[bytes]:
        prefix = _PARTITION.pack(partition)
        rows = self._db.iter()
        rows.seek(_HEAD.pack(partition, self._from.get(partition, 0.0)))
        until: float | None = None
        keys: dict[bytes, None] = {}
        taken = rocksdict.WriteBatch(raw_mode=True)
        count = 0
        last_due = 0.0
        while rows.valid():
            row: bytes = rows.key()
            if row[:2] != prefix:
                break
            _, due = _HEAD.unpack_from(row)
            if until is None:  # the oldest: the window is measured from it
                until = window_end(now, due, within_s)
            if not takes(due, now, until, len(keys), at_least):
                break
            keys[row[_HEAD.size :]] = None
            taken.delete(row)
            count += 1
            last_due = due
            rows.next()
        del rows
        if count:
            self._db.write(taken)
            # Moved only once the rows are gone: a look that fails leaves them in place and
            # the next one seeks from where it did (review stop 45).
            self._from[partition] = last_due
            self._rows[partition] -= count
        return list(keys)

    def drop(self, partition: int) -> None:
        end = _PARTITION.pack(partition + 1) if partition < 0xFFFF else b"\xff" * (_HEAD.size + 1)
        self._db.delete_range(_PARTITION.pack(partition), end)
        self._rows.pop(partition, None)
        self._from.pop(partition, None)

    def close(self) -> None:
        self._db.close()
