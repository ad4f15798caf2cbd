"""Write-offs and deletions the partner could not take while it was down, kept durably.

Checks and reservations are answered UNAVAILABLE and the hub goes to degraded mode; a
write-off or a deletion, though, must eventually reach the partner's ledger (the goods
left, or the declaration was cancelled). They wait here, in SQLite, and are replayed in
order once the partner answers again. Replaying is safe: both operations answer "already
done" the second time.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gun_hub.model.exchange import AuthorityRequest


class PendingOperations:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS pending ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " request_id TEXT UNIQUE NOT NULL,"
            " request TEXT NOT NULL)"
        )

    def add(self, request: AuthorityRequest) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO pending (request_id, request) VALUES (?, ?)",
            (request.request_id, request.model_dump_json()),
        )

    def oldest(self, limit: int = 100) -> list[AuthorityRequest]:
        rows = self._db.execute(
            "SELECT request FROM pending ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [AuthorityRequest.model_validate_json(row[0]) for row in rows]

    def done(self, request: AuthorityRequest) -> None:
        self._db.execute("DELETE FROM pending WHERE request_id = ?", (request.request_id,))

    def __len__(self) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM pending").fetchone()
        return int(count)

    def close(self) -> None:
        self._db.close()
