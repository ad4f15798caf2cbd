"""Dead letters as operators find them: an id they can type, the filters of
``gun-hub dlq list``, and the row the operations view keeps of each one.

An id is the dead letter's own place in the dead-letter topic, ``PARTITION:OFFSET``. It
needs no state anywhere (the broker numbers records once and never renumbers them) and
stays valid as long as the record is retained (30 days). ``gun.dlq/PARTITION/OFFSET``, the
way audit records and logs name a position, reads as the same id.

Every field of a row comes from the dead letter's headers, which any party may write
(dead_letter.py): each is cut to a bounded length, and numbers that are no numbers are
left out rather than trusted.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from gun_contract.dead_letter import (
    HEADER_COMPONENT,
    HEADER_ERROR_CLASS,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    HEADER_ORIGINAL_TRUNCATED,
    HEADER_REFERENCE,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    header_value,
)

# Kafka numbers partitions with 32-bit and offsets with 64-bit signed integers.
_MAX_PARTITION = 2**31 - 1
_MAX_OFFSET = 2**63 - 1
_NUMBER = r"0|[1-9][0-9]{0,18}"
_SHORT_ID = re.compile(rf"({_NUMBER}):({_NUMBER})")
_POSITION = re.compile(rf"(.{{1,249}})/({_NUMBER})/({_NUMBER})")
# The contract's ReferenceType (schemas/common-types.xsd).
REFERENCE = re.compile(r"[0-9A-Z][0-9A-Z._/\-]{5,34}")
# Kinds are short codes (ENVELOPE_UNKNOWN_KID, XML_MALFORMED...); any party may write one,
# so a filter accepts any printable text of a kind's length.
KIND = re.compile(r"[\x21-\x7e]{1,128}")
_RELATIVE = re.compile(r"([1-9][0-9]{0,5})([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}

MAX_KIND_CHARS = 128
MAX_COMPONENT_CHARS = 128
MAX_REASON_CHARS = 300
_MAX_TOPIC_CHARS = 249  # Kafka's own limit on a topic name


class NotAnId(ValueError):
    """Text that names no dead letter; the message says what an id looks like."""


@dataclass(frozen=True, slots=True, order=True)
class DeadLetterId:
    """A dead letter's place in the dead-letter topic."""

    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str, dlq_topic: str | None = None) -> DeadLetterId:
        """``PARTITION:OFFSET``, or ``TOPIC/PARTITION/OFFSET`` of the dead-letter topic
        (``dlq_topic``: the only topic accepted in that form; None accepts any)."""
        cleaned = text.strip()
        short = _SHORT_ID.fullmatch(cleaned)
        if short is not None:
            return cls._checked(short.group(1), short.group(2), text)
        long = _POSITION.fullmatch(cleaned)
        if long is not None:
            topic = long.group(1)
            if dlq_topic is not None and topic != dlq_topic:
                raise NotAnId(
                    f"{text[:80]!r} names a record of {topic[:80]!r}, not of the dead-letter "
                    f"topic {dlq_topic}"
                )
            return cls._checked(long.group(2), long.group(3), text)
        raise NotAnId(
            f"{text[:80]!r} is not a dead-letter id: expected PARTITION:OFFSET (as "
            "`gun-hub dlq list` prints it, e.g. 2:17) or TOPIC/PARTITION/OFFSET"
        )

    @classmethod
    def _checked(cls, partition: str, offset: str, text: str) -> DeadLetterId:
        number, where = int(partition), int(offset)
        if number > _MAX_PARTITION or where > _MAX_OFFSET:
            raise NotAnId(f"{text[:80]!r}: partition or offset beyond what Kafka numbers")
        return cls(number, where)


class NotAFilter(ValueError):
    """A filter value that cannot be used; the message says which and how."""


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """What ``dlq list`` narrows to: written at or after ``since``, of ``kind``, about
    ``reference``. Each is optional; together they all apply."""

    since: datetime | None = None
    kind: str | None = None
    reference: str | None = None

    def __post_init__(self) -> None:
        if self.since is not None and self.since.tzinfo is None:
            raise NotAFilter("since: a time with its UTC offset")
        if self.kind is not None and not KIND.fullmatch(self.kind):
            raise NotAFilter("kind: a dead-letter kind such as ENVELOPE_UNKNOWN_KID")
        if self.reference is not None and not REFERENCE.fullmatch(self.reference):
            raise NotAFilter("reference: a declaration reference (MRN or LRN)")

    def where(self) -> tuple[str, tuple[Any, ...]]:
        """The SQL clause over the ``dead_letters`` table, and its arguments."""
        clauses: list[str] = []
        args: list[Any] = []
        if self.since is not None:
            clauses.append("at >= ?")
            args.append(self.since.timestamp())
        if self.kind is not None:
            clauses.append("kind = ?")
            args.append(self.kind)
        if self.reference is not None:
            clauses.append("reference = ?")
            args.append(self.reference)
        return ("WHERE " + " AND ".join(clauses) if clauses else "", tuple(args))


