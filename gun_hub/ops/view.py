"""The operations read model: status per declaration and statistics, in SQLite.

Fed from Kafka by :mod:`gun_hub.ops.feed` (status events, facts, dead letters, adapter
heartbeats). Each batch of records is applied in one SQLite transaction together with the
offsets it reaches, so the model is exact across restarts: nothing applied twice, nothing
skipped. Records that arrive twice anyway (a status event or a fact emitted again after a
worker crash, see case.py) count once: a decision per (reference, version), the first
one standing as the publisher's does (a decision made again is not counted), a write-off
or a give-back per goods item and document line (the primary keys).
The facts name each version's declarant from its receipt at intake: what the trader lookup
checks ownership against (ADR 0007).

Nothing written on these topics stops the view (issue 10, defect 3): adapters may write the
dead-letter and health topics, so anything can be there. A record that cannot be applied
(wrong shape, a number beyond SQLite's integers, text that is not valid Unicode, a value or
header of any size) is skipped and counted, its partial writes undone (a savepoint where a
record writes more than one statement), and the rest of its batch applied with it; it is
logged once per topic and fault, not per record. A failure of the database itself still
fails the whole batch, which the feed reads again.

Why SQLite beside faust's tables: the statistics are global (every partition, every
day) while faust tables are partitioned across workers; each hub worker keeps its own
full copy of this small model and answers any question alone (ADR 0004).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gun_contract.health import PartnerHealth
from gun_contract.limits import DATABLE_TIMESTAMPS_MS, MAX_RECORD_BYTES, MAX_STATUS_EVENT_BYTES
from gun_contract.sqlite import open_database, transaction
from gun_hub import metrics
from gun_hub.domain.reasons import explain_codes
from gun_hub.domain.status_events import NOT_PUBLISHED, StatusEvent, StatusKind
from gun_hub.ops import dead_letters
from gun_hub.ops.dead_letters import DeadLetterFilter, DeadLetterKey, DeadLetterRow
from gun_hub.ops.facts import (
    FACT,
    DecisionFact,
    GivenBackFact,
    ReceivedFact,
    WriteOffFact,
    WrittenOff,
)

# Who lodged each version, from the intake's receipts and the decisions: every declarant
# that named it (two declarants of one reference: reused, or read on two partitions), so
# that the events naming no receipt of a version two named stay nobody's, after either's
# decision has left too (review of stop 54; keyed by (reference, version) before,
# ``_key_declarants_by_declarant``).
_DECLARANTS = """CREATE TABLE IF NOT EXISTS declarants (
    reference TEXT NOT NULL, version INTEGER NOT NULL, declarant TEXT NOT NULL,
    received_at REAL NOT NULL DEFAULT 0, PRIMARY KEY (reference, version, declarant));
"""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next INTEGER NOT NULL,
    PRIMARY KEY (topic, partition));
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    reference TEXT NOT NULL, version INTEGER NOT NULL, kind TEXT NOT NULL, at TEXT NOT NULL,
    detail TEXT NOT NULL, authority TEXT NOT NULL, outcome TEXT NOT NULL,
    lodging TEXT NOT NULL DEFAULT '',
    UNIQUE (reference, version, kind, authority, outcome, detail, lodging));
CREATE INDEX IF NOT EXISTS events_by_reference ON events (reference, seq);
-- Whose each receipt of a version is (the intake's ReceivedFact): the status events name
-- the receipt (status_events.lodging), never the declarant (history_of_declarant).
-- version: the receipt's (NULL: a receipt kept before stop 54 none of whose events is
-- read yet, ``_version_the_receipts``).
CREATE TABLE IF NOT EXISTS lodgings (
    lodging TEXT PRIMARY KEY, reference TEXT NOT NULL, declarant TEXT NOT NULL,
    received_at REAL NOT NULL, version INTEGER);
CREATE INDEX IF NOT EXISTS lodgings_by_reference ON lodgings (reference);
CREATE INDEX IF NOT EXISTS lodgings_by_time ON lodgings (received_at);
CREATE TABLE IF NOT EXISTS decisions (
    reference TEXT NOT NULL, version INTEGER NOT NULL, declarant TEXT NOT NULL,
    stage TEXT NOT NULL, outcome TEXT NOT NULL, day TEXT NOT NULL, decided_at REAL NOT NULL,
    PRIMARY KEY (reference, version));
CREATE INDEX IF NOT EXISTS decisions_by_time ON decisions (decided_at);
CREATE INDEX IF NOT EXISTS decisions_by_declarant ON decisions (declarant);
-- A decision's documents by their place in its fact: two of one code on one goods item
-- (two licences, both "(confidential)"; a certificate quoted on two lines) are two uses.
CREATE TABLE IF NOT EXISTS decision_documents (
    reference TEXT NOT NULL, version INTEGER NOT NULL, goods_item INTEGER NOT NULL,
    code TEXT NOT NULL, document TEXT NOT NULL, authority TEXT NOT NULL, verdict TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (reference, version, position));
-- Per goods item: several may draw on one line. goods_item <= 0: not known (_keep_lines).
CREATE TABLE IF NOT EXISTS write_offs (
    reference TEXT NOT NULL, version INTEGER NOT NULL, authority TEXT NOT NULL,
    code TEXT NOT NULL, document TEXT NOT NULL, line INTEGER NOT NULL,
    quantity TEXT NOT NULL, unit TEXT NOT NULL, at TEXT NOT NULL, goods_item INTEGER NOT NULL,
    PRIMARY KEY (reference, version, authority, goods_item, code, document, line));
CREATE INDEX IF NOT EXISTS write_offs_by_document ON write_offs (document);
-- The written-off lines' order: a page seeks to its first line (200,000 lines: 1.5 ms,
-- where a scan took 28 ms and a deep OFFSET 80 ms).
CREATE INDEX IF NOT EXISTS write_offs_by_line ON write_offs (authority, code, document, line, unit);
-- What invalidations gave back of those write-offs (version: the invalidation's).
CREATE TABLE IF NOT EXISTS give_backs (
    reference TEXT NOT NULL, version INTEGER NOT NULL, authority TEXT NOT NULL,
    code TEXT NOT NULL, document TEXT NOT NULL, line INTEGER NOT NULL,
    quantity TEXT NOT NULL, unit TEXT NOT NULL, at TEXT NOT NULL, goods_item INTEGER NOT NULL,
    PRIMARY KEY (reference, version, authority, goods_item, code, document, line));
CREATE INDEX IF NOT EXISTS give_backs_by_document ON give_backs (document);
CREATE INDEX IF NOT EXISTS give_backs_by_time ON give_backs (at);
{_DECLARANTS}
-- Decisions that left by their time while their day's counts stay: a fact of one emitted
-- again (after a crash of the hub) is then not counted twice. decided_at: NULL in a view
-- made before stop 42 (_date_the_decisions_left).
CREATE TABLE IF NOT EXISTS decisions_left (
    reference TEXT NOT NULL, version INTEGER NOT NULL, day TEXT NOT NULL, decided_at REAL,
    PRIMARY KEY (reference, version));
CREATE INDEX IF NOT EXISTS decisions_left_by_day ON decisions_left (day);
CREATE INDEX IF NOT EXISTS declarants_by_time ON declarants (received_at);
-- No query reads the decisions by day any more (the counts are counters): not kept.
DROP INDEX IF EXISTS decisions_by_day;
CREATE TABLE IF NOT EXISTS partners (
    authority TEXT NOT NULL, replica TEXT NOT NULL DEFAULT '', health TEXT NOT NULL,
    PRIMARY KEY (authority, replica)
);
CREATE TABLE IF NOT EXISTS overrides (
    reference TEXT NOT NULL, version INTEGER NOT NULL, declarant TEXT NOT NULL,
    outcome TEXT NOT NULL, day TEXT NOT NULL, goods_items INTEGER NOT NULL,
    covered INTEGER NOT NULL, declined INTEGER NOT NULL,
    PRIMARY KEY (reference, version));
CREATE INDEX IF NOT EXISTS overrides_by_day ON overrides (day);
CREATE INDEX IF NOT EXISTS events_by_time ON events (at);
CREATE INDEX IF NOT EXISTS write_offs_by_time ON write_offs (at);
CREATE TABLE IF NOT EXISTS rollout_uses (
    reference TEXT NOT NULL, version INTEGER NOT NULL, authority TEXT NOT NULL,
    office TEXT NOT NULL, mode TEXT NOT NULL, outcome TEXT NOT NULL, day TEXT NOT NULL,
    would_decide TEXT NOT NULL, agrees INTEGER, reasons TEXT NOT NULL,
    PRIMARY KEY (reference, version, authority));
CREATE INDEX IF NOT EXISTS rollout_uses_by_day ON rollout_uses (day);
-- Versions the publisher decided and withheld, from its status of them (at: that event's
-- time, compared as the events' are): their decision counts for nothing, whether its fact
-- is read before or after. other_declarant 1: decided for another declarant than the
-- reference's, a version nobody owns; 0: below a version published.
CREATE TABLE IF NOT EXISTS unpublished (
    reference TEXT NOT NULL, version INTEGER NOT NULL, other_declarant INTEGER NOT NULL,
    at TEXT NOT NULL, PRIMARY KEY (reference, version));
CREATE INDEX IF NOT EXISTS unpublished_by_time ON unpublished (at);
-- Receipts whose decision the publisher withheld for being another declarant's, from its
-- NOT_PUBLISHED_OTHER_DECLARANT naming the receipt: their events are nobody's, while the
-- version's other receipts stay their declarants' (review of stop 54). A status naming no
-- receipt (of before stop 54) withholds the whole version (``unpublished``).
CREATE TABLE IF NOT EXISTS withheld_lodgings (
    lodging TEXT PRIMARY KEY, reference TEXT NOT NULL, version INTEGER NOT NULL,
    at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS withheld_lodgings_by_time ON withheld_lodgings (at);
CREATE INDEX IF NOT EXISTS withheld_lodgings_by_version ON withheld_lodgings (reference, version);
-- A later decision fact of a version whose outcome differs from the decision kept, set
-- aside as read (fact: its JSON): a version two partitions' cases decided, the one kept
-- may be the decision the publisher did not publish, which its NOT_PUBLISHED_DECIDED_ELSEWHERE
-- says, read before or after either fact (``_settle``). Left by its time, as the decisions.
CREATE TABLE IF NOT EXISTS decisions_aside (
    reference TEXT NOT NULL, version INTEGER NOT NULL, outcome TEXT NOT NULL,
    decided_at REAL NOT NULL, fact TEXT NOT NULL, PRIMARY KEY (reference, version, outcome));
CREATE INDEX IF NOT EXISTS decisions_aside_by_time ON decisions_aside (decided_at);
""".replace("{_DECLARANTS}", _DECLARANTS)
# What the counts are answered from, kept as the view is fed (issue 12): the dashboard asks
# every second, and a GROUP BY over every decision grows with them.
_COUNTERS = """
CREATE TABLE IF NOT EXISTS decision_counts (
    day TEXT NOT NULL, outcome TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (day, outcome));
CREATE TABLE IF NOT EXISTS authority_counts (
    day TEXT NOT NULL, authority TEXT NOT NULL, outcome TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (day, authority, outcome));
CREATE TABLE IF NOT EXISTS code_counts (
    day TEXT NOT NULL, code TEXT NOT NULL, verdict TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (day, code, verdict));
CREATE TABLE IF NOT EXISTS dead_letter_counts (kind TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS override_counts (
    day TEXT NOT NULL, declarant TEXT NOT NULL, measure TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (day, declarant, measure));
CREATE TABLE IF NOT EXISTS rollout_counts (
    day TEXT NOT NULL, authority TEXT NOT NULL, office TEXT NOT NULL, mode TEXT NOT NULL,
    outcome TEXT NOT NULL, would_decide TEXT NOT NULL, agrees INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (day, authority, office, mode, outcome, would_decide, agrees));
CREATE TABLE IF NOT EXISTS rollout_reason_counts (
    day TEXT NOT NULL, authority TEXT NOT NULL, office TEXT NOT NULL, mode TEXT NOT NULL,
    code TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (day, authority, office, mode, code));
"""
# Status events and facts of a kind this view does not know (a newer hub worker's, during a
# rolling upgrade), kept as read, by the role of their topic, for a view that knows their
# kind: applied when it starts (``OpsView._apply_parked``); they leave with the retention.
_PARKED = """
CREATE TABLE IF NOT EXISTS parked (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    kind TEXT NOT NULL, at REAL NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (topic, partition, offset));
CREATE INDEX IF NOT EXISTS parked_by_time ON parked (at);
"""
# The kind of a record a newer hub may write: upper-case words, as the hub's kinds are. A
# record whose kind is anything else is no record of ours (skipped, not kept).
_NEWER_KIND = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
# Rows of each kind one prune step deletes (a few milliseconds of the event loop).
_PRUNE_BATCH = 2000
# The key columns of each counter (its value is ``n``).
_COUNTER_KEYS = {
    "decision_counts": ("day", "outcome"),
    "authority_counts": ("day", "authority", "outcome"),
    "code_counts": ("day", "code", "verdict"),
    "dead_letter_counts": ("kind",),
    # measure: declared, applied (covered a refusal or a missing answer), declined.
    "override_counts": ("day", "declarant", "measure"),
    # agrees: 1, 0, or -1 where no shadow answer was compared (would_decide is then '').
    "rollout_counts": ("day", "authority", "office", "mode", "outcome", "would_decide", "agrees"),
    "rollout_reason_counts": ("day", "authority", "office", "mode", "code"),
}
_COUNTER_TABLES = tuple(_COUNTER_KEYS)
# Counters kept per day: forgotten with their day, once it is wholly before the cutoff.
_DAILY_COUNTERS = tuple(table for table, key in _COUNTER_KEYS.items() if key[0] == "day")
_NO_VERDICT = -1
# Tables a view made before stop 37-s keyed too coarsely (F1, F2): the column their key
# gained, and its value for a row kept from then (``_rekey_tables_made_before``): a
# decision's documents numbered in the order they were stored, a write-off's goods item
# unknown (0) until a fact states it again.
_REKEYED = {
    "decision_documents": (
        "position",
        "ROW_NUMBER() OVER (PARTITION BY reference, version ORDER BY rowid) - 1",
    ),
    "write_offs": ("goods_item", "0"),
    # Before stop 53 an event named no receipt (two declarants' events of one version
    # were one, the second's dropped as a duplicate): kept as nobody's receipt.
    "events": ("lodging", "''"),
    # Before stop 54 one heartbeat per authority, whichever replica beat (the review of
    # stop 54): the one kept is the nameless replica's, stale once the replicas name
    # themselves (lag_metrics.authority_health leaves it out).
    "partners": ("replica", "''"),
}
_KEYED_BEFORE = "{}_keyed_before"
REPLICAS_KEPT = 64
"""Adapter replicas whose heartbeats the view keeps per authority (OpsView._keep_replicas_of)."""


