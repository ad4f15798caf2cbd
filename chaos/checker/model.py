"""What the checker is given and what it observes, as plain data (no hub types).

The orchestrator writes :class:`Submission` lines (``manifest.jsonl``) and
:class:`Event` lines (``events.jsonl``); a :class:`~chaos.checker.sources.Source` supplies
the :class:`Observations` (decisions, partner answers, ledgers, audit verdict).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

# Stages and outcomes of the contract (architecture.md sections 3 and 4), spelled here
# again on purpose: the checker shares no code with the hub.
LODGED = "LODGED"
PRELODGED = "PRELODGED"
CANCELLED = "CANCELLED"
RELEASED_AFTER_CONTROL = "RELEASED_AFTER_CONTROL"
INVALIDATED = "INVALIDATED"

RELEASE = "RELEASE"
CONTROL_DOCUMENTARY = "CONTROL_DOCUMENTARY"
CONTROL_PHYSICAL = "CONTROL_PHYSICAL"
REFUSE = "REFUSE"
ADVICE = "ADVICE"
CONTROLS = frozenset({CONTROL_DOCUMENTARY, CONTROL_PHYSICAL})

VALID = "VALID"
EXEMPT = "EXEMPT"
UNAVAILABLE = "UNAVAILABLE"
UNROUTED = "UNROUTED"
REFUSALS = frozenset(
    {"NOT_FOUND", "INVALID_STATUS", "ALREADY_USED", "QUANTITY_INSUFFICIENT", "MISMATCH"}
)
DEGRADED = frozenset({UNAVAILABLE, UNROUTED})
# The reason of the REFUSE a version gets when a higher version replaced it before it was
# decided (the hub's docs/decisions.md, "A version superseded before its decision").
SUPERSEDED = "SUPERSEDED"

# How a quoted document is handled: sent to an authority, a declared exemption (a "Y"
# code), or a code no authority is configured for.
ROUTED = "routed"
EXEMPTION = "exempt"
NO_ROUTE = "unrouted"


@dataclass(frozen=True, slots=True)
class QuotedDocument:
    """One document quoted by one goods item of a submitted declaration version."""

    goods_item: int
    code: str
    reference: str
    kind: str = ROUTED
    authority: str | None = None
    line: int | None = None
    quantity: str | None = None  # decimal string, as in the XML
    unit: str | None = None

    @property
    def key(self) -> tuple[int, str, str]:
        return (self.goods_item, self.code, self.reference)


@dataclass(frozen=True, slots=True)
class Submission:
    """One declaration version as the orchestrator produced it (one manifest line)."""

    seq: int
    reference: str
    version: int
    stage: str
    client: str  # the producing client library: "aiokafka" or "confluent"
    documents: tuple[QuotedDocument, ...] = ()
    unreadable: bool = False  # deliberately malformed (Reference and Version readable)
    oversized: bool = False  # above the intake limit (sent compressed)
    large: bool = False  # >= 100 kB, valid
    size: int = 0
    # Sent right before the next version: the next one may supersede it before it is
    # decided (then its decision is a REFUSE, SUPERSEDED), or overtake it in the log when
    # a send of it failed and was retried (then it is stale and gets none).
    may_be_superseded: bool = False
    story: str = ""
    submitted_at: float = 0.0
    partition: int | None = None  # where the broker put it (from the delivery report)
    offset: int | None = None  # at which offset (from the same report)
    # A send of it was reported failed and it was sent again: the failed one may be in
    # the log too, at an offset nobody reported.
    resent: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> Submission:
        data = json.loads(line)
        data["documents"] = tuple(QuotedDocument(**d) for d in data.get("documents", ()))
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Event:
    """Something the orchestrator did or saw: a fault, a process exit, a reader's result."""

    t: float  # seconds since the run started
    kind: str  # fault | process_exit | process_start | clearance_reader | note
    name: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, line: str) -> Event:
        return cls(**json.loads(line))


@dataclass(frozen=True, slots=True)
class DocumentResultSeen:
    goods_item: int
    code: str
    reference: str
    authority: str | None
    verdict: str
    partner_code: str | None = None

    @property
    def key(self) -> tuple[int, str, str]:
        return (self.goods_item, self.code, self.reference)


