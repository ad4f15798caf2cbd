"""Write-offs, deletions and give-backs the partner could not take while it was down,
and reservations it may still apply (sent, no answer settled them), kept durably
(SQLite) until they are replayed (:mod:`adapters.base.replay`).

Checks and reservations are answered UNAVAILABLE and the hub goes to degraded mode; a
write-off, a deletion or a give-back, though, must eventually reach the partner's ledger
(the goods left, the declaration was refused or cancelled, or invalidated after release).
A reservation the partner may still be applying (its call timed out, or met 409 "being
processed") is queued too, never answered again: it holds its documents' later
operations behind it until the partner answers it for good (review stop 39, P1).
The queue is ordered per declaration (record key): operations of one reference are
replayed in the order they were asked, and references are independent of each other.

A request quotes its documents, war-material licences included (DGA's adapter): with a
state cipher (the adapter's state key, :mod:`gun_contract.security.state_cipher`) the
``request`` column holds it sealed, bound to its row (reference, version and row key), and
the row key is the request id and a random suffix, never a digest of the documents (an
unkeyed hash of a licence number is confirmed by guessing it). What orders the queue stays
in clear: the reference (not confidential), the version, the row id and the partition. A
queue written in clear before is sealed when it is opened with a cipher.

Each row also keeps the offset its request was read at. With several replicas of an
adapter (one consumer group) the request log, not this file, is the durable copy: a
replica commits a partition no further than its oldest pending operation
(:meth:`PendingOperations.oldest_offsets`, :mod:`adapters.base.ownership`), and forgets
the rows of a partition it loses (:meth:`PendingOperations.forget`), which its next owner
reads again. One file per replica (:func:`pending_path`): a second process opening the
same file refuses to start (:class:`PendingQueueInUse`).

The log keeps a request only for the topic's retention (7 days). A row whose request the
log no longer holds (its offset below its partition's log start) is the only copy left:
it is never forgotten, and is replayed by the replica that has it (ADR 0014, addendum).
Each row keeps its record's timestamp, what retention judges by
(:meth:`PendingOperations.oldest_logged_at`: how close the oldest is to being deleted).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import secrets
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

from adapters.base import metrics
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.private_files import make_private_folder
from gun_contract.security.state_cipher import StateCipher, StateUnreadable
from gun_contract.sqlite import open_database, transaction

log = logging.getLogger(__name__)

# The table name the sealed values are bound to.
STATE_TABLE = "pending-operations"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    operation_key TEXT UNIQUE NOT NULL,
    request_id TEXT NOT NULL,
    reference TEXT NOT NULL,
    version INTEGER NOT NULL,
    request TEXT NOT NULL,
    partition INTEGER,
    request_offset INTEGER,
    logged_at REAL,
    operation TEXT
);
CREATE INDEX IF NOT EXISTS queue_reference ON queue (reference, id);
"""


class PendingQueueInUse(RuntimeError):
    """Another process has this pending file open: two replicas were given one file."""


def pending_path(state_dir: Path, prefix: str, authority: str, replica_id: str) -> Path:
    """The pending file of one adapter replica: ``<prefix>-<authority>-pending.sqlite``
    for the only (or first) one, ``<prefix>-<authority>-<replica_id>-pending.sqlite``
    for a named replica (``GUN_HUB_ADAPTER__REPLICA_ID``)."""
    replica = f"-{replica_id}" if replica_id else ""
    return state_dir / f"{prefix}-{authority}{replica}-pending.sqlite"


def _lock(path: Path) -> int:
    """Hold ``path``'s lock file for as long as the queue is open. Two replicas sharing a
    queue would forget each other's rows on every rebalance (each forgets what is not its
    own to replay), so the second one stops at once, naming the setting."""
    make_private_folder(path.parent)
    descriptor = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise PendingQueueInUse(
            f"the pending queue {path} is open in another process: give each adapter "
            "replica its own file (adapter.replica_id, GUN_HUB_ADAPTER__REPLICA_ID)"
        ) from None
    return descriptor


def operation_key(request: AuthorityRequest) -> str:
    """The request id and the documents it concerns: one version's deletion of some
    documents is not the same operation as its deletion of others."""
    documents = sorted(
        f"{d.code}\x1f{d.reference}" for item in request.items for d in item.documents
    )
    digest = hashlib.sha256("\x1e".join(documents).encode()).hexdigest()[:16]
    return f"{request.request_id}#{digest}"