def _heard_at(health: str) -> str:
    """When a kept heartbeat was dated, as ISO text (ordered as the times are; one that
    no longer reads sorts first: forgotten first)."""
    try:
        return PartnerHealth.model_validate_json(health).at.astimezone(UTC).isoformat()
    except (ValidationError, OverflowError):
        # OverflowError: dated at the calendar's edge (0001-01-01T00:00+14:00), which the
        # gate believes and UTC cannot hold; raised, the bound on replicas kept stopped
        # working for the authority (review of stop 55).
        return ""


log = logging.getLogger(__name__)

# Kinds of records the view logged once (a fault, or a kind it does not know) it
# remembers at most: a release knows a few dozen kinds.
_LOGGED_AT_MOST = 1024

# A confidential authority's document is stored under this reference (facts.py).
CONFIDENTIAL = "(confidential)"
# Dead-letter kinds beyond those a bounded answer lists are summed under this one.
OTHER_KINDS = "(other)"
_NO_LINE = 0

# Where a page of a list starts (``after``): the last row read's key in the list's order,
# which SQLite seeks to, so that rows arriving on earlier pages shift no later one.
DocumentsKey = tuple[str, str, str]  # code, document, authority ("": none)
WrittenOffKey = tuple[str, str, str, int, str]  # authority, code, document, line, unit


def documents_key(row: dict[str, Any]) -> DocumentsKey:
    """The key of a row :meth:`ViewQueries.documents_of_declarant` gave."""
    return row["code"], row["document"], row["authority"] or ""


def written_off_key(row: dict[str, Any]) -> WrittenOffKey:
    """The key of a row :meth:`ViewQueries.written_off` gave."""
    line = _NO_LINE if row["line"] is None else row["line"]
    return row["authority"], row["code"], row["document"], line, row["unit"] or ""


# The days the statistics count by, and the zone of every time the view answers with: the
# hub's clock (UTC). Named in the answers: an officer's own daily figures may use another.
DAYS_IN = "UTC"

# Larger values are no record of ours: skipped before parsing. A decision fact lists every
# document of its declaration, so facts may be as large as any record.
_MAX_EVENT_BYTES = MAX_STATUS_EVENT_BYTES  # what the hub writes fits (limits.py)
_MAX_FACT_BYTES = MAX_RECORD_BYTES
# An authority id as the routing table names them; a heartbeat naming anything else is not
# an adapter's (and would become a metric label).
_AUTHORITY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Quantities are summed exactly: a quantity beyond this magnitude is no real quantity.
_MAX_QUANTITY_DIGITS = 30
# A failure of the database itself (a full disk, a lock, corruption): the batch fails and
# is read again; never a reason to skip a record.
_DATABASE_FAULTS = (sqlite3.OperationalError, sqlite3.InternalError, MemoryError)


class Unusable(ValueError):
    """A record of the right topic that is no record the view can use."""


