"""Replay memory: a message id (``jti``) is accepted once while its message can be valid.

An envelope is acceptable only until ``exp`` (plus the allowed clock skew), so an id
needs remembering only that long. The hub keeps ids in a faust table (changelog-backed,
so a restarted worker still knows them); adapters and readers keep them in SQLite.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, Protocol


class ReplayGuard(Protocol):
    def first_sighting(self, message_id: str, expires_at: int) -> bool:
        """Record ``message_id``; False if it was already recorded (a replay)."""
        ...


class MemoryReplayGuard:
    """For one-shot readers and unit tests: forgets everything at exit."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def first_sighting(self, message_id: str, expires_at: int) -> bool:
        if message_id in self._seen:
            return False
        self._seen[message_id] = expires_at
        return True


class SqliteReplayGuard:
    """Durable memory for a process without faust tables (adapters, clearance reader)."""

    _PRUNE_EVERY = 1000

    def __init__(self, path: Path, *, keep_after_expiry_s: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seen (jti TEXT PRIMARY KEY, expires_at INTEGER)"
        )
        self._keep_s = keep_after_expiry_s
        self._inserts = 0

    def first_sighting(self, message_id: str, expires_at: int) -> bool:
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO seen (jti, expires_at) VALUES (?, ?)",
            (message_id, expires_at),
        )
        self._inserts += 1
        if self._inserts % self._PRUNE_EVERY == 0:
            self._db.execute(
                "DELETE FROM seen WHERE expires_at < ?", (int(time.time()) - self._keep_s,)
            )
        return cursor.rowcount == 1

    def close(self) -> None:
        self._db.close()


class TableReplayGuard:
    """Backed by a faust table of raw bytes (``jti`` -> expiry), read in event context."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def first_sighting(self, message_id: str, expires_at: int) -> bool:
        key = message_id.encode()
        if self._table.get(key) is not None:
            return False
        self._table[key] = str(expires_at).encode()
        return True
