"""Durable ledger of a partner system (SQLite), applying :mod:`partner_sim.ledger` rules.

Every operation runs in one transaction with no ``await`` inside, so in the simulator's
single-threaded event loop each one is atomic: racing reservations are serialised and the
ledger stays exact (reserved plus written off never exceeds what a line authorises).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from pathlib import Path

from partner_sim.documents import DocumentStatus, PartnerDocument
from partner_sim.ledger import ClearanceCode, PositionRequest, Refusal, evaluate, requested_per_line

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    reference TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    document TEXT NOT NULL,
    declaration TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (document, declaration)
);
CREATE TABLE IF NOT EXISTS holdings (
    document TEXT NOT NULL,
    declaration TEXT NOT NULL,
    line INTEGER NOT NULL,
    reserved TEXT NOT NULL,
    written_off TEXT NOT NULL,
    PRIMARY KEY (document, declaration, line)
);
"""


class ReservationState(StrEnum):
    ACTIVE = "ACTIVE"
    WRITTEN_OFF = "WRITTEN_OFF"


class UnknownDocument(LookupError):
    """The partner system has no such document."""


@dataclass(frozen=True, slots=True)
class LineBalance:
    line: int
    authorised: Decimal
    reserved: Decimal
    written_off: Decimal
    unit: str

    @property
    def remaining(self) -> Decimal:
        return self.authorised - self.reserved - self.written_off