@dataclass(frozen=True, slots=True)
class FeedRecord:
    """One Kafka record as the view needs it (no aiokafka type in the model)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes
    headers: Sequence[tuple[str, bytes]] = ()
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class FeedTopics:
    status: str
    facts: str
    dlq: str
    health: str

    def all(self) -> list[str]:
        return [self.status, self.facts, self.dlq, self.health]


class ViewQueries:
    """The questions the view answers, on one SQLite connection.

    :class:`OpsView` asks them on its own connection (the feed's, on the event loop);
    the web layer asks them on connections of its own in worker threads
    (``gun_hub/web/queries.py``), so a slow question never stalls the hub's loop.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    # -- status lookup ------------------------------------------------------------------

    def declaration(self, reference: str) -> dict[str, Any] | None:
        """Current state and dated history of one declaration; None if never seen."""
        rows = self._event_rows(reference)
        if not rows:
            return None
        owners = self._owners(reference)
        history = self._dated(rows, owners)
        published = self._dated(_without_withheld(rows, owners), owners) or history
        return {"reference": reference, **current_state(published), "history": history}

    def history(self, reference: str) -> list[dict[str, Any]]:
        """The dated status events of one declaration, in the order they were applied.

        A DECIDED event of a version that already has one is marked ``decided_again``: the
        version was decided again after a crash (see ``_decision``) and the clearance
        system received the first; a repeat saying the same was never kept (``events``
        is unique without the time). One the publisher did not publish, another
        partition's case's decision of the version having been published (its
        NOT_PUBLISHED_DECIDED_ELSEWHERE names it: :func:`_not_published_places`), is marked
        ``not_published``, read before or after the one published."""
        return self._dated(self._event_rows(reference), self._owners(reference))

    def _event_rows(self, reference: str) -> list[tuple[Any, ...]]:
        return self._db.execute(
            "SELECT version, kind, at, detail, authority, outcome, lodging FROM events "
            "WHERE reference = ? ORDER BY seq",
            (reference,),
        ).fetchall()

    def _owners(self, reference: str) -> dict[str, str]:
        """The declarant of each receipt of ``reference`` one declarant alone named."""
        return {
            str(lodging): str(declarant)
            for lodging, declarant in self._db.execute(
                "SELECT lodging, declarant FROM lodgings WHERE reference = ? AND declarant != ''",
                (reference,),
            )
        }

    @staticmethod
    def _dated(rows: Iterable[tuple[Any, ...]], owners: Mapping[str, str]) -> list[dict[str, Any]]:
        """The events as the history lists them. A version is decided once per declarant:
        two declarants' versions 1 are two, one declarant's version read on two
        partitions (two receipts) is one, its second decision a duplicate the publisher
        dropped (review of stop 54). That one's, when the publisher's status names it
        (:func:`_not_published_places`), is marked ``not_published`` instead, and is not
        the version's first decision even when read first: the clearance system received
        the other (the two cases' events are on their partitions, read in any order)."""
        rows = list(rows)
        elsewhere = _not_published_places(rows)
        decided: set[tuple[int, str]] = set()
        history = []
        for place, (version, kind, at, detail, authority, outcome, lodging) in enumerate(rows):
            whose = owners.get(lodging) or lodging
            not_published = place in elsewhere
            again = kind in _DECIDED and not not_published and (version, whose) in decided
            if kind in _DECIDED and not not_published:
                decided.add((version, whose))
            history.append(
                {
                    "version": version,
                    "kind": kind,
                    "at": at,
                    "detail": detail,
                    **({"authority": authority} if authority else {}),
                    **({"outcome": outcome} if outcome else {}),
                    **({DECIDED_AGAIN: True} if again else {}),
                    **({NOT_PUBLISHED_HERE: True} if not_published else {}),
                }
            )
        return history

    def declarant_of(self, reference: str) -> str | None:
        """The declarant (EORI) of the latest version of a declaration the hub accepted or
        decided; None while no fact names one.

        The intake names the declarant of each version it accepts (``ReceivedFact``), so
        a version belongs to its declarant from its receipt; a decision fact names it too
        (and is what a view fed before the intake's facts existed has). A version refused
        unread names nobody (an empty declarant): nobody's. Stale versions are never named,
        nor is a version the publisher withheld for being another declarant's
        (``_not_published``): the decisions published say whose the declaration is.
        """
        rows = self._db.execute(
            "SELECT version, declarant, 1 AS decided FROM decisions WHERE reference = ?"
            " UNION"
            " SELECT version, declarant, 0 AS decided FROM declarants WHERE reference = ?"
            " ORDER BY version DESC, decided DESC",
            (reference, reference),
        ).fetchall()
        if not rows:
            return None
        version, declarant, decided = rows[0]
        if decided:
            return str(declarant)
        # The latest version's receipts, no decision of it: named by two, it is nobody's.
        named = {str(row[1]) for row in rows if row[0] == version}
        return named.pop() if len(named) == 1 else None

    def history_of_declarant(self, reference: str, eori: str) -> list[dict[str, Any]] | None:
        """The history of a declaration lodged by ``eori``; None for one it did not lodge
        and for an unknown one alike (a trader cannot tell them apart).

        An event names the receipt of the version it is about (``lodging``), which the
        intake's fact ties to its declarant: shown to that declarant only, and to nobody
        while the fact is unread. Two declarants may lodge one reference (reused once the
        hub forgot the first one's case, or one version read on two partitions at once):
        keyed by (reference, version) alone, each read the other's events (security
        review of stop 52). An event naming no receipt (a declaration refused unread, a
        stale copy, the publisher's, or written before stop 53) is shown by the versions
        its declarant alone named, as before, and of which no receipt is known: of such a
        version it proves no declarant (another's version refused unread under a reused
        reference; review of stop 54)."""
        if not eori:
            return None
        receipts = self._db.execute(
            "SELECT lodging, declarant, version FROM lodgings WHERE reference = ?", (reference,)
        ).fetchall()
        own = {str(lodging) for lodging, declarant, _version in receipts if declarant == eori}
        # The declarant of each receipt one declarant alone named (``_owners``).
        owners = {str(lodging): str(declarant) for lodging, declarant, _ in receipts if declarant}
        # The versions a receipt is known of: an event naming none of such a version is no
        # proof of any declarant (another's version refused unread, a copy: review of stop
        # 54), and nobody's. A receipt whose version is not known yet: every version.
        tagged = {version for _lodging, _declarant, version in receipts}
        # Not by a copy's event: it names the case's receipt, maybe a later version's
        # (the intake's _ignore_stale), never one of its own version.
        tagged |= {
            version
            for (version,) in self._db.execute(
                "SELECT DISTINCT version FROM events WHERE reference = ? AND lodging != ''"
                " AND kind != ?",
                (reference, StatusKind.IGNORED_STALE_VERSION.value),
            )
        }
        every_version_tagged = None in tagged
        if not own and self.declarant_of(reference) != eori:
            return None
        named: dict[int, set[str]] = defaultdict(set)
        for version, declarant in self._db.execute(
            "SELECT version, declarant FROM decisions WHERE reference = ? AND declarant != ''"
            " UNION SELECT version, declarant FROM declarants"
            " WHERE reference = ? AND declarant != ''",
            (reference, reference),
        ):
            named[int(version)].add(str(declarant))
        mine = {version for version, who in named.items() if who == {eori}}
        first = min(mine, default=None)
        # A version withheld for being another declarant's by a status naming no receipt
        # names nobody (``_not_published``), and is nobody's to see either; one naming its
        # receipt withholds that receipt alone (``_withhold_receipt``).
        withheld_receipts = {
            str(lodging)
            for (lodging,) in self._db.execute(
                "SELECT lodging FROM withheld_lodgings WHERE reference = ?", (reference,)
            )
        }
        withheld = {
            int(version)
            for (version,) in self._db.execute(
                "SELECT version FROM unpublished WHERE reference = ? AND other_declarant",
                (reference,),
            )
        }
        # Its versions, and those named by nobody after its first (a version of its own
        # refused unread, a stale copy): never the versions of another declarant before it
        # (a reference taken over after its case was retired, whose marker names nobody).
        rows = self._db.execute(
            "SELECT version, kind, at, detail, authority, outcome, lodging FROM events "
            "WHERE reference = ? ORDER BY seq",
            (reference,),
        ).fetchall()

        def theirs(version: int, lodging: str) -> bool:
            if lodging:
                # Withheld: nobody's, its receipt's declarant's neither (a decision the
                # clearance system never received; review of stop 53's change).
                return (
                    lodging in own
                    and lodging not in withheld_receipts
                    and (version not in withheld)
                )
            if every_version_tagged or version in tagged:
                return False
            return version in mine or (
                first is not None
                and version not in named
                and version not in withheld
                and version > first
            )

        return [
            event
            for event, row in zip(self._dated(rows, owners), rows, strict=True)
            if theirs(event["version"], row[6])
        ] or None

    # -- statistics ---------------------------------------------------------------------

    def statistics(
        self,
        since: date | None = None,
        until: date | None = None,
        *,
        max_codes: int | None = None,
        max_dead_letter_kinds: int | None = None,
    ) -> dict[str, Any]:
        """Decisions by outcome, day, authority and document code, and dead letters.

        ``max_codes`` keeps the most used document codes only (``by_document_code_left_off``
        says how many were left off); ``max_dead_letter_kinds`` likewise for dead letters.
        """
        where, args = _day_range(since, until, "day")
        by_outcome = self.outcome_counts(where, args)
        by_day: dict[str, dict[str, int]] = defaultdict(dict)
        for day, outcome, count in self._db.execute(
            f"SELECT day, outcome, n FROM decision_counts {where}", args
        ):
            by_day[day][outcome] = count
        by_authority: dict[str, dict[str, int]] = defaultdict(dict)
        for authority, outcome, count in self._db.execute(
            f"SELECT authority, outcome, SUM(n) FROM authority_counts {where} "
            "GROUP BY authority, outcome",
            args,
        ):
            by_authority[authority][outcome] = count
        by_code: dict[str, dict[str, Any]] = {}
        for code, verdict, count in self._db.execute(
            f"SELECT code, verdict, SUM(n) FROM code_counts {where} GROUP BY code, verdict",
            args,
        ):
            entry = by_code.setdefault(code, {"uses": 0, "by_verdict": {}})
            entry["uses"] += count
            entry["by_verdict"][verdict] = count
        kept_codes = sorted(by_code)
        if max_codes is not None and len(by_code) > max_codes:
            kept_codes = sorted(sorted(by_code, key=lambda c: (-by_code[c]["uses"], c))[:max_codes])
        return {
            "from": since.isoformat() if since else None,
            "to": until.isoformat() if until else None,
            "timezone": DAYS_IN,
            "decisions": {
                "total": sum(by_outcome.values()),
                "by_outcome": dict(sorted(by_outcome.items())),
                "by_day": {day: dict(sorted(v.items())) for day, v in sorted(by_day.items())},
                "by_authority": {
                    authority: dict(sorted(v.items()))
                    for authority, v in sorted(by_authority.items())
                },
                "by_document_code": {code: by_code[code] for code in kept_codes},
                "by_document_code_left_off": len(by_code) - len(kept_codes),
            },
            "overrides": self.override_counts(since, until, max_declarants=max_codes),
            "dead_letters": self.dead_letter_counts(max_dead_letter_kinds, since, until),
        }

    def override_counts(
        self, since: date | None = None, until: date | None = None, *, max_declarants: int | None
    ) -> dict[str, Any]:
        """Decisions of versions carrying the declarant's override (mention 73000), in
        total and per declarant: ``declared`` (the mention was there), ``applied`` (it
        covered a refusal or a missing answer: documentary control), ``declined`` (it
        could not cover a refusal). ``max_declarants`` keeps the most frequent users.
        From the counters: the overrides themselves leave with their decisions."""
        where, args = _day_range(since, until, "day")
        by_declarant: dict[str, dict[str, int]] = {}
        for declarant, measure, count in self._db.execute(
            f"SELECT declarant, measure, SUM(n) FROM override_counts {where} "
            "GROUP BY declarant, measure",
            args,
        ):
            entry = by_declarant.setdefault(declarant, {"declared": 0, "applied": 0, "declined": 0})
            entry[measure] = count
        kept = sorted(by_declarant)
        if max_declarants is not None and len(kept) > max_declarants:
            busiest = sorted(by_declarant, key=lambda d: (-by_declarant[d]["declared"], d))
            kept = sorted(busiest[:max_declarants])
        return {
            "declared": sum(v["declared"] for v in by_declarant.values()),
            "applied": sum(v["applied"] for v in by_declarant.values()),
            "declined": sum(v["declined"] for v in by_declarant.values()),
            "by_declarant": {declarant: by_declarant[declarant] for declarant in kept},
            "by_declarant_left_off": len(by_declarant) - len(kept),
        }

    def rollout_report(
        self, since: date | None = None, until: date | None = None
    ) -> list[dict[str, Any]]:
        """The pilot report: per authority, office and mode, the decided versions that
        quoted its documents; in shadow mode, how often what it would have decided agreed
        with the decision taken, what it would have decided, and its reasons (codes with
        their counts, most frequent first). From the counters: the rollout uses themselves
        leave with their decisions."""
        where, args = _day_range(since, until, "day")
        report: dict[tuple[str, str, str], dict[str, Any]] = {}

        def entry_of(authority: str, office: str, mode: str) -> dict[str, Any]:
            return report.setdefault(
                (authority, office, mode),
                {
                    "authority": authority,
                    "office": office,
                    "mode": mode,
                    "declarations": 0,
                    "decided": defaultdict(int),
                    "agreements": 0,
                    "disagreements": 0,
                    "would_decide": defaultdict(int),
                    "reasons": defaultdict(int),
                },
            )

        for authority, office, mode, outcome, would, agrees, count in self._db.execute(
            "SELECT authority, office, mode, outcome, would_decide, agrees, SUM(n) "
            f"FROM rollout_counts {where} "
            "GROUP BY authority, office, mode, outcome, would_decide, agrees",
            args,
        ):
            entry = entry_of(authority, office, mode)
            entry["declarations"] += count
            entry["decided"][outcome] += count
            if agrees != _NO_VERDICT:
                entry["agreements" if agrees else "disagreements"] += count
                entry["would_decide"][would] += count
        for authority, office, mode, code, count in self._db.execute(
            "SELECT authority, office, mode, code, SUM(n) "
            f"FROM rollout_reason_counts {where} GROUP BY authority, office, mode, code",
            args,
        ):
            entry_of(authority, office, mode)["reasons"][code] += count
        listed = []
        for key in sorted(report):
            entry = report[key]
            entry["decided"] = dict(sorted(entry["decided"].items()))
            entry["would_decide"] = dict(sorted(entry["would_decide"].items()))
            entry["reasons"] = dict(
                sorted(entry["reasons"].items(), key=lambda kv: (-kv[1], kv[0]))
            )
            listed.append(entry)
        return listed

    def outcome_counts(self, where: str = "", args: tuple[str, ...] = ()) -> dict[str, int]:
        """Decisions by outcome (``where``: a clause of :func:`_day_range`), from the
        counters."""
        rows = self._db.execute(
            f"SELECT outcome, SUM(n) FROM decision_counts {where} GROUP BY outcome "
            "ORDER BY outcome",
            args,
        )
        return dict(rows.fetchall())

    def documents_of_declarant(
        self,
        eori: str,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: DocumentsKey | None = None,
    ) -> list[dict[str, Any]]:
        """Every document a declarant quoted within the retention (the decisions kept),
        with how often and when it was last used (``limit`` and ``offset``, or ``after``
        the key of the last row read (:func:`documents_key`): one page of them, in code
        and document order)."""
        past = "AND (dd.code, dd.document, dd.authority) > (?, ?, ?)" if after else ""
        rows = self._db.execute(
            "SELECT dd.code, dd.document, dd.authority, COUNT(DISTINCT d.reference), "
            f"MAX(d.decided_at) FROM decision_documents dd JOIN decisions d {_SAME_DECISION} "
            f"WHERE d.declarant = ? {past} GROUP BY dd.code, dd.document, dd.authority "
            "ORDER BY dd.code, dd.document, dd.authority LIMIT ? OFFSET ?",
            (eori, *(after or ()), -1 if limit is None else limit, offset),
        ).fetchall()
        return [
            {
                "code": code,
                "document": document,
                "authority": authority or None,
                "declarations": declarations,
                "last_used": _utc_time(last),
            }
            for code, document, authority, declarations, last in rows
        ]

    def written_off(
        self,
        document: str | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
        after: WrittenOffKey | None = None,
    ) -> list[dict[str, Any]]:
        """Quantity written off per document line and unit, net of what invalidations gave
        back, summed exactly (``limit`` and ``offset``, or ``after`` the key of the last
        row read (:func:`written_off_key`): one page of lines, in authority, code,
        document, line and unit order).

        Each declaration's give-backs are taken off its own write-offs on the line, and
        never more than them: a give-back read before its write-off, or whose write-off
        left the view with the retention, takes nothing off another declaration's.
        ``without_quantity`` counts the write-offs and give-backs whose quantity is not
        known (left out of the sums). SQLite pages the lines; their quantities are summed
        here as decimals (SQLite would sum them as floats)."""
        clauses: list[str] = []
        args: tuple[Any, ...] = ()
        if document is not None:
            clauses, args = ["document = ?"], (document,)
        if after is not None:
            clauses.append("(authority, code, document, line, unit) > (?, ?, ?, ?, ?)")
            args = (*args, *after)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        # A declaration's position on a document is written off once: a later version's
        # write-off of it (a second release notice of one control) is answered "already
        # written off" (03) and reported as a write-off too. Only the first version that
        # wrote a line off counts (counted once per version, the hub said 200 where the
        # partner wrote off 100; review of stop 56).
        rows = self._db.execute(
            "WITH page AS (SELECT DISTINCT authority, code, document, line, unit "
            f"FROM write_offs {where} ORDER BY authority, code, document, line, unit "
            "LIMIT ? OFFSET ?), "
            "first AS (SELECT w.reference, w.authority, w.code, w.document, w.line, w.unit, "
            "MIN(w.version) AS version FROM page p "
            "JOIN write_offs w USING (authority, code, document, line, unit) "
            "GROUP BY w.reference, w.authority, w.code, w.document, w.line, w.unit) "
            "SELECT p.authority, p.code, p.document, p.line, p.unit, 1, w.reference, w.quantity "
            "FROM page p JOIN write_offs w USING (authority, code, document, line, unit) "
            "JOIN first f ON f.reference = w.reference AND f.authority = w.authority "
            "AND f.code = w.code AND f.document = w.document AND f.line = w.line "
            "AND f.unit = w.unit AND f.version = w.version "
            "UNION ALL "
            "SELECT p.authority, p.code, p.document, p.line, p.unit, 0, g.reference, g.quantity "
            "FROM page p JOIN give_backs g USING (authority, code, document, line, unit)",
            (*args, -1 if limit is None else limit, offset),
        ).fetchall()
        # Per line, per declaration: the quantities written off, and given back.
        lines: dict[tuple[str, str, str, int, str], dict[str, _Drawn]] = defaultdict(dict)
        for authority, code, doc, line, unit, is_write_off, reference, quantity in rows:
            drawn = lines[(authority, code, doc, line, unit)].setdefault(reference, _Drawn())
            (drawn.written if is_write_off else drawn.given).append(quantity)
        return [_line_written_off(key, lines[key]) for key in sorted(lines)]

    def dead_letter_counts(
        self, max_kinds: int | None = None, since: date | None = None, until: date | None = None
    ) -> dict[str, Any]:
        """Dead letters by kind; with ``max_kinds``, the most frequent kinds only and the
        rest summed under ``(other)`` (any party may write a dead letter's kind). With a
        period (``since``, ``until``: days in UTC), those of the period, counted from the
        dead letters kept (the retention's: none older), where the statistics of a day
        listed every dead letter kept (review of stop 56)."""
        if since is None and until is None:
            counted = "SELECT kind, n FROM dead_letter_counts"
            args: tuple[float, ...] = ()
        else:
            start = _utc_midnight(since) if since else float("-inf")
            end = _utc_midnight(until + timedelta(days=1)) if until else float("inf")
            counted = (
                "SELECT kind, COUNT(*) FROM dead_letters WHERE at >= ? AND at < ? GROUP BY kind"
            )
            args = (start, end)
        by_kind = dict(self._db.execute(counted, args).fetchall())
        total = sum(by_kind.values())
        if max_kinds is not None and len(by_kind) > max_kinds:
            kept = sorted(by_kind, key=lambda k: (-by_kind[k], k))[:max_kinds]
            other = total - sum(by_kind[k] for k in kept)
            by_kind = {k: by_kind[k] for k in kept} | {OTHER_KINDS: other}
        return {"total": total, "by_kind": dict(sorted(by_kind.items()))}

    def recent_dead_letters(self, limit: int = 10) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT kind, component, reason, at FROM dead_letters ORDER BY seq DESC LIMIT ?",
            (limit,),
        )
        return [
            {
                "kind": kind,
                "component": component,
                "reason": reason,
                "at": _utc_time(at),
            }
            for kind, component, reason, at in rows
        ]

    def dead_letters(
        self,
        chosen: DeadLetterFilter,
        *,
        limit: int,
        offset: int = 0,
        after: DeadLetterKey | None = None,
    ) -> list[DeadLetterRow]:
        """The dead letters ``chosen`` keeps, in the order the view read them (one page, by
        ``offset`` or ``after`` a row's :func:`~gun_hub.ops.dead_letters.dead_letter_key`):
        ``gun-hub dlq list``."""
        return dead_letters.select_rows(self._db, chosen, limit=limit, offset=offset, after=after)

    def first_dead_letter_about(
        self, topic: str, partition: int, offset: int, chosen: Callable[[DeadLetterRow], bool]
    ) -> DeadLetterRow | None:
        """The first dead letter about the record at ``topic/partition/offset`` that
        ``chosen`` keeps."""
        return dead_letters.first_row_about(self._db, topic, partition, offset, chosen)

    def decisions_since(self, timestamp: float) -> int:
        [(count,)] = self._db.execute(
            "SELECT COUNT(*) FROM decisions WHERE decided_at >= ?", (timestamp,)
        ).fetchall()
        return int(count)

    def parked_records(self) -> dict[str, dict[str, int]]:
        """Records kept for a view that knows their kind, by topic role and kind."""
        kept: dict[str, dict[str, int]] = defaultdict(dict)
        for role, kind, count in self._db.execute(
            "SELECT topic, kind, COUNT(*) FROM parked GROUP BY topic, kind ORDER BY topic, kind"
        ):
            kept[role][kind] = count
        return dict(kept)

    def partners(self) -> dict[tuple[str, str], PartnerHealth]:
        """The latest heartbeat kept of each replica of each partner's adapter, by
        (authority, replica); one that no longer reads (kept before stop 34 held
        heartbeats to their bounds) is left out, logged, until the next."""
        kept: dict[tuple[str, str], PartnerHealth] = {}
        for authority, replica, health in self._db.execute(
            "SELECT authority, replica, health FROM partners ORDER BY authority, replica"
        ):
            try:
                kept[(authority, replica)] = PartnerHealth.model_validate_json(health)
            except ValidationError as error:
                log.warning(
                    "the heartbeat kept for %s replica %r no longer reads: %s",
                    authority,
                    replica,
                    error,
                )
        return kept


