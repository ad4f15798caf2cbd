"""Durable ledger of a partner system (SQLite), applying :mod:`partner_sim.ledger` rules.

Every operation runs in one transaction with no ``await`` inside, so in the simulator's
single-threaded event loop each one is atomic: racing reservations are serialised and the
ledger stays exact (reserved plus written off never exceeds what a line authorises).

Two guards make repeated and late operations harmless, as the hub's contract asks of every
partner system:

* **Versions.** Each (document, declaration) position remembers the newest declaration
  version that operated on it; an operation of an older version raises
  :class:`StaleVersion` and changes nothing. Versions are judged per document, because a
  newer version may stop quoting a document and delete what the older one held there.
* **Idempotency keys.** :meth:`LedgerStore.idempotent` records the answer of a keyed
  call in the same transaction as its effect; the same key again gets the same answer
  and is not applied again (a write-off retried after a lost answer is made once).
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from gun_contract.sqlite import open_database, transaction
from partner_sim.documents import DocumentStatus, PartnerDocument
from partner_sim.ledger import (
    EXACT,
    ClearanceCode,
    PositionRequest,
    Refusal,
    evaluate,
    exact,
    requested_per_line,
)

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
CREATE TABLE IF NOT EXISTS given_back (
    document TEXT NOT NULL,
    declaration TEXT NOT NULL,
    line INTEGER NOT NULL,
    quantity TEXT NOT NULL,
    PRIMARY KEY (document, declaration, line)
);
CREATE TABLE IF NOT EXISTS versions (
    document TEXT NOT NULL,
    declaration TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (document, declaration)
);
CREATE TABLE IF NOT EXISTS idempotency (
    document TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (document, key)
);
"""


class ReservationState(StrEnum):
    ACTIVE = "ACTIVE"
    WRITTEN_OFF = "WRITTEN_OFF"
    GIVEN_BACK = "GIVEN_BACK"


class UnknownDocument(LookupError):
    """The partner system has no such document."""


class StaleVersion(Exception):
    """An operation of a declaration version older than one already seen on the position."""

    def __init__(self, newest: int, version: int) -> None:
        super().__init__(f"version {version} is older than version {newest} already seen")
        self.newest = newest
        self.version = version


class IdempotencyKeyReused(ValueError):
    """An idempotency key already used for a different call on the same document."""


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer (status and JSON body), as recorded under an idempotency key."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LineBalance:
    line: int
    authorised: Decimal
    reserved: Decimal
    written_off: Decimal
    unit: str
    given_back: Decimal = Decimal(0)

    @property
    def remaining(self) -> Decimal:
        return EXACT.subtract(EXACT.subtract(self.authorised, self.reserved), self.written_off)


@dataclass(frozen=True, slots=True)
class Position:
    """What one declaration holds, and has given back, on one line of a document."""

    declaration: str
    version: int | None
    state: str
    line: int
    reserved: Decimal
    written_off: Decimal
    given_back: Decimal