@dataclass(frozen=True, slots=True)
class DecisionSeen:
    """One committed record of the decisions topic, opened and parsed by the checker."""

    reference: str
    version: int
    outcome: str
    decided_at: float  # epoch seconds
    reasons: tuple[tuple[str, str], ...] = ()  # (code, text)
    documents: tuple[DocumentResultSeen, ...] = ()
    partition: int = 0
    offset: int = 0

    def reason_codes(self) -> set[str]:
        return {code for code, _ in self.reasons}


@dataclass(frozen=True, slots=True)
class AnswerSeen:
    """One adapter answer read from a responses topic and opened with the hub's key."""

    reference: str
    version: int
    authority: str
    operation: str
    verdicts: tuple[tuple[int, str, str, str], ...]  # (goods_item, code, reference, verdict)
    timestamp: float = 0.0  # record timestamp, epoch seconds
    partition: int = 0
    offset: int = 0

    def verdict_of(self, key: tuple[int, str, str]) -> str | None:
        for goods_item, code, reference, verdict in self.verdicts:
            if (goods_item, code, reference) == key:
                return verdict
        return None


@dataclass(frozen=True, slots=True)
class Holding:
    """What one declaration holds on one line, as the partner's admin API shows it."""

    declaration: str
    reserved: Decimal
    written_off: Decimal


@dataclass(frozen=True, slots=True)
class LedgerLine:
    """One line of one partner document as the partner's admin API shows it; with the
    per-declaration positions when the API gives them (``GET /admin/ledger``)."""

    authority: str
    document: str
    line: int
    authorised: Decimal
    reserved: Decimal
    written_off: Decimal
    positions: tuple[Holding, ...] | None = None


@dataclass(frozen=True, slots=True)
class AuditResult:
    exit_code: int
    output: str
    # (reference, version) of each DECISION entry of the trail, committed records only;
    # None: not read.
    decisions: tuple[tuple[str, int], ...] | None = None


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A record of an envelope topic the checker could not open, and why."""

    topic: str
    partition: int
    offset: int
    reason: str


@dataclass(frozen=True, slots=True)
class IncompleteRead:
    """A partition the checker did not read to its end.

    ``read_to``: the offset the read reached (the next one it would have read);
    ``stable_end``: the partition's last stable offset, as far as ``read_committed`` can
    read; ``high_watermark``: the end of its log. A transaction left open holds the last
    stable offset back, and every record after it (committed or not) stays hidden.
    """

    topic: str
    partition: int
    read_to: int
    stable_end: int
    high_watermark: int

    def describe(self) -> str:
        causes = []
        if self.read_to < self.stable_end:
            causes.append(f"the read stopped before the last stable offset {self.stable_end}")
        if self.stable_end < self.high_watermark:
            causes.append(
                f"last stable offset {self.stable_end}: a transaction left open hides what follows"
            )
        return (
            f"{self.topic} partition {self.partition}: read up to offset {self.read_to} of "
            f"{self.high_watermark} ({'; '.join(causes)})"
        )


@dataclass(slots=True)
class Observations:
    """Everything read from the running (quiet) stack."""

    decisions: list[DecisionSeen] = field(default_factory=list)
    answers: list[AnswerSeen] = field(default_factory=list)
    ledger: list[LedgerLine] = field(default_factory=list)
    # Authority -> the partner documents whose ledger was asked for (the documents loaded
    # into that partner): each must come back, and every line expected on them.
    ledger_documents: dict[str, tuple[str, ...]] = field(default_factory=dict)
    audit: AuditResult | None = None
    unreadable: list[Unreadable] = field(default_factory=list)
    # Partitions of the topics read (decisions, answers, audit) not read to their end.
    incomplete: list[IncompleteRead] = field(default_factory=list)
    # Records on the decisions topic that were not committed (aborted transactions) are
    # invisible to read_committed: counted for information only.
    notes: list[str] = field(default_factory=list)


def read_jsonl(path: Path) -> Iterator[str]:
    with path.open() as handle:
        for line in handle:
            if line.strip():
                yield line


def load_manifest(path: Path) -> list[Submission]:
    return [Submission.from_json(line) for line in read_jsonl(path)]


def load_events(path: Path) -> list[Event]:
    return [Event.from_json(line) for line in read_jsonl(path)] if path.exists() else []


def write_jsonl(path: Path, items: Iterable[Submission | Event]) -> None:
    with path.open("w") as handle:
        for item in items:
            handle.write(item.to_json() + "\n")