class OpsView(ViewQueries):
    """SQLite-backed answers to "where is my declaration" and "how many, of what"."""

    def __init__(self, path: Path | str, topics: FeedTopics) -> None:
        self.path = Path(path)
        super().__init__(open_database(path, any_thread=False))
        self.topics = topics
        self._reread_dead_letters_kept_the_old_way()
        self._date_the_receipts()
        self._key_declarants_by_declarant()
        self._version_the_receipts()
        self._date_the_decisions_left()
        self._rekey_tables_made_before()
        missing = set(_COUNTER_TABLES) - self._tables()
        self._db.executescript(_SCHEMA + dead_letters.SCHEMA + _COUNTERS + _PARKED)
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS decisions_left_by_time ON decisions_left (decided_at)"
        )
        if missing:
            self._count_what_is_kept(missing)
        self.skipped = 0  # records that could not be applied (skipped, counted, logged once)
        self.skipped_by_topic: dict[str, int] = defaultdict(int)
        # (topic, fault or kind) already logged: at most _LOGGED_AT_MOST (_first_said).
        self._logged: set[tuple[str, str]] = set()
        self._logged_enough = False  # said that no more is logged
        self.parked = 0  # records of a kind this view does not know, kept (logged once)
        self._apply_parked()

    def close(self) -> None:
        self._db.close()

    def _tables(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}

    def _count_what_is_kept(self, missing: set[str]) -> None:
        """A view made before some counters: those are counted once from the rows it holds.

        Only the missing ones: the rows are pruned by time, so those of the oldest day kept
        no longer say what that day held, while the counters that exist do. A view made
        before the override and rollout counters was pruned by whole days, so its rows
        count them exactly; a counter added later would count that oldest day short."""
        with self._transaction():
            for table in missing:
                self._db.execute(f"DELETE FROM {table}")
            if "decision_counts" in missing:
                self._db.execute(
                    "INSERT INTO decision_counts "
                    "SELECT day, outcome, COUNT(*) FROM decisions GROUP BY day, outcome"
                )
            if "authority_counts" in missing:
                self._db.execute(
                    "INSERT INTO authority_counts SELECT d.day, dd.authority, d.outcome, "
                    "COUNT(DISTINCT d.reference || '/' || d.version) "
                    f"FROM decisions d JOIN decision_documents dd {_SAME_DECISION} "
                    "WHERE dd.authority != '' GROUP BY d.day, dd.authority, d.outcome"
                )
            if "code_counts" in missing:
                self._db.execute(
                    "INSERT INTO code_counts SELECT d.day, dd.code, dd.verdict, COUNT(*) "
                    f"FROM decision_documents dd JOIN decisions d {_SAME_DECISION} "
                    "GROUP BY d.day, dd.code, dd.verdict"
                )
            if "dead_letter_counts" in missing:
                self._db.execute(
                    "INSERT INTO dead_letter_counts SELECT kind, COUNT(*) FROM dead_letters "
                    "GROUP BY kind"
                )
            if "override_counts" in missing:
                for measure, condition in _OVERRIDE_MEASURES.items():
                    self._db.execute(
                        f"INSERT INTO override_counts SELECT day, declarant, '{measure}', "
                        f"COUNT(*) FROM overrides WHERE {condition} GROUP BY day, declarant"
                    )
            if "rollout_counts" in missing:
                self._db.execute(
                    "INSERT INTO rollout_counts SELECT day, authority, office, mode, outcome, "
                    f"would_decide, COALESCE(agrees, {_NO_VERDICT}), COUNT(*) FROM rollout_uses "
                    "GROUP BY day, authority, office, mode, outcome, would_decide, "
                    f"COALESCE(agrees, {_NO_VERDICT})"
                )
            if "rollout_reason_counts" in missing:
                rows = self._db.execute(
                    "SELECT day, authority, office, mode, reasons FROM rollout_uses"
                )
                for day, authority, office, mode, reasons in rows.fetchall():
                    for code in filter(None, reasons.split(",")):
                        self._add("rollout_reason_counts", (day, authority, office, mode, code), 1)

    def prune(
        self,
        before: datetime,
        batch: int = _PRUNE_BATCH,
        *,
        forget_left_before: datetime | None = None,
    ) -> int:
        """Forget what is older than ``before``: decisions (with their documents, override
        and rollout uses), status events, write-offs, give-backs and dead letters older
        than it, a declaration's receipts and declarants with its last events, or, none
        of its events read, once older than ``forget_left_before`` (not by time without
        it: they may be read ahead of their events), the versions the publisher
        withheld older than it whose events have left (``unpublished``), the daily counts
        of the days before its own, with the memory of the decisions that left during them
        (``decisions_left``), and that memory of decisions made before
        ``forget_left_before``. The topics keep as long (30 days): a view rebuilt from them
        holds the same. Times are compared as the hub writes them (UTC, ISO 8601).

        A decision leaves by its time, not its day, so a retention shorter than a day
        bounds the view too; the statistics count it until its whole day leaves, as they
        are answered from the counters (kept as the view is fed, never recounted from the
        rows, see ``_count_what_is_kept``). Its memory leaves with that day, or at
        ``forget_left_before`` (the feed: one retention after the decision left), which
        comes first: with a retention shorter than a day the memory otherwise held every
        decision of the day (stop 42's 20-minute steady run, at a 30-s retention: the
        view's file +12 % over its second ten minutes). What it guards against, a fact
        emitted again (a hub's crash, a version decided again), comes within minutes of
        the first; a repeat later than that would be counted twice in its day.

        At most ``batch`` rows of each kind per call, in one transaction: the feed calls
        it again, yielding to the event loop in between, until it returns 0 (a day of
        rows at once would hold the loop, and every agent, for seconds)."""
        day = before.astimezone(UTC).date().isoformat()
        at = before.astimezone(UTC).isoformat()
        at_s = before.timestamp()
        deleted = 0
        with self._transaction():
            old = self._db.execute(
                "SELECT reference, version, day, decided_at FROM decisions "
                "WHERE decided_at < ? LIMIT ?",
                (at_s, batch),
            ).fetchall()
            # Counted in its day's counts until the day leaves: remembered as long, or
            # until forget_left_before passes its time.
            self._db.executemany(
                "INSERT OR REPLACE INTO decisions_left (reference, version, day, decided_at) "
                "VALUES (?, ?, ?, ?)",
                old,
            )
            for table in ("decision_documents", "overrides", "rollout_uses", "decisions"):
                self._db.executemany(
                    f"DELETE FROM {table} WHERE reference = ? AND version = ?",
                    [(reference, version) for reference, version, _day, _at in old],
                )
            deleted += len(old)
            # A decision set aside leaves by its time too: the lane's status that would
            # put it in the place of the one kept comes within seconds of the two facts
            # (and one read after the decision kept left changes nothing: ``_settle``).
            deleted += self._db.execute(
                "DELETE FROM decisions_aside WHERE rowid IN "
                "(SELECT rowid FROM decisions_aside WHERE decided_at < ? LIMIT ?)",
                (at_s, batch),
            ).rowcount
            if forget_left_before is not None:
                deleted += self._db.execute(
                    "DELETE FROM decisions_left WHERE rowid IN "
                    "(SELECT rowid FROM decisions_left WHERE decided_at < ? LIMIT ?)",
                    (forget_left_before.timestamp(), batch),
                ).rowcount
            # Overrides and rollout uses leave with their decisions; rows a view before
            # stop 37 left behind when a decision replaced another leave with their day.
            for table in ("overrides", "rollout_uses", "decisions_left", *_DAILY_COUNTERS):
                deleted += self._db.execute(
                    f"DELETE FROM {table} WHERE rowid IN "
                    f"(SELECT rowid FROM {table} WHERE day < ? LIMIT ?)",
                    (day, batch),
                ).rowcount
            events = self._db.execute(
                "SELECT seq, reference FROM events WHERE at < ? LIMIT ?", (at, batch)
            ).fetchall()
            self._db.executemany("DELETE FROM events WHERE seq = ?", [(e[0],) for e in events])
            deleted += len(events)
            # A declaration whose last events leave: its receipts older than the
            # retention leave with them. A younger one is a later version's read ahead of
            # its events (the facts topic ahead of the status topic): it leaves by its
            # own time, below (review of stop 54's changes: pruned with the reference's
            # older events, its declarant read a 404 for its new version for good).
            for reference in {e[1] for e in events}:
                for receipts in ("declarants", "lodgings"):
                    self._db.execute(
                        f"DELETE FROM {receipts} WHERE reference = ? AND received_at < ? "
                        "AND NOT EXISTS (SELECT 1 FROM events WHERE reference = ?)",
                        (reference, at_s, reference),
                    )
            # What the publisher withheld leaves once the version's events have left too:
            # until then a receipt or a decision of it read late is not counted, and the
            # version shows in no trader's history.
            deleted += self._db.execute(
                "DELETE FROM unpublished WHERE rowid IN (SELECT rowid FROM unpublished u "
                "WHERE at < ? AND NOT EXISTS (SELECT 1 FROM events e "
                "WHERE e.reference = u.reference AND e.version = u.version) LIMIT ?)",
                (at, batch),
            ).rowcount
            deleted += self._db.execute(
                "DELETE FROM withheld_lodgings WHERE rowid IN (SELECT rowid FROM "
                "withheld_lodgings w WHERE at < ? AND NOT EXISTS (SELECT 1 FROM events e "
                "WHERE e.reference = w.reference AND e.version = w.version) LIMIT ?)",
                (at, batch),
            ).rowcount
            # A receipt none of whose declaration's events is read leaves by its own time,
            # one retention later than the events (``forget_left_before``): read after
            # they left (the facts topic read behind the status topic), or ahead of them
            # (the status topic behind: a declaration decided days after its receipt;
            # review of stop 54: pruned at one retention, its events were nobody's).
            for receipts in ("declarants", "lodgings"):
                if forget_left_before is None:
                    break
                deleted += self._db.execute(
                    f"DELETE FROM {receipts} WHERE rowid IN (SELECT rowid FROM {receipts} d "
                    "WHERE received_at < ? AND NOT EXISTS "
                    "(SELECT 1 FROM events e WHERE e.reference = d.reference) LIMIT ?)",
                    (forget_left_before.timestamp(), batch),
                ).rowcount
            for table in ("write_offs", "give_backs"):
                deleted += self._db.execute(
                    f"DELETE FROM {table} WHERE rowid IN "
                    f"(SELECT rowid FROM {table} WHERE at < ? LIMIT ?)",
                    (at, batch),
                ).rowcount
            letters = self._db.execute(
                "SELECT seq, kind FROM dead_letters WHERE at < ? LIMIT ?", (at_s, batch)
            ).fetchall()
            for seq, kind in letters:
                self._db.execute("DELETE FROM dead_letters WHERE seq = ?", (seq,))
                self._add("dead_letter_counts", (kind,), -1)
            deleted += len(letters)
            # Gone from the topics too: a view rebuilt from them would not have them.
            deleted += self._db.execute(
                "DELETE FROM parked WHERE rowid IN (SELECT rowid FROM parked WHERE at < ? LIMIT ?)",
                (at_s, batch),
            ).rowcount
        return deleted

    def forget_silent_replicas(self, before: datetime) -> int:
        """Forget the heartbeat of each adapter replica last heard before ``before``
        (scaled away, or a pod replaced under another name), but each authority's latest:
        a silent adapter stays silent (``GunHubAdapterSilent``) rather than unknown."""
        by_authority: dict[str, list[tuple[datetime, tuple[str, str]]]] = defaultdict(list)
        for key, beat in self.partners().items():
            by_authority[key[0]].append((beat.fresh_at, key))
        gone = [
            key for beats in by_authority.values() for at, key in sorted(beats)[:-1] if at < before
        ]
        with self._transaction():
            self._db.executemany("DELETE FROM partners WHERE authority = ? AND replica = ?", gone)
        return len(gone)

    def _keep_replicas_of(self, authority: str) -> None:
        """At most :data:`REPLICAS_KEPT` replicas' heartbeats per authority, the least
        recently heard forgotten first: a replica names itself, and without a replica id
        by its host name, so a crash-looping Deployment's pods (a new name each) or an
        adapter key misused to sign ever new names would otherwise grow the table, and
        what every scrape reads, without bound (review of the per-replica health)."""
        beats = self._db.execute(
            "SELECT replica, health FROM partners WHERE authority = ?", (authority,)
        ).fetchall()
        if len(beats) <= REPLICAS_KEPT:
            return
        heard = sorted((_heard_at(health), replica) for replica, health in beats)
        self._db.executemany(
            "DELETE FROM partners WHERE authority = ? AND replica = ?",
            [(authority, replica) for _, replica in heard[: len(beats) - REPLICAS_KEPT]],
        )

    def _add(self, table: str, key: tuple[str | int, ...], n: int) -> None:
        """Add ``n`` to a counter; a counter down to nothing is removed."""
        columns = _COUNTER_KEYS[table]
        self._db.execute(
            f"INSERT INTO {table} VALUES ({', '.join('?' * (len(key) + 1))}) "
            f"ON CONFLICT ({', '.join(columns)}) DO UPDATE SET n = n + excluded.n",
            (*key, n),
        )
        if n < 0:
            where = " AND ".join(f"{column} = ?" for column in columns)
            self._db.execute(f"DELETE FROM {table} WHERE {where} AND n <= 0", key)

    def _count_decision(self, reference: str, version: int, n: int = 1) -> None:
        """Count the decision stored for (reference, version), its documents, override and
        rollout uses (once: a decision made again is not counted, the first stands); ``n``
        -1 takes them out of the counts again (a decision the publisher withheld)."""
        row = self._db.execute(
            "SELECT day, outcome FROM decisions WHERE reference = ? AND version = ?",
            (reference, version),
        ).fetchone()
        if row is None:
            return
        day, outcome = row
        self._add("decision_counts", (day, outcome), n)
        for (authority,) in self._db.execute(
            "SELECT DISTINCT authority FROM decision_documents "
            "WHERE reference = ? AND version = ? AND authority != ''",
            (reference, version),
        ).fetchall():
            self._add("authority_counts", (day, authority, outcome), n)
        for code, verdict, count in self._db.execute(
            "SELECT code, verdict, COUNT(*) FROM decision_documents "
            "WHERE reference = ? AND version = ? GROUP BY code, verdict",
            (reference, version),
        ).fetchall():
            self._add("code_counts", (day, code, verdict), n * count)
        for measure, condition in _OVERRIDE_MEASURES.items():
            for declarant, override_day in self._db.execute(
                f"SELECT declarant, day FROM overrides WHERE reference = ? AND version = ? "
                f"AND {condition}",
                (reference, version),
            ).fetchall():
                self._add("override_counts", (override_day, declarant, measure), n)
        for use_day, authority, office, mode, outcome, would, agrees, reasons in self._db.execute(
            "SELECT day, authority, office, mode, outcome, would_decide, agrees, reasons "
            "FROM rollout_uses WHERE reference = ? AND version = ?",
            (reference, version),
        ).fetchall():
            where = (use_day, authority, office, mode)
            verdict = _NO_VERDICT if agrees is None else agrees
            self._add("rollout_counts", (*where, outcome, would, verdict), n)
            for code in filter(None, reasons.split(",")):
                self._add("rollout_reason_counts", (*where, code), n)

    def _date_the_receipts(self) -> None:
        """A view made before receipts were dated: its receipts count as older than any
        retention, and leave with the next prune unless an event of theirs is kept."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(declarants)")}
        if columns and "received_at" not in columns:
            with self._transaction():
                self._db.execute(
                    "ALTER TABLE declarants ADD COLUMN received_at REAL NOT NULL DEFAULT 0"
                )

    def _key_declarants_by_declarant(self) -> None:
        """A view made before stop 54 kept one declarant per (reference, version), the
        latest receipt's (``_DECLARANTS``): its rows are kept, keyed anew."""
        columns = self._db.execute("PRAGMA table_info(declarants)").fetchall()
        if not columns or any(row[1] == "declarant" and row[5] for row in columns):
            return
        log.info("operations view: declarants keyed again by declarant, its rows kept")
        with self._transaction():
            for (index,) in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' "
                "AND tbl_name = 'declarants' AND sql IS NOT NULL"
            ).fetchall():
                self._db.execute(f"DROP INDEX {index}")
            self._db.execute("ALTER TABLE declarants RENAME TO declarants_keyed_before")
            self._db.execute(_DECLARANTS)
            self._db.execute(
                "INSERT OR REPLACE INTO declarants (reference, version, declarant, received_at) "
                "SELECT reference, version, declarant, received_at FROM declarants_keyed_before"
            )
            self._db.execute("DROP TABLE declarants_keyed_before")

    def _version_the_receipts(self) -> None:
        """A view made before stop 54 kept a receipt without its version: read from its
        events; a receipt none of whose events is read yet learns it from its first
        (``_status``), and until then hides every untagged event of its reference
        (``history_of_declarant``: fail closed)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(lodgings)")}
        if columns and "version" not in columns:
            with self._transaction():
                self._db.execute("ALTER TABLE lodgings ADD COLUMN version INTEGER")
                self._db.execute(
                    "UPDATE lodgings SET version = (SELECT MIN(e.version) FROM events e "
                    "WHERE e.reference = lodgings.reference AND e.lodging = lodgings.lodging "
                    # A copy's event names the case's receipt, maybe a later version's.
                    "AND e.kind != ?)",
                    (StatusKind.IGNORED_STALE_VERSION.value,),
                )
                # A receipt none of whose events is left: its version is the one its
                # declarant's receipt of the same moment names (the ReceivedFact wrote
                # both). Kept without one, a receipt whose events were pruned hid every
                # untagged event of its reference for good, its declarant's next version
                # refused unread included (review of stop 54's changes); judged by time
                # instead, one read ahead of its events was forgotten (review of that).
                self._db.execute(
                    "UPDATE lodgings SET version = (SELECT MIN(d.version) FROM declarants d "
                    "WHERE d.reference = lodgings.reference "
                    "AND d.declarant = lodgings.declarant "
                    "AND d.received_at = lodgings.received_at) WHERE version IS NULL"
                )

    def _date_the_decisions_left(self) -> None:
        """A view made before stop 42 remembered the decisions that left without their
        time: those rows leave with their day, as they did (``prune``)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(decisions_left)")}
        if columns and "decided_at" not in columns:
            with self._transaction():
                self._db.execute("ALTER TABLE decisions_left ADD COLUMN decided_at REAL")

    def _rekey_tables_made_before(self) -> None:
        """A view made before stop 37-s keyed a decision's documents by (goods item, code,
        document) and a write-off by its line only (``_REKEYED``). SQLite cannot change a
        primary key: such a table is set aside (renamed, its indexes dropped), made anew
        by the schema, and its rows moved in, counted as they were (the counters were
        counted from them; a fact read again replaces them: ``_decision``,
        ``_keep_lines``). A table set aside by a start that stopped before moving its
        rows in is moved in by the next."""
        for table, (column, _value) in _REKEYED.items():
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if not columns or column in columns:
                continue
            log.info("operations view: %s keyed again by %s, its rows kept", table, column)
            with self._transaction():
                indexes = self._db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                    "AND sql IS NOT NULL",
                    (table,),
                ).fetchall()
                for (index,) in indexes:
                    self._db.execute(f"DROP INDEX {index}")
                self._db.execute(f"ALTER TABLE {table} RENAME TO {_KEYED_BEFORE.format(table)}")
        set_aside = {_KEYED_BEFORE.format(table) for table in _REKEYED} & self._tables()
        if not set_aside:
            return
        self._db.executescript(_SCHEMA)  # the tables made anew (the rest exists already)
        for table, (column, value) in _REKEYED.items():
            before = _KEYED_BEFORE.format(table)
            if before not in set_aside:
                continue
            kept = ", ".join(row[1] for row in self._db.execute(f"PRAGMA table_info({before})"))
            with self._transaction():
                self._db.execute(
                    f"INSERT OR REPLACE INTO {table} ({kept}, {column}) "
                    f"SELECT {kept}, {value} FROM {before}"
                )
                self._db.execute(f"DROP TABLE {before}")

    def _reread_dead_letters_kept_the_old_way(self) -> None:
        """A view made before dead letters were kept by id (kind, component and reason
        only) reads the dead-letter topic again from its beginning: each one is then kept
        with its id, source and reference, and counted once."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(dead_letters)")}
        if not columns or "dlq_offset" in columns:
            return
        log.info("operations view: dead letters read again from %s, kept by id", self.topics.dlq)
        with self._transaction():
            self._db.execute("DROP TABLE dead_letters")
            self._db.execute("DELETE FROM offsets WHERE topic = ?", (self.topics.dlq,))

    # -- feeding -------------------------------------------------------------------------

    def positions(self) -> dict[tuple[str, int], int]:
        """Next offset to read per (topic, partition), as last applied."""
        rows = self._db.execute("SELECT topic, partition, next FROM offsets")
        return {(topic, partition): nxt for topic, partition, nxt in rows}

    def apply(self, records: Iterable[FeedRecord]) -> int:
        """Apply a batch and the offsets it reaches, atomically. Returns records applied."""
        count = 0
        reached: dict[tuple[str, int], int] = {}
        with self._transaction():
            for record in records:
                self._apply_or_skip(record)
                reached[(record.topic, record.partition)] = record.offset + 1
                count += 1
            self._db.executemany(
                "INSERT INTO offsets VALUES (?, ?, ?) ON CONFLICT (topic, partition) "
                "DO UPDATE SET next = MAX(next, excluded.next)",
                [(topic, partition, nxt) for (topic, partition), nxt in reached.items()],
            )
        return count

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        # Deferred: the view's one writer is the feed, its readers never block it (WAL).
        return transaction(self._db, immediate=False)

    def _apply_or_skip(self, record: FeedRecord) -> None:
        """Apply one record, or undo what it wrote and count it as skipped.

        One statement is atomic by itself; a fact writes several, so it gets a savepoint
        (only there: a savepoint per record would triple the cost of a batch).
        """
        several = record.topic == self.topics.facts
        if several:
            self._db.execute("SAVEPOINT record")
        try:
            self._apply_one(record)
        except _DATABASE_FAULTS:
            raise
        except Exception as fault:  # noqa: BLE001 - whatever a record makes the model raise
            if several:
                self._db.execute("ROLLBACK TO SAVEPOINT record")
            kind = self._unknown_kind(record, fault)
            if kind is not None:
                self._park(record, kind)
            else:
                self._skip(record, fault)
        finally:
            if several:
                self._db.execute("RELEASE SAVEPOINT record")

    # -- records of a kind a newer hub writes ----------------------------------------------

    def _roles(self) -> dict[str, str]:
        """The topics whose records name a kind, by role (the stored name: the topics'
        names are settings)."""
        return {self.topics.status: "status", self.topics.facts: "facts"}

    def _unknown_kind(self, record: FeedRecord, fault: Exception) -> str | None:
        """The kind of a status event or fact whose one fault is that this view does not
        know its kind; None for any other fault (the record is then skipped)."""
        if record.topic not in self._roles() or not isinstance(fault, ValidationError):
            return None
        errors = fault.errors()
        if len(errors) != 1:
            return None  # something else is wrong too: not a record this view may apply
        [error] = errors
        if error["type"] == "enum" and error["loc"] == ("kind",):
            kind = error["input"]  # a status event's kind: every other field is right
        elif error["type"] == "union_tag_invalid" and isinstance(error["input"], dict):
            kind = error["input"].get("kind")  # a fact's kind: the rest is its kind's own
        else:
            return None
        return kind if isinstance(kind, str) and _NEWER_KIND.fullmatch(kind) else None

    def _park(self, record: FeedRecord, kind: str) -> None:
        """Keep a record of a kind this view does not know, for a view that does."""
        role = self._roles()[record.topic]
        at_ms = record.timestamp_ms
        self._db.execute(
            "INSERT OR IGNORE INTO parked VALUES (?, ?, ?, ?, ?, ?)",
            (
                role,
                record.partition,
                record.offset,
                kind,
                at_ms / 1000 if at_ms in DATABLE_TIMESTAMPS_MS else time.time(),
                record.value,
            ),
        )
        self.parked += 1
        metrics.VIEW_RECORDS_PARKED.labels(topic=role).inc()
        if not self._first_said(record.topic, kind):
            return
        log.warning(
            "operations view: the record at %s/%d/%d is of a kind this view does not know "
            "(%s: a newer hub's?); kept, applied by a view that knows it when it starts "
            "(upgrade the view); further records of this kind are counted, not logged",
            record.topic,
            record.partition,
            record.offset,
            kind,
        )

    def _apply_parked(self) -> None:
        """Apply the records kept for their kind that this view now knows (it was
        upgraded), in the order they were read; those it still does not know stay."""
        by_role = {role: topic for topic, role in self._roles().items()}
        applied = kept = 0
        with self._transaction():
            rows = self._db.execute(
                "SELECT rowid, topic, partition, offset, at, value FROM parked ORDER BY rowid"
            ).fetchall()
            for rowid, role, partition, offset, at, value in rows:
                topic = by_role.get(role)
                if topic is None:
                    continue  # no such role in this release: kept for one that has it
                record = FeedRecord(topic, partition, offset, int(at * 1000), bytes(value))
                self._db.execute("SAVEPOINT record")
                try:
                    self._apply_one(record)
                except _DATABASE_FAULTS:
                    raise
                except Exception as fault:  # noqa: BLE001 - as in _apply_or_skip
                    self._db.execute("ROLLBACK TO SAVEPOINT record")
                    if self._unknown_kind(record, fault) is not None:
                        kept += 1
                        self._db.execute("RELEASE SAVEPOINT record")
                        continue
                    self._skip(record, fault)
                else:
                    applied += 1
                self._db.execute("DELETE FROM parked WHERE rowid = ?", (rowid,))
                self._db.execute("RELEASE SAVEPOINT record")
        if applied or kept:
            log.info(
                "operations view: %d record(s) kept for their kind applied; %d of kinds "
                "this view does not know still kept (%s)",
                applied,
                kept,
                self.parked_records(),
            )

    def _first_said(self, topic: str, kind: str) -> bool:
        """Whether ``kind`` (a fault, or a record kind this view does not know) on
        ``topic`` is to be logged now: the first time only, and never once
        :data:`_LOGGED_AT_MOST` are remembered (said once). A record's kind is whatever
        its writer chose: each new one added to this set for the process's life (review
        of stop 55), and a line to the log."""
        if (topic, kind) in self._logged:
            return False
        if len(self._logged) >= _LOGGED_AT_MOST:
            if not self._logged_enough:
                self._logged_enough = True
                log.warning(
                    "operations view: %d kinds of records skipped or kept unread already "
                    "logged; further ones are counted, not logged (gun_hub_view_records_*)",
                    _LOGGED_AT_MOST,
                )
            return False
        self._logged.add((topic, kind))
        return True

    def _skip(self, record: FeedRecord, fault: Exception) -> None:
        self.skipped += 1
        self.skipped_by_topic[record.topic] += 1
        kind = type(fault).__name__
        if not self._first_said(record.topic, kind):
            return
        log.warning(
            "operations view: skipped the record at %s/%d/%d (%s: %s); further records of "
            "this topic skipped for the same fault are counted, not logged",
            record.topic,
            record.partition,
            record.offset,
            kind,
            str(fault)[:200],
        )

    def _apply_one(self, record: FeedRecord) -> None:
        topics = self.topics
        if record.topic == topics.status:
            self._status(StatusEvent.model_validate_json(_sized(record, _MAX_EVENT_BYTES)))
        elif record.topic == topics.facts:
            fact = FACT.validate_json(_sized(record, _MAX_FACT_BYTES))
            if isinstance(fact, ReceivedFact):
                self._received(fact)
            elif isinstance(fact, DecisionFact):
                self._decision(fact)
            elif isinstance(fact, WriteOffFact):
                self._write_off(fact)
            else:
                self._given_back(fact)
        elif record.topic == topics.dlq:
            self._dead_letter(record)
        elif record.topic == topics.health:
            health = PartnerHealth.model_validate_json(_sized(record, _MAX_EVENT_BYTES))
            if not _AUTHORITY.fullmatch(health.authority):
                raise Unusable("a heartbeat names no authority id")
            self._db.execute(
                "INSERT OR REPLACE INTO partners (authority, replica, health) VALUES (?, ?, ?)",
                (health.authority, health.replica, health.model_dump_json()),
            )
            self._keep_replicas_of(health.authority)

    def _status(self, event: StatusEvent) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO events "
            "(reference, version, kind, at, detail, authority, outcome, lodging) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.reference,
                event.version,
                event.kind.value,
                event.at.isoformat(),
                event.detail,
                event.authority or "",
                event.outcome or "",
                event.lodging or "",
            ),
        )
        if event.lodging and event.kind != StatusKind.IGNORED_STALE_VERSION:
            # A receipt kept before its version was (_version_the_receipts); not from a
            # copy's event, which names the case's receipt, maybe a later version's.
            self._db.execute(
                "UPDATE lodgings SET version = ? WHERE lodging = ? AND version IS NULL",
                (event.version, event.lodging),
            )
        # The intake's IGNORED_STALE_VERSION of a copy of a version (a file lodged again)
        # says otherwise: that version's decision may well have been published.
        other_declarant = event.kind == StatusKind.NOT_PUBLISHED_OTHER_DECLARANT
        if other_declarant or (
            event.kind == StatusKind.IGNORED_STALE_VERSION
            and event.detail.startswith(NOT_PUBLISHED)
        ):
            self._not_published(event, other_declarant=other_declarant)
        elif event.kind == StatusKind.NOT_PUBLISHED_DECIDED_ELSEWHERE:
            # Stored above (``events``): ``_settle`` reads the outcomes it names there.
            # A savepoint of its own: a status record is applied without one, and the
            # decision kept is taken out of the counts before the one set aside is put in.
            self._db.execute("SAVEPOINT settle")
            try:
                self._settle(event.reference, event.version)
            except BaseException:
                self._db.execute("ROLLBACK TO SAVEPOINT settle")
                raise
            finally:
                self._db.execute("RELEASE SAVEPOINT settle")

    def _not_published(self, event: StatusEvent, *, other_declarant: bool) -> None:
        """The publisher withheld the decision of this version (runtime/publisher.py): it
        is taken out of all the view counted, if its fact was read, and remembered so that
        one read later is not counted (``_decision``). Withheld for being another
        declarant's, the version's receipt names nobody either (``_received``): the
        reference stays the declarant's whose decisions were published, and the version
        shows in no trader's history (``history_of_declarant``).

        No write here fails for the record (its values were stored in ``events`` just
        before): status events are applied without a savepoint. The view keeps one
        decision per (reference, version): two declarants' decisions of one version, one
        of them withheld, leave that version counted by neither, unless the status names
        the withheld receipt (``_withhold_receipt``)."""
        if other_declarant and event.lodging:
            self._withhold_receipt(event, event.lodging)
            return
        key = (event.reference, event.version)
        self._db.execute(
            "INSERT INTO unpublished VALUES (?, ?, ?, ?) ON CONFLICT (reference, version) "
            "DO UPDATE SET other_declarant = MAX(other_declarant, excluded.other_declarant)",
            (*key, int(other_declarant), event.at.isoformat()),
        )
        self._count_decision(*key, -1)  # what its fact added, if it was read
        for table in (*_DECISION_ROWS, "decisions_aside"):
            self._db.execute(f"DELETE FROM {table} WHERE reference = ? AND version = ?", key)
        if other_declarant:
            self._db.execute("DELETE FROM declarants WHERE reference = ? AND version = ?", key)

    def _withhold_receipt(self, event: StatusEvent, lodging: str) -> None:
        """The publisher withheld the decision of the receipt ``lodging`` for being
        another declarant's: that receipt's events are nobody's and its declarant does not
        name the version (``history_of_declarant``, ``declarant_of``), while the version's
        other receipt, whose decision was published, stays its declarant's (review of stop
        54: the whole version was withheld, and the published declarant read a 404).

        The view keeps one decision per (reference, version): the one kept is taken out of
        the counts when it is the withheld receipt's declarant's, or when that receipt's
        declarant is not known (its fact unread, or named by two declarants); the
        published one's, when read first, stays counted. When the withheld one's fact was
        read first, the published one's was ignored then, and the version is counted by
        neither (as before)."""
        key = (event.reference, event.version)
        self._db.execute(
            "INSERT OR IGNORE INTO withheld_lodgings VALUES (?, ?, ?, ?)",
            (lodging, *key, event.at.isoformat()),
        )
        row = self._db.execute(
            "SELECT declarant FROM lodgings WHERE lodging = ? AND declarant != ''", (lodging,)
        ).fetchone()
        withheld_declarant = str(row[0]) if row is not None else None
        decided = self._db.execute(
            "SELECT declarant FROM decisions WHERE reference = ? AND version = ?", key
        ).fetchone()
        if decided is not None and withheld_declarant in (None, decided[0]):
            self._count_decision(*key, -1)
            for table in ("decision_documents", "overrides", "rollout_uses", "decisions"):
                self._db.execute(f"DELETE FROM {table} WHERE reference = ? AND version = ?", key)
        if withheld_declarant is not None:
            self._db.execute(
                "DELETE FROM declarants WHERE reference = ? AND version = ? AND declarant = ?",
                (*key, withheld_declarant),
            )

    def _received(self, fact: ReceivedFact) -> None:
        """Who lodged a version; nobody, for a version whose decision the publisher
        withheld for being another declarant's (``_not_published``), and for a receipt
        another declarant named before (an empty declarant)."""
        key = (fact.reference, fact.version)
        if fact.lodging:  # whose the receipt's events are, withheld or not
            # A receipt two declarants name (a declarations topic whose offsets started
            # again: the id is of the record's position) is no proof of either: nobody's
            # for good, its events shown to neither (review of stop 54).
            self._db.execute(
                "INSERT INTO lodgings "
                "(lodging, reference, declarant, received_at, version) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (lodging) DO UPDATE SET declarant = CASE "
                "WHEN declarant = excluded.declarant THEN declarant ELSE '' END, "
                "received_at = MAX(received_at, excluded.received_at), "
                "version = COALESCE(version, excluded.version)",
                (
                    fact.lodging,
                    fact.reference,
                    fact.declarant_eori,
                    fact.received_at.timestamp(),
                    fact.version,
                ),
            )
        self._db.execute(
            "INSERT OR REPLACE INTO declarants (reference, version, declarant, received_at) "
            "SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM unpublished "
            "WHERE reference = ? AND version = ? AND other_declarant) AND NOT EXISTS "
            "(SELECT 1 FROM withheld_lodgings WHERE lodging = ?)",
            (*key, fact.declarant_eori, fact.received_at.timestamp(), *key, fact.lodging),
        )

    def _decision(self, fact: DecisionFact) -> None:
        """Keep and count the first decision of a (reference, version); a later one is
        not counted, but set aside when its outcome differs, until the publisher's
        status says which of them it published.

        A version is decided again when its worker died after the broker took the
        decision and before it took the case (review stop 37-s, F4): the repeat has its
        own time and may have another outcome. The publisher publishes the first outbox
        record of a (reference, version) and skips the repeat (runtime/publisher.py), and
        the first fact precedes the repeat's on its partition (one key, written by one
        worker after the other), so the first fact is the published decision. The same
        fact announced again (``announce_again_if_lost``) changes nothing either way. A
        version the publisher withheld is not counted at all (``_not_published``).

        A version read on two partitions is decided by each partition's case, whose facts
        are on their own partitions, read in any order: the first read may be the one the
        publisher dropped as a duplicate. Its NOT_PUBLISHED_DECIDED_ELSEWHERE names the
        outcome not published (``_settle``); a later fact of another outcome is kept in
        ``decisions_aside`` until then (a repeat of the same outcome counts the same)."""
        key = (fact.reference, fact.version)
        if self._db.execute(
            "SELECT 1 FROM decisions_left WHERE reference = ? AND version = ? UNION ALL "
            "SELECT 1 FROM unpublished WHERE reference = ? AND version = ? UNION ALL "
            # A receipt withheld: its declarant's decision, or anybody's while its
            # declarant is not known (``_withhold_receipt``).
            "SELECT 1 FROM withheld_lodgings w LEFT JOIN lodgings l USING (lodging) "
            "WHERE w.reference = ? AND w.version = ? "
            "AND (l.declarant IS NULL OR l.declarant IN ('', ?))",
            (*key * 3, fact.declarant_eori),
        ).fetchone():
            return  # counted when first read (and left by its time), or never
        kept = self._db.execute(
            "SELECT outcome FROM decisions WHERE reference = ? AND version = ?", key
        ).fetchone()
        if kept is None:
            self._keep_decision(fact)
            # The lane's status may have been read first, naming this outcome: kept all
            # the same, as the other case may have decided the same (then nothing tells
            # the two apart, and one of them is counted); one of another outcome read
            # later takes its place.
            return
        if kept[0] != fact.outcome:
            self._db.execute(
                "INSERT OR IGNORE INTO decisions_aside VALUES (?, ?, ?, ?, ?)",
                (*key, fact.outcome, fact.decided_at.timestamp(), fact.model_dump_json()),
            )
            self._settle(*key)

    def _settle(self, reference: str, version: int) -> None:
        """Count the decision the publisher published of a version two partitions' cases
        decided: the one kept, unless a NOT_PUBLISHED_DECIDED_ELSEWHERE of the version
        names its outcome and a decision set aside has one it does not name, which then
        takes its place (its documents, override and rollout uses, counted instead). The
        decisions the status names are not kept aside any longer.

        By outcome alone: a decision fact names no receipt. When both cases decided the
        same outcome nothing is set aside and the one kept stands (either says the same).
        A decision kept that left by its time stays counted in its day (``decisions_left``):
        the status read that late (a retention shorter than the lag between the topics)
        puts nothing in its place."""
        key = (reference, version)
        named = [
            str(outcome)
            for (outcome,) in self._db.execute(
                "SELECT DISTINCT outcome FROM events WHERE reference = ? AND version = ? "
                "AND kind = ? AND outcome != ''",
                (*key, StatusKind.NOT_PUBLISHED_DECIDED_ELSEWHERE.value),
            )
        ]
        if not named:
            return
        among = f"({', '.join('?' * len(named))})"
        kept = self._db.execute(
            "SELECT outcome FROM decisions WHERE reference = ? AND version = ?", key
        ).fetchone()
        if kept is not None and kept[0] in named:
            published = self._db.execute(
                "SELECT rowid, fact FROM decisions_aside WHERE reference = ? AND version = ? "
                f"AND outcome NOT IN {among} ORDER BY rowid LIMIT 1",
                (*key, *named),
            ).fetchone()
            if published is not None:
                self._count_decision(*key, -1)
                for table in _DECISION_ROWS:
                    self._db.execute(
                        f"DELETE FROM {table} WHERE reference = ? AND version = ?", key
                    )
                self._db.execute("DELETE FROM decisions_aside WHERE rowid = ?", (published[0],))
                self._keep_decision(DecisionFact.model_validate_json(published[1]))
        self._db.execute(
            "DELETE FROM decisions_aside WHERE reference = ? AND version = ? "
            f"AND outcome IN {among}",
            (*key, *named),
        )

    def _keep_decision(self, fact: DecisionFact) -> None:
        """Store a decision, its documents, rollout uses and override, and count them."""
        self._db.execute(
            "INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                fact.reference,
                fact.version,
                fact.declarant_eori,
                fact.stage,
                fact.outcome,
                _utc_day(fact.decided_at),
                fact.decided_at.timestamp(),
            ),
        )
        self._db.executemany(
            "INSERT OR REPLACE INTO decision_documents "
            "(reference, version, goods_item, code, document, authority, verdict, position) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    fact.reference,
                    fact.version,
                    d.goods_item,
                    d.code,
                    d.reference if d.reference is not None else CONFIDENTIAL,
                    d.authority or "",
                    d.verdict,
                    position,
                )
                for position, d in enumerate(fact.documents)
            ],
        )
        self._db.executemany(
            "INSERT OR REPLACE INTO rollout_uses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    fact.reference,
                    fact.version,
                    use.authority,
                    fact.office,
                    use.mode,
                    fact.outcome,
                    _utc_day(fact.decided_at),
                    use.would_decide or "",
                    None if use.agrees is None else int(use.agrees),
                    ",".join(use.reasons),
                )
                for use in fact.rollout
            ],
        )
        if fact.override is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO overrides VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    fact.reference,
                    fact.version,
                    fact.declarant_eori,
                    fact.outcome,
                    _utc_day(fact.decided_at),
                    fact.override.goods_items,
                    fact.override.covered,
                    fact.override.declined,
                ),
            )
        self._count_decision(fact.reference, fact.version)

    def _write_off(self, fact: WriteOffFact) -> None:
        self._keep_lines("write_offs", fact)

    def _given_back(self, fact: GivenBackFact) -> None:
        """What an invalidation gave back: netted from the declaration's write-offs when
        asked (``written_off``), whichever of the two is read first."""
        self._keep_lines("give_backs", fact)

    def _keep_lines(self, table: str, fact: WriteOffFact | GivenBackFact) -> None:
        """One row per goods item and document line of ``fact``.

        A fact of a hub that did not name goods items (before stop 37-s) keys its
        documents by their place in it (-1, -2...: never a goods item); a row whose goods
        item is not known (that, or 0: kept by a view from then) is replaced by any fact
        stating the same line of the same write-off again, so an upgrade counts it once.
        """
        for document in fact.documents:
            quantity = document.quantity
            if quantity is not None and (
                not quantity.is_finite() or quantity.adjusted() >= _MAX_QUANTITY_DIGITS
            ):
                raise Unusable(f"quantity {quantity} cannot be summed exactly")
        lines = [(d, _line_of(d)) for d in fact.documents]
        self._db.executemany(
            f"DELETE FROM {table} WHERE reference = ? AND version = ? AND authority = ? "
            "AND code = ? AND document = ? AND line = ? AND goods_item <= 0",
            {
                (fact.reference, fact.version, fact.authority, d.code, d.reference, line)
                for d, line in lines
            },
        )
        # One row per goods item, document and line: a line quoted twice on one goods
        # item is drawn on twice by the partner (it sums a declaration's claims per line),
        # so its quantities are summed here (one row replaced the other: counted once;
        # review of stop 56). One whose quantity is not known leaves the row's unknown.
        rows: dict[tuple[int, str, str, int], tuple[Decimal | None, str]] = {}
        for position, (d, line) in enumerate(lines):
            item = d.goods_item if d.goods_item is not None else -1 - position
            key = (item, d.code, d.reference, line)
            if key in rows:
                before, unit = rows[key]
                both = None if before is None or d.quantity is None else before + d.quantity
                rows[key] = (both, unit)
            else:
                rows[key] = (d.quantity, d.unit or "")
        self._db.executemany(
            f"INSERT OR REPLACE INTO {table} (reference, version, authority, code, document, "
            "line, quantity, unit, at, goods_item) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    fact.reference,
                    fact.version,
                    fact.authority,
                    code,
                    document,
                    line,
                    str(quantity) if quantity is not None else "",
                    unit,
                    fact.at.isoformat(),
                    item,
                )
                for (item, code, document, line), (quantity, unit) in rows.items()
            ],
        )

    def _dead_letter(self, record: FeedRecord) -> None:
        """Keep a dead letter by its id, from its headers; whatever they hold, it is kept
        (and counted)."""
        at_ms = record.timestamp_ms
        row = dead_letters.row_of(
            record.partition,
            record.offset,
            at_ms / 1000 if at_ms in DATABLE_TIMESTAMPS_MS else time.time(),
            record.headers,
            record.key,
        )
        if dead_letters.store_row(self._db, row):
            self._add("dead_letter_counts", (row.kind,), 1)


_SAME_DECISION = "ON dd.reference = d.reference AND dd.version = d.version"
# The rows of one decision kept (``_count_decision`` counts them), by (reference, version).
_DECISION_ROWS = ("decision_documents", "overrides", "rollout_uses", "decisions")
# The override counts and the rows of ``overrides`` each counts.
_OVERRIDE_MEASURES = {"declared": "1", "applied": "covered > 0", "declined": "declined > 0"}


def _utc_time(seconds: float) -> str:
    """ISO time in UTC of a stored timestamp, as the history's times (the view host's own
    zone is nobody's: review stop 37-s, F7); it never fails a query."""
    try:
        return (_EPOCH + timedelta(seconds=seconds)).isoformat()
    except (OverflowError, ValueError):
        return "unknown"