class LedgerStore:
    """Documents and positions of one partner system."""

    def __init__(self, path: Path) -> None:
        self._db = open_database(path)
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(reservations)")}
        if "version" not in columns:  # a ledger written before versions were kept
            self._db.execute("ALTER TABLE reservations ADD COLUMN version INTEGER")
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

    def references(self) -> list[str]:
        return sorted(self._documents)

    def idempotent(
        self, scope: str, key: str | None, fingerprint: str, apply: Callable[[], Answer]
    ) -> Answer:
        """Apply a call once per ``key`` in ``scope`` (the document of the call, or one
        scope for the whole client); a repeat gets the first answer.

        The answer is recorded in the transaction that applies the call, so a crash never
        leaves a call applied and its key unknown. A call that raises (unknown document,
        stale version) records nothing. ``fingerprint`` names what was asked: the same key
        for another call is :class:`IdempotencyKeyReused`.
        """
        if key is None:
            return apply()
        with self._transaction():
            row = self._db.execute(
                "SELECT fingerprint, status, body FROM idempotency WHERE document = ? AND key = ?",
                (scope, key),
            ).fetchone()
            if row is not None:
                if row[0] != fingerprint:
                    raise IdempotencyKeyReused(f"key {key!r} was used for another call")
                return Answer(int(row[1]), json.loads(row[2]))
            answer = apply()
            self._db.execute(
                "INSERT INTO idempotency VALUES (?, ?, ?, ?, ?)",
                (scope, key, fingerprint, answer.status, json.dumps(answer.body)),
            )
            return answer

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
            self._admit(reference, request.declaration, request.version)
            refusal = self.check(reference, request, today)
            if refusal is not None:
                return refusal
            self._db.execute(
                "DELETE FROM holdings WHERE document = ? AND declaration = ?",
                (reference, request.declaration),
            )
            self._db.executemany(
                "INSERT INTO holdings (document, declaration, line, reserved, written_off) "
                "VALUES (?, ?, ?, ?, '0')",
                [
                    (reference, request.declaration, line, str(quantity))
                    for line, quantity in requested_per_line(request.lines).items()
                ],
            )
            self._set_state(
                reference, request.declaration, ReservationState.ACTIVE, request.version
            )
            return None

    def write_off(
        self, reference: str, declaration: str, version: int | None = None
    ) -> ClearanceCode:
        """Consume the declaration's reservation (at release)."""
        document = self.document(reference)
        with self._transaction():
            self._admit(reference, declaration, version)
            state = self._state(reference, declaration)
            if state is None or state is ReservationState.GIVEN_BACK:
                return ClearanceCode.NO_RECORD
            if state is ReservationState.WRITTEN_OFF:
                return ClearanceCode.ALREADY_CONSUMED
            self._db.execute(
                "UPDATE holdings SET written_off = reserved, reserved = '0' "
                "WHERE document = ? AND declaration = ?",
                (reference, declaration),
            )
            self._set_state(reference, declaration, ReservationState.WRITTEN_OFF, version)
        if document.status is not DocumentStatus.VALIDATED:
            return ClearanceCode.EXECUTED_STATUS_CHANGED
        return ClearanceCode.EXECUTED

    def delete(self, reference: str, declaration: str, version: int | None = None) -> ClearanceCode:
        """Drop the declaration's reservation (not released, refused or cancelled)."""
        self.document(reference)
        with self._transaction():
            self._admit(reference, declaration, version)
            state = self._state(reference, declaration)
            if state is None or state is ReservationState.GIVEN_BACK:
                return ClearanceCode.NO_RECORD
            if state is ReservationState.WRITTEN_OFF:
                return ClearanceCode.ALREADY_CONSUMED
            self._drop(reference, declaration)
        return ClearanceCode.EXECUTED

    @exact
    def give_back(
        self, reference: str, declaration: str, version: int | None = None
    ) -> ClearanceCode:
        """Give a write-off back (declaration invalidated after release): the quantity
        returns to each line's balance, and is counted as given back."""
        self.document(reference)
        with self._transaction():
            self._admit(reference, declaration, version)
            state = self._state(reference, declaration)
            if state is None:
                return ClearanceCode.NO_RECORD
            if state is ReservationState.GIVEN_BACK:
                return ClearanceCode.ALREADY_CONSUMED
            if state is ReservationState.ACTIVE:
                return ClearanceCode.ACTIVE_RESERVATION_EXISTS
            rows = self._db.execute(
                "SELECT line, written_off FROM holdings WHERE document = ? AND declaration = ?",
                (reference, declaration),
            ).fetchall()
            for line, written_off in rows:
                before = self._db.execute(
                    "SELECT quantity FROM given_back "
                    "WHERE document = ? AND declaration = ? AND line = ?",
                    (reference, declaration, line),
                ).fetchone()
                total = Decimal(written_off) + (Decimal(before[0]) if before else Decimal(0))
                self._db.execute(
                    "INSERT OR REPLACE INTO given_back VALUES (?, ?, ?, ?)",
                    (reference, declaration, line, str(total)),
                )
            self._db.execute(
                "DELETE FROM holdings WHERE document = ? AND declaration = ?",
                (reference, declaration),
            )
            self._set_state(reference, declaration, ReservationState.GIVEN_BACK, version)
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
                "INSERT INTO holdings (document, declaration, line, reserved, written_off) "
                "VALUES (?, ?, ?, ?, '0')",
                [(reference, declaration, line, str(q)) for line, q in lines.items()],
            )
            self._set_state(reference, declaration, ReservationState.ACTIVE, None)

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
            if state is None or state is ReservationState.GIVEN_BACK:
                return ClearanceCode.NO_RECORD
            if state is ReservationState.ACTIVE:
                return ClearanceCode.ACTIVE_RESERVATION_EXISTS
            self._drop(reference, declaration)
        return ClearanceCode.EXECUTED

    @exact
    def balances(self, reference: str) -> list[LineBalance]:
        """Per line: authorised, reserved, written off, given back (the exactness check)."""
        document = self.document(reference)
        reserved: dict[int, Decimal] = defaultdict(Decimal)
        written_off: dict[int, Decimal] = defaultdict(Decimal)
        given_back: dict[int, Decimal] = defaultdict(Decimal)
        for p in self.positions(reference):
            reserved[p.line] += p.reserved
            written_off[p.line] += p.written_off
            given_back[p.line] += p.given_back
        return [
            LineBalance(
                line.line,
                line.quantity,
                reserved[line.line],
                written_off[line.line],
                line.unit,
                given_back[line.line],
            )
            for line in document.lines
        ]

    @exact
    def positions(self, reference: str) -> list[Position]:
        """Per declaration and line: its version and state, reserved, written off and
        given back (what an independent checker reconciles with the decisions)."""
        self.document(reference)
        states = {
            declaration: (state, version)
            for declaration, state, version in self._db.execute(
                "SELECT declaration, state, version FROM reservations WHERE document = ?",
                (reference,),
            )
        }
        lines: dict[tuple[str, int], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 3)
        for declaration, line, line_reserved, line_written_off in self._db.execute(
            "SELECT declaration, line, reserved, written_off FROM holdings WHERE document = ?",
            (reference,),
        ):
            lines[declaration, line][0] += Decimal(line_reserved)
            lines[declaration, line][1] += Decimal(line_written_off)
        for declaration, line, quantity in self._db.execute(
            "SELECT declaration, line, quantity FROM given_back WHERE document = ?", (reference,)
        ):
            lines[declaration, line][2] += Decimal(quantity)
        return [
            Position(
                declaration=declaration,
                version=states.get(declaration, (None, None))[1],
                # Given back, then dropped by a deletion or an officer: only history is left.
                state=states.get(declaration, ("NONE", None))[0],
                line=line,
                reserved=reserved,
                written_off=written_off,
                given_back=given,
            )
            for (declaration, line), (reserved, written_off, given) in sorted(lines.items())
        ]

    def _admit(self, reference: str, declaration: str, version: int | None) -> None:
        """Refuse an older version than the newest seen on the position, else remember it
        (inside the operation's transaction; ``None``: a caller that sends no version)."""
        if version is None:
            return
        row = self._db.execute(
            "SELECT version FROM versions WHERE document = ? AND declaration = ?",
            (reference, declaration),
        ).fetchone()
        if row is not None and version < int(row[0]):
            raise StaleVersion(int(row[0]), version)
        self._db.execute(
            "INSERT OR REPLACE INTO versions VALUES (?, ?, ?)", (reference, declaration, version)
        )

    def _set_state(
        self, reference: str, declaration: str, state: ReservationState, version: int | None
    ) -> None:
        self._db.execute(
            "INSERT INTO reservations (document, declaration, state, version) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (document, declaration) DO UPDATE SET state = excluded.state,"
            " version = COALESCE(excluded.version, reservations.version)",
            (reference, declaration, state.value, version),
        )

    def _drop(self, reference: str, declaration: str) -> None:
        """Forget the declaration's position on the document (inside a transaction)."""
        for table in ("holdings", "reservations"):
            self._db.execute(
                f"DELETE FROM {table} WHERE document = ? AND declaration = ?",  # noqa: S608 - fixed names
                (reference, declaration),
            )

    @exact
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

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        return transaction(self._db)