def parse_since(
    text: str, now: datetime, zone: tzinfo | None = None, *, local: bool = False
) -> datetime:
    """When a ``--since`` starts: a duration back from ``now`` (``90m``, ``6h``, ``7d``),
    a day (``2026-11-22``: its midnight), or a date and time (ISO 8601). Without a UTC
    offset, in ``zone`` (default: UTC), or with ``local`` in this machine's own time
    zone, its summer time included (the command line's: an officer's own time)."""
    cleaned = text.strip()
    relative = _RELATIVE.fullmatch(cleaned)
    if relative is not None:
        amount, unit = int(relative.group(1)), _UNITS[relative.group(2)]
        try:
            return now - timedelta(**{unit: amount})
        except OverflowError:
            raise NotAFilter(f"since: {cleaned} goes back before the year 1") from None
    try:
        if len(cleaned) == 10:
            moment = datetime.combine(date.fromisoformat(cleaned), time(0))
        else:
            moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise NotAFilter(
            f"since: {text[:40]!r} is neither a duration (90m, 6h, 7d), a day (YYYY-MM-DD) "
            "nor an ISO date and time"
        ) from None
    if moment.tzinfo is not None:
        return moment
    if not local:
        return moment.replace(tzinfo=zone or UTC)
    try:
        return moment.astimezone()  # a naive time is read as the machine's local time
    except (ValueError, OverflowError):  # the years 1 and 9999 shifted out of range
        raise NotAFilter(f"since: {cleaned} is out of the range of dates") from None


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    """What the view keeps of one dead letter (never its value)."""

    id: DeadLetterId
    at: float  # the dead letter's record time, POSIX seconds
    kind: str
    error_class: str
    component: str
    reason: str  # cut to MAX_REASON_CHARS; ``dlq show`` reads it whole from the broker
    reference: str  # "" when neither a header nor the record key names one
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    truncated: bool
    # Its place in the order the view read them (the list's order, and its cursor's key);
    # None for a row read back from the broker.
    seq: int | None = None

    @property
    def source(self) -> str:
        """``topic/partition/offset`` of the original ("?" where a header says nothing
        usable)."""
        partition = "?" if self.source_partition is None else str(self.source_partition)
        offset = "?" if self.source_offset is None else str(self.source_offset)
        return f"{self.source_topic or '?'}/{partition}/{offset}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "at": _iso(self.at),
            "kind": self.kind,
            "class": self.error_class,
            "component": self.component,
            "reason": self.reason,
            "reference": self.reference or None,
            "source": self.source,
            "source_topic": self.source_topic or None,
            "truncated": self.truncated,
        }


def row_of(
    partition: int,
    offset: int,
    at: float,
    headers: Sequence[tuple[str, bytes]],
    key: bytes | None,
) -> DeadLetterRow:
    """The row of the dead letter at ``partition:offset`` from its headers and key.

    The reference is the header's, or else the record key when it has a reference's form:
    a dead letter refused before its declaration could be read (a security one) carries no
    reference header, and its key is the one its sender chose (the sender's word only).
    """

    def header(name: str, limit: int) -> str:
        return _text(header_value(headers, name) or "")[:limit]

    reference = header(HEADER_REFERENCE, 64)
    if not REFERENCE.fullmatch(reference):
        reference = ""
        keyed = _text(key.decode("utf-8", "replace")) if key is not None else ""
        if REFERENCE.fullmatch(keyed):
            reference = keyed
    return DeadLetterRow(
        id=DeadLetterId(partition, offset),
        at=at,
        kind=header(HEADER_ERROR_KIND, MAX_KIND_CHARS) or "UNKNOWN",
        error_class=header(HEADER_ERROR_CLASS, 32),
        component=header(HEADER_COMPONENT, MAX_COMPONENT_CHARS) or "unknown",
        reason=header(HEADER_ERROR_REASON, MAX_REASON_CHARS),
        reference=reference,
        source_topic=header(HEADER_SOURCE_TOPIC, _MAX_TOPIC_CHARS),
        source_partition=_number(header(HEADER_SOURCE_PARTITION, 20), _MAX_PARTITION),
        source_offset=_number(header(HEADER_SOURCE_OFFSET, 20), _MAX_OFFSET),
        truncated=header(HEADER_ORIGINAL_TRUNCATED, 8) == "true",
    )