def _utc_day(moment: datetime) -> str:
    """The UTC day of a time (a time without an offset is the hub's: UTC), which the
    statistics count it on whatever offset it was written with."""
    try:
        return (moment.astimezone(UTC) if moment.tzinfo else moment).date().isoformat()
    except OverflowError:  # within a day of the calendar's ends: its own date
        return moment.date().isoformat()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class _Drawn:
    """One declaration's quantities on one document line, as stored ('': not known)."""

    written: list[str] = field(default_factory=list)
    given: list[str] = field(default_factory=list)


def _line_written_off(
    key: tuple[str, str, str, int, str], by_declaration: dict[str, _Drawn]
) -> dict[str, Any]:
    """What is written off one line: each declaration's write-offs less what was given
    back of them (at most all of them)."""
    authority, code, document, line, unit = key
    net = given_back = Decimal(0)
    for drawn in by_declaration.values():
        written = _known_sum(drawn.written)
        back = min(_known_sum(drawn.given), written)
        net += written - back
        given_back += back
    return {
        "authority": authority,
        "code": code,
        "document": document,
        "line": line if line != _NO_LINE else None,
        "unit": unit or None,
        "quantity": str(net) if unit else None,
        # None: nothing of the line was given back.
        "given_back": (
            str(given_back) if unit and any(d.given for d in by_declaration.values()) else None
        ),
        "declarations": sum(1 for drawn in by_declaration.values() if drawn.written),
        "without_quantity": sum(
            drawn.written.count("") + drawn.given.count("") for drawn in by_declaration.values()
        ),
    }


