"""The one way the project opens and writes its SQLite files (issue 14).

Every store (the operations view, the adapters' pending operations, the replay memory,
the partner simulator's ledger) is a file written by one process and read by others
meanwhile: write-ahead logging lets readers read while a writer writes. Connections run
in autocommit mode (``isolation_level=None``): a store says where its transactions begin
and end with :func:`transaction`, never the driver behind its back.

``synchronous=NORMAL`` with WAL loses at most the last transactions on a power cut, never
the file's consistency: right for what can be read again from Kafka (a view, a replay
memory). A store that is the only copy of what it holds (pending operations) keeps
``FULL``.

A store is readable by its owner only (:mod:`gun_contract.private_files`): the file is
made 0600 before SQLite opens it, in a folder made 0700 when missing, and SQLite gives its
write-ahead log and shared-memory file the database's own mode.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from gun_contract.private_files import make_private_file, make_private_folder

BUSY_TIMEOUT_S = 5.0
"""How long a statement waits for another connection's lock before it fails."""

Synchronous = Literal["NORMAL", "FULL"]


def open_database(
    path: Path | str,
    *,
    synchronous: Synchronous = "NORMAL",
    secure_delete: bool = False,
    any_thread: bool = True,
    busy_timeout_s: float = BUSY_TIMEOUT_S,
) -> sqlite3.Connection:
    """A connection to the SQLite file at ``path`` (it and its folder made readable by
    their owner only if missing; a file made before is narrowed to 0600), in WAL mode
    and autocommit. ``secure_delete``: what a row held is zeroed when it is replaced
    or deleted, not left in free pages (a store of secrets). ``any_thread``: the
    connection may be used from another thread than the one that opened it (the caller
    serialises its use)."""
    make_private_folder(Path(path).parent)
    make_private_file(Path(path), "-wal", "-shm", "-journal")
    db = sqlite3.connect(
        str(path),
        isolation_level=None,
        check_same_thread=not any_thread,
        timeout=busy_timeout_s,
    )
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    if secure_delete:
        db.execute("PRAGMA secure_delete=ON")
    return db


def open_read_only(
    path: Path | str, *, busy_timeout_s: float = BUSY_TIMEOUT_S
) -> sqlite3.Connection:
    """A connection that can only read the file at ``path`` (``query_only``: a question
    asked through it can write nothing, whatever its SQL), usable from any thread."""
    db = sqlite3.connect(
        str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
    )
    db.execute("PRAGMA query_only = ON")
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection, *, immediate: bool = True) -> Iterator[None]:
    """``BEGIN`` ... ``COMMIT``, or ``ROLLBACK`` when the block raises anything.

    ``immediate``: take the write lock at once (``BEGIN IMMEDIATE``), so a transaction
    that reads then writes never fails half-way on another writer's lock; a deferred
    one (``False``) takes it at its first write. Inside a transaction already open, the
    block joins it (nested calls of a store's methods make one transaction).
    """
    if db.in_transaction:
        yield
        return
    db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield
    except BaseException:
        if db.in_transaction:  # SQLite rolls some failures (a full disk) back itself
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