_SELECT = "SELECT id, operation_key, reference, version, request, partition FROM queue"
_SELECT_BY: dict[str, str] = {
    "reference": f"{_SELECT} WHERE reference = ? ORDER BY id",
    "request_id": f"{_SELECT} WHERE request_id = ? ORDER BY id",
}


def _row_key(request: AuthorityRequest) -> str:
    """A sealed row's key: unique, and telling nothing of the documents."""
    return f"{request.request_id}#{secrets.token_hex(8)}"


class PendingOperations:
    """The queue in the SQLite file at ``path``; ``cipher``: requests stored sealed (the
    adapter always gives one; without it, as before, in clear)."""

    def __init__(self, path: Path, cipher: StateCipher | None = None) -> None:
        self._cipher = cipher
        self._lock = _lock(path)
        # FULL: what a down partner has not taken yet must survive a crash (the rows kept
        # before offsets were are its only copy; the others are re-read from the log).
        # secure_delete: what a row held before it was replaced or deleted is zeroed, not
        # left in free pages (a request queued in clear before it was sealed, for one).
        try:
            self._db = open_database(path, synchronous="FULL", secure_delete=True)
        except BaseException:
            os.close(self._lock)
            raise
        self._db.executescript(_SCHEMA)
        self._migrate()
        if cipher is not None:
            self._seal_clear_rows()

    def _migrate(self) -> None:
        """Move a queue written before it was kept per reference (table ``pending``), and
        add the partition to one written before partitions were kept."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(queue)")}
        if "partition" not in columns:
            self._db.execute("ALTER TABLE queue ADD COLUMN partition INTEGER")
        if "request_offset" not in columns:
            self._db.execute("ALTER TABLE queue ADD COLUMN request_offset INTEGER")
        if "logged_at" not in columns:
            self._db.execute("ALTER TABLE queue ADD COLUMN logged_at REAL")
        if "operation" not in columns:
            # Rows queued before reservations were (stop 39) are follow-ups: NULL.
            self._db.execute("ALTER TABLE queue ADD COLUMN operation TEXT")
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}
        if "pending" not in tables:
            return
        with transaction(self._db):
            for (body,) in self._db.execute("SELECT request FROM pending ORDER BY id").fetchall():
                self._add(AuthorityRequest.model_validate_json(body), None, None, None)
            self._db.execute("DROP TABLE pending")

    def _seal_clear_rows(self) -> None:
        """Seal the requests a queue kept in clear (written before it had a cipher), and
        leave no copy of them in the file or its write-ahead log."""
        rows = self._db.execute(
            "SELECT id, request FROM queue WHERE typeof(request) = 'text' ORDER BY id"
        ).fetchall()
        if not rows:
            return
        with transaction(self._db):
            for row_id, body in rows:
                request = AuthorityRequest.model_validate_json(body)
                key = _row_key(request)
                self._db.execute(
                    "UPDATE queue SET operation_key = ?, request = ? WHERE id = ?",
                    (key, self._sealed(request, key), row_id),
                )
        self._db.execute("VACUUM")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        log.info("sealed %d pending operations that were kept in clear", len(rows))

    def _bound_to(self, reference: str, version: int, key: str) -> str:
        """The row a sealed request belongs to (its associated data)."""
        return f"{reference} v{version} {key}"

    def _sealed(self, request: AuthorityRequest, key: str) -> bytes | str:
        body = request.model_dump_json()
        if self._cipher is None:
            return body
        bound = self._bound_to(request.reference, request.version, key)
        return self._cipher.seal(STATE_TABLE, bound, body.encode())

    def _opened(
        self, stored: bytes | str, reference: str, version: int, key: str
    ) -> AuthorityRequest:
        bound = self._bound_to(reference, version, key)
        if isinstance(stored, str):
            if self._cipher is not None:
                raise StateUnreadable(
                    f"{STATE_TABLE}: the value of key {bound!r} is in clear in a sealed "
                    "queue: refused"
                )
            return AuthorityRequest.model_validate_json(stored)
        if self._cipher is None:
            raise StateUnreadable(
                f"{STATE_TABLE}: the value of key {bound!r} is sealed, and this queue was "
                "opened without the state key"
            )
        return AuthorityRequest.model_validate_json(self._cipher.open(STATE_TABLE, bound, stored))

    def _rows(
        self, by: Literal["reference", "request_id"], value: str
    ) -> list[tuple[int, AuthorityRequest, int | None]]:
        """The rows of one reference or one request id (``by``), in queue order: id,
        request (opened), partition."""
        rows = self._db.execute(_SELECT_BY[by], (value,)).fetchall()
        return [
            (row_id, self._opened(stored, reference, version, key), partition)
            for row_id, key, reference, version, stored, partition in rows
        ]

    def _same_operation(self, request: AuthorityRequest) -> list[int]:
        """Rows that hold ``request``'s operation (compared opened: the row key says
        nothing of the documents)."""
        wanted = operation_key(request)
        return [
            row_id
            for row_id, queued, _ in self._rows("request_id", request.request_id)
            if operation_key(queued) == wanted
        ]

    def _add(
        self,
        request: AuthorityRequest,
        partition: int | None,
        offset: int | None,
        logged_at: float | None,
    ) -> None:
        if self._same_operation(request):
            return
        key = _row_key(request) if self._cipher is not None else operation_key(request)
        self._db.execute(
            "INSERT INTO queue"
            " (operation_key, request_id, reference, version, request, partition,"
            " request_offset, logged_at, operation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                request.request_id,
                request.reference,
                request.version,
                self._sealed(request, key),
                partition,
                offset,
                logged_at,
                request.operation.value,
            ),
        )

    def add(
        self,
        request: AuthorityRequest,
        partition: int | None = None,
        offset: int | None = None,
        logged_at: float | None = None,
    ) -> None:
        """Queue ``request`` behind its reference's earlier operations (once: a
        redelivered request keeps its first place, and its offset). ``partition``: where
        the request was read, and so where its answer goes (the hub's case lives there);
        ``offset``: where in that partition (it holds the partition's commit back);
        ``logged_at``: its record's timestamp (epoch seconds), what retention judges by."""
        with transaction(self._db):
            self._add(request, partition, offset, logged_at)

    def holds(self, request: AuthorityRequest) -> bool:
        """Whether ``request``'s operation is still queued (not replayed nor forgotten)."""
        return bool(self._same_operation(request))

    def oldest_offsets(self) -> dict[int, int]:
        """Per partition, the offset of its oldest queued operation: how far that
        partition may be committed (rows kept before offsets were hold nothing)."""
        rows = self._db.execute(
            "SELECT partition, MIN(request_offset) FROM queue"
            " WHERE partition IS NOT NULL AND request_offset IS NOT NULL GROUP BY partition"
        ).fetchall()
        return {int(partition): int(offset) for partition, offset in rows}

    def reservation_offsets(self) -> dict[int, list[int]]:
        """Per partition, the offsets of its queued reservations (those the partner may
        still apply, :mod:`adapters.base.replay`), in order: a commit names them, so that
        the partition's next owner asks them again (``ownership.py``)."""
        rows = self._db.execute(
            "SELECT partition, request_offset FROM queue WHERE operation = ?"
            " AND partition IS NOT NULL AND request_offset IS NOT NULL"
            " ORDER BY partition, request_offset",
            (Operation.RESERVE.value,),
        ).fetchall()
        offsets: dict[int, list[int]] = {}
        for partition, offset in rows:
            offsets.setdefault(int(partition), []).append(int(offset))
        return offsets

    def offsets_of(self, requests: Collection[AuthorityRequest]) -> dict[int, list[int]]:
        """Per partition, the offsets ``requests`` were read at, those still queued, in
        order: the follow-ups the partner may still be applying (:mod:`adapters.base.replay`),
        which a commit names beside the reservations (``ownership.py``). Found by request
        (a sealed row's key says nothing of its operation); they are few."""
        offsets: dict[int, list[int]] = {}
        for request in requests:
            for row_id in self._same_operation(request):
                partition, offset = self._db.execute(
                    "SELECT partition, request_offset FROM queue WHERE id = ?", (row_id,)
                ).fetchone()
                if partition is not None and offset is not None:
                    offsets.setdefault(int(partition), []).append(int(offset))
        return {p: sorted(o) for p, o in offsets.items()}

    def oldest_logged_at(self) -> float | None:
        """The record timestamp (epoch seconds) of the oldest queued operation that has
        one: retention deletes a request by it (None: nothing queued, or rows kept before
        timestamps were)."""
        (oldest,) = self._db.execute("SELECT MIN(logged_at) FROM queue").fetchone()
        return None if oldest is None else float(oldest)

    def held_partitions(self) -> set[int]:
        """The partitions some queued operation was read from (at a known offset)."""
        rows = self._db.execute(
            "SELECT DISTINCT partition FROM queue"
            " WHERE partition IS NOT NULL AND request_offset IS NOT NULL"
        ).fetchall()
        return {int(partition) for (partition,) in rows}

    def forget(self, partitions: Collection[int] | None, log_starts: Mapping[int, int]) -> int:
        """Drop the queued operations read from ``partitions`` (every partition: None)
        that the log still holds, without replaying them: their partition was committed no
        further than the oldest of them, so its owner reads them again.

        ``log_starts``: each partition's first offset still in the log. A row below it
        (retention deleted its request: the partner was down longer than the topic keeps
        records) is the only copy left, and so is a row of a partition whose log start is
        not known: they stay, and are replayed here, as do rows kept before offsets were.
        The number dropped."""
        chosen = self.held_partitions() if partitions is None else set(partitions)
        with transaction(self._db):
            cursor = self._db.executemany(
                "DELETE FROM queue WHERE partition = ? AND request_offset >= ?",
                [(p, log_starts[p]) for p in sorted(chosen) if p in log_starts],
            )
        return max(cursor.rowcount, 0)

    def references(self) -> list[str]:
        """References with queued operations, the one waiting longest first."""
        rows = self._db.execute(
            "SELECT reference FROM queue GROUP BY reference ORDER BY MIN(id)"
        ).fetchall()
        return [str(row[0]) for row in rows]

    def queued(self, reference: str) -> list[AuthorityRequest]:
        """``reference``'s queued operations, in the order they were asked."""
        return [request for _, request, _ in self._rows("reference", reference)]

    def queued_at(self, reference: str) -> list[tuple[AuthorityRequest, int | None]]:
        """``reference``'s queued operations in order, each with the partition it was read
        from (None for one queued before partitions were kept)."""
        return [
            (request, partition) for _, request, partition in self._rows("reference", reference)
        ]

    def has(self, reference: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM queue WHERE reference = ? LIMIT 1", (reference,)
        ).fetchone()
        return row is not None

    def done(self, request: AuthorityRequest) -> None:
        for row_id in self._same_operation(request):
            self._db.execute("DELETE FROM queue WHERE id = ?", (row_id,))

    def __len__(self) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM queue").fetchone()
        return int(count)

    def close(self) -> None:
        self._db.close()
        os.close(self._lock)  # the lock goes with it


class PendingLimit:
    """The bound of the pending queue: at ``limit`` operations the adapter stops fetching
    requests (the queue only grows while its partner is down, and every operation in it
    must reach the partner: backpressure, never a drop), and fetches again once replays
    brought it down to half. The queue holds at most ``limit`` and what the batches under
    way add (batch_pipeline.BATCHES_IN_FLIGHT fetches of ``max_records``)."""

    def __init__(self, authority: str, limit: int) -> None:
        self._authority = authority
        self._limit = limit
        self.full = False

    def hold(self, consumer: Any, size: int) -> bool:
        """Pause ``consumer``'s partitions while the queue of ``size`` is full, resume
        them once it is down to half; True while fetching is held."""
        if not self.full and size >= self._limit:
            self.full = True
            metrics.PENDING_FULL.labels(self._authority).set(1)
            metrics.PENDING_FULL_TOTAL.labels(self._authority).inc()
            log.warning(
                "adapter %s: pending operations reached the limit of %d (partner down?): "
                "no request is fetched until replays bring them down to %d",
                self._authority,
                self._limit,
                self._limit // 2,
            )
        elif self.full and size <= self._limit // 2:
            self.full = False
            metrics.PENDING_FULL.labels(self._authority).set(0)
            consumer.resume(*consumer.assignment())
            log.info(
                "adapter %s: %d pending operations: fetching requests again",
                self._authority,
                size,
            )
        if self.full:
            # Every time: a partition assigned while full is paused too.
            consumer.pause(*consumer.assignment())
        return self.full