# -- the view's table -----------------------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dlq_partition INTEGER NOT NULL, dlq_offset INTEGER NOT NULL, at REAL NOT NULL,
    kind TEXT NOT NULL, class TEXT NOT NULL, component TEXT NOT NULL, reason TEXT NOT NULL,
    reference TEXT NOT NULL, source_topic TEXT NOT NULL, source_partition INTEGER,
    source_offset INTEGER, truncated INTEGER NOT NULL,
    UNIQUE (dlq_partition, dlq_offset));
CREATE INDEX IF NOT EXISTS dead_letters_by_time ON dead_letters (at);
CREATE INDEX IF NOT EXISTS dead_letters_by_kind ON dead_letters (kind, seq);
CREATE INDEX IF NOT EXISTS dead_letters_by_reference ON dead_letters (reference, seq);
CREATE INDEX IF NOT EXISTS dead_letters_by_original
    ON dead_letters (source_topic, source_partition, source_offset);
"""
_COLUMNS = (
    "dlq_partition, dlq_offset, at, kind, class, component, reason, reference, "
    "source_topic, source_partition, source_offset, truncated"
)


def store_row(db: sqlite3.Connection, row: DeadLetterRow) -> bool:
    """Keep ``row`` (a dead letter read again keeps its first row: same id, same record);
    False if it was kept already."""
    cursor = db.execute(
        f"INSERT OR IGNORE INTO dead_letters ({_COLUMNS}) VALUES ({', '.join('?' * 12)})",
        (
            row.id.partition,
            row.id.offset,
            row.at,
            row.kind,
            row.error_class,
            row.component,
            row.reason,
            row.reference,
            row.source_topic,
            row.source_partition,
            row.source_offset,
            int(row.truncated),
        ),
    )
    return cursor.rowcount == 1


# Where a page of the list starts (``after``): the last row read's place in the order the
# view read them. SQLite seeks to it (the table's key, or the kind's and the reference's
# indexes, which end with it), so that rows the retention removes from earlier pages
# shift no later one. The place is this view's: a view rebuilt reads in an order of its own.
DeadLetterKey = tuple[int]


def dead_letter_key(row: DeadLetterRow) -> DeadLetterKey:
    """The key of a row :func:`select_rows` gave."""
    if row.seq is None:
        raise ValueError(f"dead letter {row.id} was not read from the view: it has no place")
    return (row.seq,)


def select_rows(
    db: sqlite3.Connection,
    chosen: DeadLetterFilter,
    *,
    limit: int,
    offset: int = 0,
    after: DeadLetterKey | None = None,
) -> list[DeadLetterRow]:
    """The dead letters ``chosen`` keeps, in the order the view read them (a page:
    ``limit`` and ``offset``, or ``after`` the key of the last row read,
    :func:`dead_letter_key`)."""
    where, args = chosen.where()
    if after is not None:
        where = f"{where} AND seq > ?" if where else "WHERE seq > ?"
        args = (*args, *after)
    return _rows(
        db.execute(
            f"SELECT seq, {_COLUMNS} FROM dead_letters {where} ORDER BY seq LIMIT ? OFFSET ?",
            (*args, limit, offset),
        ).fetchall()
    )


def first_row_about(
    db: sqlite3.Connection,
    topic: str,
    partition: int,
    offset: int,
    chosen: Callable[[DeadLetterRow], bool],
) -> DeadLetterRow | None:
    """The first dead letter that says it is about the record at
    ``topic/partition/offset`` (each one's headers say so: their writer's word) and that
    ``chosen`` keeps; every one is looked at, however many, in the order the view read
    them (a page of 100 let forgeries hide the one that mattered: review stop 46)."""
    cursor = db.execute(
        f"SELECT seq, {_COLUMNS} FROM dead_letters WHERE source_topic = ? AND "
        "source_partition = ? AND source_offset = ? ORDER BY seq",
        (topic, partition, offset),
    )
    while rows := cursor.fetchmany(500):
        for row in _rows(rows):
            if chosen(row):
                return row
    return None


def _rows(rows: list[Any]) -> list[DeadLetterRow]:
    """Rows of ``SELECT seq, {_COLUMNS}``."""
    return [
        DeadLetterRow(
            id=DeadLetterId(partition, dlq_offset),
            at=at,
            kind=kind,
            error_class=error_class,
            component=component,
            reason=reason,
            reference=reference,
            source_topic=source_topic,
            source_partition=source_partition,
            source_offset=source_offset,
            truncated=bool(truncated),
            seq=seq,
        )
        for (
            seq,
            partition,
            dlq_offset,
            at,
            kind,
            error_class,
            component,
            reason,
            reference,
            source_topic,
            source_partition,
            source_offset,
            truncated,
        ) in rows
    ]


def _number(text: str, most: int) -> int | None:
    if not re.fullmatch(_NUMBER, text):
        return None
    value = int(text)
    return value if value <= most else None


def _text(text: str) -> str:
    """Text SQLite can store (lone surrogates replaced)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _iso(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError, OSError):
        return "unknown"