def _known_sum(quantities: list[str]) -> Decimal:
    return sum((Decimal(q) for q in quantities if q), Decimal(0))


def _line_of(document: WrittenOff) -> int:
    return document.line if document.line is not None else _NO_LINE


def _sized(record: FeedRecord, limit: int) -> bytes:
    if len(record.value) > limit:
        raise Unusable(f"a value of {len(record.value)} bytes (at most {limit})")
    return record.value


def _utc_midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _day_range(
    since: date | None, until: date | None, column: str, *also: str
) -> tuple[str, tuple[str, ...]]:
    """A WHERE clause on a day column (ISO dates compare as text), and its arguments."""
    clauses, args = list(also), []
    if since is not None:
        clauses.append(f"{column} >= ?")
        args.append(since.isoformat())
    if until is not None:
        clauses.append(f"{column} <= ?")
        args.append(until.isoformat())
    return ("WHERE " + " AND ".join(clauses) if clauses else "", tuple(args))


# Where a declaration stands, from the last significant event of its latest version.
_DECIDED = {StatusKind.DECIDED.value}
# Marks a DECIDED event of a version decided before (``ViewQueries.history``).
DECIDED_AGAIN = "decided_again"
# Marks a DECIDED event the publisher did not publish, another partition's case's decision
# of the version being published (``ViewQueries.history``, :func:`_not_published_places`).
NOT_PUBLISHED_HERE = "not_published"
_ELSEWHERE = StatusKind.NOT_PUBLISHED_DECIDED_ELSEWHERE.value
_FINISHED_FOLLOW_UPS = {StatusKind.WRITTEN_OFF.value, StatusKind.RESERVATION_DELETED.value}