class LedgerStore:
    """Documents and positions of one partner system."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._documents: dict[str, PartnerDocument] = {}
        for (body,) in self._db.execute("SELECT body FROM documents"):
            document = PartnerDocument.model_validate_json(body)
            self._documents[document.reference] = document

    def close(self) -> None:
        self._db.close()

    def load(self, documents: list[PartnerDocument]) -> None:
        """Add or replace document definitions; positions already held are kept."""
        with self._transaction():
            for document in documents:
                self._db.execute(
                    "INSERT OR REPLACE INTO documents (reference, body) VALUES (?, ?)",
                    (document.reference, document.model_dump_json()),
                )
                self._documents[document.reference] = document

    def document(self, reference: str) -> PartnerDocument:
        try:
            return self._documents[reference]
        except KeyError:
            raise UnknownDocument(reference) from None

    def check(self, reference: str, request: PositionRequest, today: date) -> Refusal | None:
        """Read only: would this position be accepted?"""
        document = self.document(reference)
        return evaluate(
            document,
            request,
            others=self._held_by_others(reference, request.declaration),
            own_written_off=self._state(reference, request.declaration)
            is ReservationState.WRITTEN_OFF,
            today=today,
        )

    def reserve(self, reference: str, request: PositionRequest, today: date) -> Refusal | None:
        """Restate the declaration's whole position on the document, or refuse it."""
        with self._transaction():
            refusal = self.check(reference, request, today)
            if refusal is not None:
                return refusal
            self._db.execute(
                "DELETE FROM holdings WHERE document = ? AND declaration = ?",
                (reference, request.declaration),
            )
            self._db.executemany(
                "INSERT INTO holdings VALUES (?, ?, ?, ?, '0')",
                [
                    (reference, request.declaration, line, str(quantity))
                    for line, quantity in requested_per_line(request.lines).items()
                ],
            )
            self._db.execute(
                "INSERT OR REPLACE INTO reservations VALUES (?, ?, ?)",
                (reference, request.declaration, ReservationState.ACTIVE.value),
            )
            return None

    def write_off(self, reference: str, declaration: str) -> ClearanceCode:
        """Consume the declaration's reservation (at release)."""
        document = self.document(reference)
        with self._transaction():
            state = self._state(reference, declaration)
            if state is None:
                return ClearanceCode.NO_RECORD
            if state is ReservationState.WRITTEN_OFF:
                return ClearanceCode.ALREADY_CONSUMED
            self._db.execute(
                "UPDATE holdings SET written_off = reserved, reserved = '0' "
                "WHERE document = ? AND declaration = ?",
                (reference, declaration),
            )
            self._db.execute(
                "UPDATE reservations SET state = ? WHERE document = ? AND declaration = ?",
                (ReservationState.WRITTEN_OFF.value, reference, declaration),
            )
        if document.status is not DocumentStatus.VALIDATED:
            return ClearanceCode.EXECUTED_STATUS_CHANGED
        return ClearanceCode.EXECUTED

    def delete(self, reference: str, declaration: str) -> ClearanceCode:
        """Drop the declaration's reservation (not released, refused or cancelled)."""
        self.document(reference)
        with self._transaction():
            state = self._state(reference, declaration)
            if state is None:
                return ClearanceCode.NO_RECORD
            if state is ReservationState.WRITTEN_OFF:
                return ClearanceCode.ALREADY_CONSUMED
            self._drop(reference, declaration)
        return ClearanceCode.EXECUTED

    # -- manual intervention by the administration's officers -----------------------------

    def force(self, reference: str, declaration: str, lines: dict[int, Decimal]) -> None:
        """Set a reservation by hand, bypassing every check (an officer's decision)."""
        document = self.document(reference)
        unknown = [line for line in lines if document.line(line) is None]
        if unknown:
            raise ValueError(f"document {reference} has no line(s) {unknown}")
        with self._transaction():
            self._db.execute(
                "DELETE FROM holdings WHERE document = ? AND declaration = ?",
                (reference, declaration),
            )
            self._db.executemany(
                "INSERT INTO holdings VALUES (?, ?, ?, ?, '0')",
                [(reference, declaration, line, str(q)) for line, q in lines.items()],
            )
            self._db.execute(
                "INSERT OR REPLACE INTO reservations VALUES (?, ?, ?)",
                (reference, declaration, ReservationState.ACTIVE.value),
            )

    def amend(
        self,
        reference: str,
        *,
        status: DocumentStatus | None = None,
        quantities: dict[int, Decimal] | None = None,
    ) -> PartnerDocument:
        """Change a document's status or authorised quantities (an amended certificate)."""
        document = self.document(reference)
        lines = [
            line.model_copy(update={"quantity": (quantities or {}).get(line.line, line.quantity)})
            for line in document.lines
        ]
        amended = document.model_copy(
            update={"status": status or document.status, "lines": tuple(lines)}
        )
        self.load([PartnerDocument.model_validate(amended.model_dump())])
        return amended

    def delete_write_off(self, reference: str, declaration: str) -> ClearanceCode:
        """Cancel a write-off by hand (goods did not leave after all)."""
        self.document(reference)
        with self._transaction():
            state = self._state(reference, declaration)
            if state is None:
                return ClearanceCode.NO_RECORD
            if state is ReservationState.ACTIVE:
                return ClearanceCode.ACTIVE_RESERVATION_EXISTS
            self._drop(reference, declaration)
        return ClearanceCode.EXECUTED

    def balances(self, reference: str) -> list[LineBalance]:
        """Per line: authorised, reserved, written off (the ledger's exactness check)."""
        document = self.document(reference)
        reserved: dict[int, Decimal] = defaultdict(Decimal)
        written_off: dict[int, Decimal] = defaultdict(Decimal)
        for line, line_reserved, line_written_off in self._db.execute(
            "SELECT line, reserved, written_off FROM holdings WHERE document = ?", (reference,)
        ):
            reserved[line] += Decimal(line_reserved)
            written_off[line] += Decimal(line_written_off)
        return [
            LineBalance(
                line.line, line.quantity, reserved[line.line], written_off[line.line], line.unit
            )
            for line in document.lines
        ]

    def _drop(self, reference: str, declaration: str) -> None:
        """Forget the declaration's position on the document (inside a transaction)."""
        for table in ("holdings", "reservations"):
            self._db.execute(
                f"DELETE FROM {table} WHERE document = ? AND declaration = ?",  # noqa: S608 - fixed names
                (reference, declaration),
            )

    def _held_by_others(self, reference: str, declaration: str) -> dict[int, Decimal]:
        held: dict[int, Decimal] = defaultdict(Decimal)
        for line, line_reserved, line_written_off in self._db.execute(
            "SELECT line, reserved, written_off FROM holdings "
            "WHERE document = ? AND declaration != ?",
            (reference, declaration),
        ):
            held[line] += Decimal(line_reserved) + Decimal(line_written_off)
        return dict(held)

    def _state(self, reference: str, declaration: str) -> ReservationState | None:
        row = self._db.execute(
            "SELECT state FROM reservations WHERE document = ? AND declaration = ?",
            (reference, declaration),
        ).fetchone()
        return ReservationState(row[0]) if row else None

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error; nests as a no-op."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._outer = False

    def __enter__(self) -> None:
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
            self._outer = True

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self._outer:
            return
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
