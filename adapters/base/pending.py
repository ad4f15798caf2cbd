"""Write-offs, deletions and give-backs the partner could not take while it was down,
kept durably (SQLite) until they are replayed (:mod:`adapters.base.replay`).

Checks and reservations are answered UNAVAILABLE and the hub goes to degraded mode; a
write-off, a deletion or a give-back, though, must eventually reach the partner's ledger
(the goods left, the declaration was refused or cancelled, or invalidated after release).
The queue is ordered per declaration (record key): operations of one reference are
replayed in the order they were asked, and references are independent of each other.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from gun_hub.model.exchange import AuthorityRequest

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    operation_key TEXT UNIQUE NOT NULL,
    request_id TEXT NOT NULL,
    reference TEXT NOT NULL,
    version INTEGER NOT NULL,
    request TEXT NOT NULL,
    partition INTEGER
);
CREATE INDEX IF NOT EXISTS queue_reference ON queue (reference, id);
"""


def operation_key(request: AuthorityRequest) -> str:
    """The request id and the documents it concerns: one version's deletion of some
    documents is not the same operation as its deletion of others."""
    documents = sorted(
        f"{d.code}\x1f{d.reference}" for item in request.items for d in item.documents
    )
    digest = hashlib.sha256("\x1e".join(documents).encode()).hexdigest()[:16]
    return f"{request.request_id}#{digest}"


class PendingOperations:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Move a queue written before it was kept per reference (table ``pending``), and
        add the partition to one written before partitions were kept."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(queue)")}
        if "partition" not in columns:
            self._db.execute("ALTER TABLE queue ADD COLUMN partition INTEGER")
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}
        if "pending" not in tables:
            return
        self._db.execute("BEGIN IMMEDIATE")
        for (body,) in self._db.execute("SELECT request FROM pending ORDER BY id").fetchall():
            self.add(AuthorityRequest.model_validate_json(body))
        self._db.execute("DROP TABLE pending")
        self._db.execute("COMMIT")

    def add(self, request: AuthorityRequest, partition: int | None = None) -> None:
        """Queue ``request`` behind its reference's earlier operations (once: a
        redelivered request keeps its first place). ``partition``: where the request was
        read, and so where its answer goes (the hub's case lives there)."""
        self._db.execute(
            "INSERT OR IGNORE INTO queue"
            " (operation_key, request_id, reference, version, request, partition)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                operation_key(request),
                request.request_id,
                request.reference,
                request.version,
                request.model_dump_json(),
                partition,
            ),
        )

    def references(self) -> list[str]:
        """References with queued operations, the one waiting longest first."""
        rows = self._db.execute(
            "SELECT reference FROM queue GROUP BY reference ORDER BY MIN(id)"
        ).fetchall()
        return [str(row[0]) for row in rows]

    def queued(self, reference: str) -> list[AuthorityRequest]:
        """``reference``'s queued operations, in the order they were asked."""
        rows = self._db.execute(
            "SELECT request FROM queue WHERE reference = ? ORDER BY id", (reference,)
        ).fetchall()
        return [AuthorityRequest.model_validate_json(row[0]) for row in rows]

    def queued_at(self, reference: str) -> list[tuple[AuthorityRequest, int | None]]:
        """``reference``'s queued operations in order, each with the partition it was read
        from (None for one queued before partitions were kept)."""
        rows = self._db.execute(
            "SELECT request, partition FROM queue WHERE reference = ? ORDER BY id", (reference,)
        ).fetchall()
        return [(AuthorityRequest.model_validate_json(row[0]), row[1]) for row in rows]

    def has(self, reference: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM queue WHERE reference = ? LIMIT 1", (reference,)
        ).fetchone()
        return row is not None

    def done(self, request: AuthorityRequest) -> None:
        self._db.execute("DELETE FROM queue WHERE operation_key = ?", (operation_key(request),))

    def __len__(self) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM queue").fetchone()
        return int(count)

    def close(self) -> None:
        self._db.close()