def _without_withheld(
    rows: Sequence[tuple[Any, ...]], owners: Mapping[str, str]
) -> list[tuple[Any, ...]]:
    """The event ``rows`` (version, kind, at, detail, authority, outcome, lodging) but
    those of a version whose decision the publisher withheld (NOT_PUBLISHED_OTHER_DECLARANT),
    of that declarant when it names a receipt: the officer reads them in the history, but
    the state is what the clearance system received (review of stop 56: a decision it
    never received was the officer's state)."""
    withheld = {
        (row[0], owners.get(row[6]) or row[6])
        for row in rows
        if row[1] == StatusKind.NOT_PUBLISHED_OTHER_DECLARANT.value
    }
    whole = {version for version, whose in withheld if not whose}
    return [
        row
        for row in rows
        if row[0] not in whole and (row[0], owners.get(row[6]) or row[6]) not in withheld
    ]


def _not_published_places(rows: Sequence[tuple[Any, ...]]) -> set[int]:
    """The places in ``rows`` (version, kind, at, detail, authority, outcome, lodging) of
    the events of a case whose decision the publisher did not publish, as a
    NOT_PUBLISHED_DECIDED_ELSEWHERE of their version says (the lane's, on its own
    partition: read before or after either case's events).

    Named by its receipt (each partition's case has its own receipt of the version: the
    published one's is never the one named): every event of it, its DECIDED and its
    requests, deadline and follow-ups, which read beside the published case's told the
    trader a deadline passed on a version released on its answers (a review of stop 59).
    Where the status or a DECIDED names no receipt, that DECIDED by its outcome, and then
    only when another DECIDED of the version has another outcome: that one is the
    decision published. Two cases that decided the same outcome, told apart by nothing,
    stay two decisions of one outcome (``decided_again`` marks the second), and neither
    is ever left out for the other (a status naming the outcome of both would name the
    published one too)."""
    statuses = [(row[0], row[5], row[6]) for row in rows if row[1] == _ELSEWHERE]
    if not statuses:
        return set()
    receipts = {(version, lodging) for version, _, lodging in statuses if lodging}
    places = {
        place
        for place, row in enumerate(rows)
        if row[1] != _ELSEWHERE and (row[0], row[6]) in receipts
    }
    decided = [(place, row) for place, row in enumerate(rows) if row[1] in _DECIDED]
    for version, outcome, lodging in statuses:
        of_version = [(place, row[5], row[6]) for place, row in decided if row[0] == version]
        for place, decided_outcome, decided_lodging in of_version:
            if lodging and decided_lodging:
                continue  # by its receipt, above
            if (
                outcome
                and decided_outcome == outcome
                and any(other != outcome for _, other, _ in of_version)
            ):
                places.add(place)
    return places


def current_state(history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Summarise a declaration's history for the trader.

    The latest version is the highest one that was not ignored as stale; its state is
    CHECKING until a decision, then DECIDED with the outcome, its reasons (each code with
    what to do, in French and English) and, for a release, whether the quantities are
    written off yet. Post-release alerts are flagged, never detailed. The decision is the
    version's first: a version decided again after a crash was published as first decided
    (``ViewQueries.history``), and the repeat counts for nothing here; nor does a decision
    the publisher did not publish because another partition's case decided the version
    (``not_published``: the clearance system received the other, read before or after it).
    """
    history = [e for e in history if not (e.get(DECIDED_AGAIN) or e.get(NOT_PUBLISHED_HERE))]
    live = [e for e in history if e["kind"] != StatusKind.IGNORED_STALE_VERSION.value]
    version = max(e["version"] for e in (live or history))
    events = [e for e in history if e["version"] == version]
    decided = [e for e in events if e["kind"] in _DECIDED]
    answered = sorted(
        {e["authority"] for e in events if e["kind"] == StatusKind.ANSWER_RECEIVED.value}
    )
    state: dict[str, Any] = {
        "version": version,
        "state": "DECIDED" if decided else "CHECKING" if live else "IGNORED",
        "updated_at": events[-1]["at"],
        "last_event": events[-1]["kind"],
        "answered_by": answered,
    }
    if decided:
        state["outcome"] = decided[0].get("outcome")
        # What each reason means and what to do, in French and English (reasons.py): the
        # decision's codes are in its status event, the texts in the catalogue.
        codes = str(decided[0].get("detail") or "").split(";")
        state["reasons"] = explain_codes(
            (code.strip() for code in codes), decided[0].get("outcome")
        )
        follow_ups = {e["kind"] for e in events} & _FINISHED_FOLLOW_UPS
        if follow_ups:
            state["quantities"] = sorted(follow_ups)
    if any(e["kind"] == StatusKind.POST_RELEASE_ALERT.value for e in events):
        state["post_release_alert"] = True
    return state
