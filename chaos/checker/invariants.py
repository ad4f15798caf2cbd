"""The invariants, as pure functions of what was submitted and what was observed.

Input: the manifest (every declaration version produced, in production order), the
partner documents that were loaded, the orchestrator's events (faults, process exits,
the held-back clearance reader's result) and the :class:`Observations`. Output: one
:class:`Row` per invariant and the run's figures. Nothing here knows the hub's code: the
rules are the contract's (``architecture.md`` section 4).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from chaos.checker.model import (
    ADVICE,
    CANCELLED,
    CONTROL_DOCUMENTARY,
    CONTROLS,
    DEGRADED,
    EXEMPT,
    EXEMPTION,
    INVALIDATED,
    LODGED,
    NO_ROUTE,
    PRELODGED,
    REFUSALS,
    REFUSE,
    RELEASE,
    RELEASED_AFTER_CONTROL,
    ROUTED,
    SUPERSEDED,
    UNAVAILABLE,
    UNROUTED,
    VALID,
    AnswerSeen,
    DecisionSeen,
    Event,
    Observations,
    Submission,
)

Key = tuple[str, int]  # (reference, version)
LineKey = tuple[str, str, int]  # (authority, document, line)
_ZERO = Decimal(0)
_DEADLINE_AUTHORITIES = re.compile(r"no answer from (.+?) within")
_SUPERSEDED_BY = re.compile(r"superseded by version (\d+) before it was decided")
RISK_PREFIXES = ("RISK.", "SAMPLING.")
# How far before a deadline decision an answer must have been in the log to count as
# "beaten by the deadline" (clock resolution of the two timestamps).
DEADLINE_MARGIN_S = 1.0
MAX_DETAIL = 12
# A kill's process exit code when SIGKILL ended it (Popen: minus the signal number).
SIGKILLED = -9
PARTNER_FAULTS = (
    "partner_outage",
    "partner_timeouts",
    "partner_garbage",
    "partner_in_progress",
)
# After a partner outage ends, how long its effect may still show: an adapter's answer to
# a call made during it, a deadline the hub reached because of it (at most the request
# deadline, 15 s in the full profile, plus a restart's delay).
FELT_AFTER_S = 30.0


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: an invariant (``ok`` True/False) or a figure (None)."""

    name: str
    ok: bool | None
    measured: str
    detail: tuple[str, ...] = ()


@dataclass
class CheckReport:
    rows: list[Row] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(row.ok is not False for row in self.rows)

    @property
    def failed(self) -> list[Row]:
        return [row for row in self.rows if row.ok is False]


def _sample(items: Iterable[str], limit: int = MAX_DETAIL) -> tuple[str, ...]:
    listed = list(items)
    if len(listed) > limit:
        return (*listed[:limit], f"... and {len(listed) - limit} more")
    return tuple(listed)


# -- what was submitted ---------------------------------------------------------------


@dataclass
class Plan:
    """The manifest, classified: which versions count, which are stale."""

    submissions: list[Submission]
    live: dict[Key, Submission] = field(default_factory=dict)  # non-stale, first sending
    stale: dict[Key, Submission] = field(default_factory=dict)  # only ever sent stale
    by_reference: dict[str, list[Submission]] = field(default_factory=dict)

    @classmethod
    def of(cls, submissions: Sequence[Submission]) -> Plan:
        plan = cls(sorted(submissions, key=lambda s: s.seq))
        highest: dict[str, int] = {}
        stale_keys: dict[Key, Submission] = {}
        for sub in plan.submissions:
            key = (sub.reference, sub.version)
            if sub.version <= highest.get(sub.reference, -1):
                stale_keys.setdefault(key, sub)
            else:
                plan.live[key] = sub
                plan.by_reference.setdefault(sub.reference, []).append(sub)
            highest[sub.reference] = max(highest.get(sub.reference, -1), sub.version)
        plan.stale = {k: s for k, s in stale_keys.items() if k not in plan.live}
        return plan

    def later_versions(self, sub: Submission) -> list[Submission]:
        """The versions of ``sub``'s reference submitted after it (not stale)."""
        return [s for s in self.by_reference.get(sub.reference, []) if s.seq > sub.seq]

    def owed_a_decision(self, sub: Submission) -> bool:
        """Whether ``sub`` must have a decision (architecture.md section 4: exactly one per
        version; only a version arriving after a higher one gets none).

        A version sent on its own (the next one waits for its decision) arrived in order.
        One sent right before the next (``may_be_superseded``) is owed one when the log
        shows it first: both delivered at known offsets of one partition, neither resent
        (a send reported failed may be in the log anyway, anywhere). Otherwise the next
        may have overtaken it (a retry), and it may rightly have none."""
        if not sub.may_be_superseded:
            return True
        later = self.later_versions(sub)
        if not later:
            return True
        following = later[0]
        return (
            not sub.resent
            and not following.resent
            and sub.offset is not None
            and following.offset is not None
            and sub.partition is not None
            and sub.partition == following.partition
            and sub.offset < following.offset
        )


def quantities(sub: Submission) -> dict[LineKey, Decimal]:
    """What ``sub`` claims per partner document line (goods items summed)."""
    claimed: dict[LineKey, Decimal] = defaultdict(Decimal)
    if sub.unreadable or sub.oversized:
        return {}
    for doc in sub.documents:
        if doc.kind == ROUTED and doc.authority and doc.line is not None and doc.quantity:
            claimed[(doc.authority, doc.reference, doc.line)] += Decimal(doc.quantity)
    return dict(claimed)


# -- decisions against the rules ----------------------------------------------------------


def deadline_authorities(decision: DecisionSeen) -> set[str]:
    named: set[str] = set()
    for code, text in decision.reasons:
        if code == "DEADLINE":
            match = _DEADLINE_AUTHORITIES.search(text)
            if match:
                named |= {a.strip() for a in match.group(1).split(",")}
    return named


def has_risk_reason(decision: DecisionSeen) -> bool:
    return any(code.startswith(RISK_PREFIXES) for code in decision.reason_codes())


def rule_outcome(stage: str, verdicts: Iterable[str]) -> str:
    """Contract section 4, before risk targeting."""
    if stage == PRELODGED:
        return ADVICE
    if stage in (CANCELLED, INVALIDATED):
        return CANCELLED
    if stage == RELEASED_AFTER_CONTROL:
        return RELEASE
    listed = list(verdicts)
    if any(v in REFUSALS for v in listed):
        return REFUSE
    if any(v in DEGRADED for v in listed):
        return CONTROL_DOCUMENTARY
    return RELEASE


@dataclass
class Judgement:
    problems: list[str] = field(default_factory=list)
    beaten_by_deadline: list[str] = field(default_factory=list)


class AnswerIndex:
    def __init__(self, answers: Iterable[AnswerSeen]) -> None:
        self._by: dict[tuple[str, int, str], list[AnswerSeen]] = defaultdict(list)
        for answer in answers:
            self._by[(answer.reference, answer.version, answer.authority)].append(answer)

    def of(
        self, reference: str, version: int, authority: str, operations: set[str]
    ) -> list[AnswerSeen]:
        found = self._by.get((reference, version, authority), [])
        return [a for a in found if a.operation in operations]


def is_superseded(decision: DecisionSeen) -> bool:
    """The decision of a version a higher one replaced before it was decided."""
    return SUPERSEDED in decision.reason_codes()


def judge_superseded(
    sub: Submission, decision: DecisionSeen, later: Sequence[Submission]
) -> list[str]:
    """A SUPERSEDED decision is a REFUSE with that one reason, naming a higher version of
    the reference that was submitted after this one, and no document result (it was not
    decided on its documents)."""
    where = f"{sub.reference} v{sub.version}"
    problems = []
    if decision.outcome != REFUSE:
        problems.append(f"{where}: superseded, decided {decision.outcome}, expected {REFUSE}")
    if decision.reason_codes() != {SUPERSEDED}:
        problems.append(f"{where}: superseded, yet reasons {sorted(decision.reason_codes())}")
    if decision.documents:
        problems.append(f"{where}: superseded, yet {len(decision.documents)} document results")
    named = {
        int(match.group(1))
        for code, text in decision.reasons
        if code == SUPERSEDED and (match := _SUPERSEDED_BY.search(text))
    }
    submitted = {s.version for s in later if s.version > sub.version}
    if not named or not named <= submitted:
        problems.append(
            f"{where}: superseded by version {sorted(named) or '?'}, versions submitted after "
            f"it: {sorted(submitted) or 'none'}"
        )
    return problems


def judge(
    sub: Submission,
    decision: DecisionSeen,
    answers: AnswerIndex,
    later: Sequence[Submission] = (),
) -> Judgement:
    """Does ``decision`` follow from the partner answers and the rules? ``later``: the
    versions of the reference submitted after ``sub`` (what may have superseded it)."""
    judgement = Judgement()
    where = f"{sub.reference} v{sub.version}"
    if is_superseded(decision):
        judgement.problems += judge_superseded(sub, decision, later)
        return judgement
    if sub.unreadable or sub.oversized:
        if decision.outcome != REFUSE:
            what = "unreadable" if sub.unreadable else "oversized"
            judgement.problems.append(f"{where}: {what} version decided {decision.outcome}")
        return judgement
    if sub.stage not in (LODGED, PRELODGED):
        expected = rule_outcome(sub.stage, ())
        if decision.outcome != expected:
            judgement.problems.append(
                f"{where}: stage {sub.stage} decided {decision.outcome}, expected {expected}"
                + _reason_hint(decision)
            )
        return judgement
    quoted = {d.key: d for d in sub.documents}
    results = {r.key: r for r in decision.documents}
    if set(quoted) != set(results):
        missing = len(set(quoted) - set(results))
        extra = len(set(results) - set(quoted))
        judgement.problems.append(
            f"{where}: decision lists {len(results)} document results, {len(quoted)} quoted "
            f"({missing} missing, {extra} unknown)"
        )
    silent = deadline_authorities(decision)
    operations = {"RESERVE"} if sub.stage == LODGED else {"CHECK"}
    for key, doc in quoted.items():
        result = results.get(key)
        if result is None:
            continue
        label = f"{where} item {key[0]} {key[1]} {key[2]}"
        if doc.kind == EXEMPTION:
            if result.verdict != EXEMPT:
                judgement.problems.append(f"{label}: {result.verdict}, a Y code is EXEMPT")
            continue
        if doc.kind == NO_ROUTE:
            if result.verdict != UNROUTED:
                judgement.problems.append(f"{label}: {result.verdict}, unrouted code")
            continue
        said = answers.of(sub.reference, sub.version, doc.authority or "", operations)
        verdicts = {v for a in said if (v := a.verdict_of(key)) is not None}
        if result.verdict == UNAVAILABLE:
            by_deadline = doc.authority in silent
            if UNAVAILABLE not in verdicts and not by_deadline:
                judgement.problems.append(
                    f"{label}: UNAVAILABLE without a deadline reason or such an answer "
                    f"(partner said {sorted(verdicts) or 'nothing'})"
                )
            if by_deadline:
                early = [
                    a
                    for a in said
                    if (v := a.verdict_of(key)) is not None
                    and v != UNAVAILABLE
                    and 0 < a.timestamp < decision.decided_at - DEADLINE_MARGIN_S
                ]
                if early:
                    ahead = decision.decided_at - min(a.timestamp for a in early)
                    judgement.beaten_by_deadline.append(
                        f"{where} {doc.authority}: {early[0].verdict_of(key)} answer was in "
                        f"the log {ahead:.1f}s before the deadline decision"
                    )
        elif result.verdict not in verdicts:
            judgement.problems.append(
                f"{label}: {result.verdict}, partner said {sorted(verdicts) or 'nothing'}"
            )
    expected = rule_outcome(sub.stage, (r.verdict for r in decision.documents))
    # A risk rule raises a release, or a documentary control (degraded mode), to the
    # control it asks for, and is named; it never touches a refusal.
    raised = (
        expected in (RELEASE, CONTROL_DOCUMENTARY)
        and decision.outcome in CONTROLS
        and has_risk_reason(decision)
    )
    if decision.outcome != expected and not raised:
        judgement.problems.append(
            f"{where}: outcome {decision.outcome}, the verdicts call for {expected}"
            + _reason_hint(decision)
        )
    return judgement


def _reason_hint(decision: DecisionSeen) -> str:
    codes = sorted(decision.reason_codes())
    return f" (reasons: {', '.join(codes)})" if codes else ""


# -- the partner ledgers ----------------------------------------------------------------


@dataclass
class Position:
    """What one declaration should hold on one line: intervals [lo, hi]."""

    reserved_lo: Decimal = _ZERO
    reserved_hi: Decimal = _ZERO
    written_lo: Decimal = _ZERO
    written_hi: Decimal = _ZERO

    def clear_reservation(self) -> None:
        self.reserved_lo = self.reserved_hi = _ZERO


class Lifecycle:
    """Replays one declaration's versions to what its positions must be once quiet."""

    def __init__(self) -> None:
        self.positions: dict[LineKey, Position] = defaultdict(Position)
        self.determined = True

    def _clear_all_reservations(self) -> None:
        for position in self.positions.values():
            position.clear_reservation()

    def apply(self, sub: Submission, decision: DecisionSeen | None) -> None:
        claimed = quantities(sub)
        if (decision is None and sub.may_be_superseded) or (
            decision is not None and is_superseded(decision)
        ):
            # Superseded (refused as such, or overtaken): nothing is deleted for it, the
            # next version restates these lines (its reservation may have landed or not).
            for key, q in claimed.items():
                p = self.positions[key]
                p.reserved_lo, p.reserved_hi = _ZERO, max(p.reserved_hi, q)
            return
        if decision is None:
            self.determined = False  # a lost decision: anything between nothing and all
            for key, q in claimed.items():
                p = self.positions[key]
                p.reserved_lo, p.reserved_hi = _ZERO, max(p.reserved_hi, q)
                p.written_hi += q
            return
        if sub.unreadable or sub.oversized:
            self._clear_all_reservations()  # refused: what earlier versions held is deleted
            return
        if sub.stage == PRELODGED:
            return  # checks only, nothing reserved
        if sub.stage == CANCELLED:
            self._clear_all_reservations()
            return
        if sub.stage == INVALIDATED:
            for position in self.positions.values():
                position.clear_reservation()
                position.written_lo = position.written_hi = _ZERO  # given back
            return
        if sub.stage == RELEASED_AFTER_CONTROL:
            for position in self.positions.values():  # what the control kept is written off
                position.written_lo += position.reserved_lo
                position.written_hi += position.reserved_hi
                position.clear_reservation()
            return
        # LODGED: what the partners answered decides.
        for key, position in self.positions.items():
            if key not in claimed:
                position.clear_reservation()  # a document no longer quoted is deleted
        if decision.outcome == RELEASE:
            for key, q in claimed.items():
                p = self.positions[key]
                p.clear_reservation()
                p.written_lo += q
                p.written_hi += q
        elif decision.outcome in CONTROLS:
            verdict_of = {
                (r.goods_item, r.code, r.reference): r.verdict for r in decision.documents
            }
            for doc in sub.documents:
                if doc.kind != ROUTED or not doc.authority or doc.line is None:
                    continue
                key = (doc.authority, doc.reference, doc.line)
                if key not in claimed:
                    continue
                p = self.positions[key]
                if verdict_of.get(doc.key) == VALID:
                    p.reserved_lo = p.reserved_hi = claimed[key]
                else:  # not vouched for: a partner may or may not have taken it
                    p.reserved_lo, p.reserved_hi = _ZERO, max(p.reserved_hi, claimed[key])
        else:  # REFUSE (or anything else): every reservation is deleted
            self._clear_all_reservations()


@dataclass
class LineCheck:
    """A document line (all declarations) or one declaration's position on it."""

    key: LineKey
    authorised: Decimal
    reserved: Decimal
    written_off: Decimal
    expected: Position
    declaration: str = ""
    history: str = ""

    @property
    def reserved_deviation(self) -> Decimal:
        return _outside(self.reserved, self.expected.reserved_lo, self.expected.reserved_hi)

    @property
    def written_deviation(self) -> Decimal:
        return _outside(self.written_off, self.expected.written_lo, self.expected.written_hi)

    def describe(self) -> str:
        e = self.expected
        who = f"{self.declaration} on " if self.declaration else ""
        history = f" [{self.history}]" if self.history else ""
        return (
            f"{who}{self.key[0]} {self.key[1]} line {self.key[2]}: reserved {self.reserved} "
            f"(expected {_interval(e.reserved_lo, e.reserved_hi)}), written off "
            f"{self.written_off} (expected {_interval(e.written_lo, e.written_hi)}){history}"
        )


def _outside(actual: Decimal, lo: Decimal, hi: Decimal) -> Decimal:
    if actual < lo:
        return actual - lo
    if actual > hi:
        return actual - hi
    return _ZERO


def _interval(lo: Decimal, hi: Decimal) -> str:
    return str(lo) if lo == hi else f"{lo}..{hi}"


def history(plan: Plan, decisions: Mapping[Key, list[DecisionSeen]], reference: str) -> str:
    """``v1 LODGED>CONTROL_DOCUMENTARY, v2 RELEASED_AFTER_CONTROL>RELEASE`` (``?``: none)."""
    steps = []
    for sub in plan.by_reference.get(reference, []):
        found = decisions.get((sub.reference, sub.version))
        stage = "UNREADABLE" if sub.unreadable else "OVERSIZED" if sub.oversized else sub.stage
        steps.append(f"v{sub.version} {stage}>{found[0].outcome if found else '?'}")
    return ", ".join(steps) or "never submitted"


def declaration_checks(
    observations: Observations,
    per_reference: Mapping[str, Mapping[LineKey, Position]],
    plan: Plan,
    decisions: Mapping[Key, list[DecisionSeen]],
) -> list[LineCheck]:
    """Each declaration's position on each line against what its versions call for."""
    actual: dict[tuple[str, LineKey], tuple[Decimal, Decimal]] = {}
    authorised: dict[LineKey, Decimal] = {}
    for x in observations.ledger:
        key = (x.authority, x.document, x.line)
        authorised[key] = x.authorised
        for holding in x.positions or ():
            r, w = actual.get((holding.declaration, key), (_ZERO, _ZERO))
            actual[(holding.declaration, key)] = (r + holding.reserved, w + holding.written_off)
    wanted = {
        (reference, key)
        for reference, positions in per_reference.items()
        for key in positions
        if key in authorised
    }
    checks = []
    for reference, key in sorted(wanted | set(actual)):
        reserved, written = actual.get((reference, key), (_ZERO, _ZERO))
        checks.append(
            LineCheck(
                key,
                authorised[key],
                reserved,
                written,
                per_reference.get(reference, {}).get(key, Position()),
                reference,
                history(plan, decisions, reference),
            )
        )
    return checks


# -- what was read, and whether the run's faults took ------------------------------------


def fault_without_effect(event: Event, observations: Observations) -> str:
    """Why ``event``, an injection that says it succeeded, shows no effect ("": it does).

    Cheap evidence only: a kill's SIGKILL exit and the restart seen ready, the broker seen
    down, poison sent, a partner's fault switch read back from the simulator, and for an
    outage (every call of its window fails) an UNAVAILABLE answer or a deadline decision
    for that authority. Timeouts, garbage and calls held in progress hit a share of calls
    in a few seconds, which a retry or a quiet moment may leave unseen by the hub: the
    read-back is their evidence.
    """
    kind = event.name.split(":")[0]
    detail = event.detail
    if kind in ("hub_kill", "adapter_kill"):
        if detail.get("exit") != SIGKILLED:
            return f"exit {detail.get('exit')}, not killed by SIGKILL"
        if "ready_after_s" not in detail:
            return "no restart seen"
        return ""
    if kind == "broker_restart":
        return "" if float(detail.get("down_s", 0)) > 0 else "the broker was not seen down"
    if kind == "poison":
        return "" if _records_sent(detail.get("records")) > 0 else "no poisoned record sent"
    if kind not in PARTNER_FAULTS:
        return ""
    target = str(detail.get("target", "?"))
    if detail.get("applied") is not True:
        return f"{target}: the simulator's fault switch was not read back"
    if kind == "partner_outage" and not _outage_felt(target, detail, observations):
        return f"{target}: no UNAVAILABLE answer nor deadline decision in its window"
    return ""


def _records_sent(records: Any) -> int:
    """The poisoned records an event says it sent: a count, or counts by topic (as the
    orchestrator writes them)."""
    if isinstance(records, Mapping):
        return sum(_records_sent(n) for n in records.values())
    if isinstance(records, bool) or not isinstance(records, int | float | str):
        return 0
    try:
        return int(records)
    except ValueError:
        return 0


def _outage_felt(authority: str, detail: Mapping[str, Any], observations: Observations) -> bool:
    began = float(detail.get("from_epoch", 0.0))
    ended = float(detail.get("until_epoch", float("inf"))) + FELT_AFTER_S
    answered = any(
        a.authority == authority
        and began <= a.timestamp <= ended
        and any(verdict == UNAVAILABLE for *_, verdict in a.verdicts)
        for a in observations.answers
    )
    return answered or any(
        authority in deadline_authorities(d) and began <= d.decided_at <= ended
        for d in observations.decisions
    )


def decision_order_problems(
    decided: Iterable[DecisionSeen], plan: Plan
) -> tuple[list[tuple[str, str]], int]:
    """(reference, what is wrong) for the references whose decisions are not in version
    order on their partition, and how many references were decided.

    A declaration's decisions go to the partition of its reference's hash, whatever
    partitions its versions arrived on (docs/decisions.md), and a lower version arriving
    after a higher one is ignored (architecture.md section 4): a version decided after a
    higher one is the clearance system's last word for a superseded version. Only
    versions that were owed a decision count here (a stale or invented one fails its own
    row).
    """
    by_reference: dict[str, list[DecisionSeen]] = defaultdict(list)
    for decision in decided:
        if (decision.reference, decision.version) in plan.live:
            by_reference[decision.reference].append(decision)
    problems: list[tuple[str, str]] = []
    for reference, found in sorted(by_reference.items()):
        partitions = sorted({d.partition for d in found})
        if len(partitions) > 1:
            problems.append(
                (reference, f"decisions on partitions {', '.join(map(str, partitions))}")
            )
            continue
        highest: DecisionSeen | None = None
        for decision in sorted(found, key=lambda d: d.offset):
            if (
                highest is not None
                and decision.version < highest.version
                and decision.offset > highest.offset
            ):
                problems.append(
                    (
                        reference,
                        f"v{decision.version} at {decision.partition}/{decision.offset} after "
                        f"v{highest.version} at {highest.partition}/{highest.offset}",
                    )
                )
            if highest is None or decision.version > highest.version:
                highest = decision
    return problems, len(by_reference)


def ledger_coverage(
    observations: Observations,
    per_reference: Mapping[str, Mapping[LineKey, Position]],
    claims_quantities: bool,
) -> Row:
    """Was the ledger read at all, and does it show every line something is expected on?

    A line is owed an observation when its document was loaded into the partner (its
    ledger was asked for) or when something must be held on it (a lower bound above
    zero). A document no partner has (the workload quotes such references, refused
    NOT_FOUND) holds nothing and is owed nothing. Without this row, a read that came back
    empty or without a document left the ledger rows comparing nothing, and passing.
    """
    asked = {(a, d) for a, docs in observations.ledger_documents.items() for d in docs}
    seen_lines = {(x.authority, x.document, x.line) for x in observations.ledger}
    seen_documents = {(a, d) for a, d, _ in seen_lines}
    owed: dict[LineKey, list[tuple[str, Position]]] = defaultdict(list)
    for reference, positions in sorted(per_reference.items()):
        for key, position in positions.items():
            if (key[0], key[1]) in asked or position.reserved_lo or position.written_lo:
                owed[key].append((reference, position))
    missing_documents = sorted(asked - seen_documents)
    missing_lines = sorted(key for key in owed if key not in seen_lines)
    read_nothing = not observations.ledger and bool(asked or claims_quantities)
    detail = (
        [f"the ledger read returned no line ({len(asked)} documents asked)"] if read_nothing else []
    )
    detail += [f"document not in the ledger read: {a} {d}" for a, d in missing_documents]
    detail += [
        f"expected line not observed: {a} {d} line {n} ({_holders(owed[(a, d, n)])})"
        for a, d, n in missing_lines
    ]
    return Row(
        "every expected ledger line observed (the partners' ledgers were read)",
        not (read_nothing or missing_documents or missing_lines),
        f"{len(seen_lines)} lines read; missing: {len(missing_documents)} of {len(asked)} "
        f"documents, {len(missing_lines)} of {len(owed)} expected lines",
        _sample(detail),
    )


def _holders(expected: Sequence[tuple[str, Position]]) -> str:
    said = []
    for reference, p in expected:
        parts = []
        if p.reserved_hi:
            parts.append(f"reserved {_interval(p.reserved_lo, p.reserved_hi)}")
        if p.written_hi:
            parts.append(f"written off {_interval(p.written_lo, p.written_hi)}")
        if parts:
            said.append(f"{reference} {', '.join(parts)}")
    return "; ".join(said) or "nothing expected held"


def exercised(
    plan: Plan,
    observations: Observations,
    judged: int,
    expected_declarations: int | None,
) -> Row:
    """A run that checked nothing passes every other row ("0 lost of 0"): it fails here."""
    declarations = len(plan.by_reference)
    wanted = max(1, expected_declarations or 0)
    shortfalls = []
    if declarations < wanted:
        shortfalls.append(
            f"{declarations} declarations in the manifest, at least {wanted} expected"
        )
    if not observations.decisions:
        shortfalls.append("0 decisions read, at least 1 expected")
    if judged < 1:
        shortfalls.append(f"{judged} decisions judged against the rules, at least 1 expected")
    nothing = not plan.submissions and not observations.decisions and not observations.ledger
    return Row(
        "the run exercised the stack (something was checked)",
        not shortfalls,
        "nothing was checked"
        if nothing
        else f"{declarations} declarations, {len(observations.decisions)} decisions, "
        f"{len(observations.ledger)} ledger lines",
        tuple(shortfalls),
    )


# -- the whole check ------------------------------------------------------------------


def check(
    submissions: Sequence[Submission],
    observations: Observations,
    events: Sequence[Event],
    *,
    required_faults: Sequence[str] = (),
    elapsed_s: float | None = None,
    expected_declarations: int | None = None,
) -> CheckReport:
    plan = Plan.of(submissions)
    report = CheckReport()
    rows = report.rows
    decisions: dict[Key, list[DecisionSeen]] = defaultdict(list)
    for decision in observations.decisions:
        decisions[(decision.reference, decision.version)].append(decision)
    answers = AnswerIndex(observations.answers)

    # Faults: each kind injected at least once with its effect seen, and none failed (an
    # event that does not say ok is no injection).
    faults = [e for e in events if e.kind == "fault"]
    failed_faults = [e for e in faults if e.detail.get("ok") is not True]
    effects = [
        (e, fault_without_effect(e, observations)) for e in faults if e.detail.get("ok") is True
    ]
    injected = Counter(e.name for e, why_not in effects if not why_not)
    missing_faults = [f for f in required_faults if injected[f] == 0]
    rows.append(
        Row(
            "fault schedule executed (each kind injected, its effect seen)",
            not missing_faults and not failed_faults,
            f"{sum(injected.values())} of {len(faults)} faults with effect, {len(injected)} kinds",
            _sample(
                [f"never injected with its effect seen: {f}" for f in missing_faults]
                + [
                    f"failed to inject {e.name} at {e.t} s: "
                    + str(e.detail.get("error", "no ok in its event"))
                    for e in failed_faults
                ]
                + [f"no effect seen: {e.name} at {e.t} s ({why})" for e, why in effects if why]
                + [f"{name} x{n}" for name, n in sorted(injected.items())]
            ),
        )
    )

    # Was the stack quiet when it was checked? If not, "lost" may still be on its way.
    quiet = [e for e in events if e.kind == "note" and e.name in ("quiet", "not_quiet")]
    if quiet:
        rows.append(
            Row(
                "the stack went quiet before the check",
                quiet[-1].name == "quiet",
                f"{quiet[-1].name.replace('_', ' ')} {quiet[-1].detail.get('after_s', '?')} s "
                "after the last fault",
                ()
                if quiet[-1].name == "quiet"
                else ("records still flowing when the wait ran out: 'lost' may be late",),
            )
        )

    # Exactly one decision per version that arrived in order (architecture.md section 4):
    # one superseded before its decision is owed its REFUSE (SUPERSEDED) too.
    lost = [
        sub
        for key, sub in plan.live.items()
        if not decisions.get(key) and plan.owed_a_decision(sub)
    ]
    lost_by_client = Counter(sub.client for sub in lost)
    sent_by_client = Counter(sub.client for sub in plan.live.values())
    rows.append(
        Row(
            "every submitted version decided (none lost)",
            not lost,
            f"{len(lost)} lost of {len(plan.live)}",
            _sample(
                [
                    f"{client}: {lost_by_client[client]} lost of {sent_by_client[client]} sent"
                    for client in sorted(sent_by_client)
                ]
                + [
                    f"lost: {s.reference} v{s.version} {s.stage} ({s.client}, {s.story}, "
                    f"partition {s.partition})"
                    for s in lost
                ]
            ),
        )
    )
    overtaken_undecided = [
        s for key, s in plan.live.items() if not decisions.get(key) and not plan.owed_a_decision(s)
    ]
    rows.append(
        Row(
            "versions perhaps overtaken by the next (a send retried), left undecided (allowed)",
            None,
            str(len(overtaken_undecided)),
            _sample(f"{s.reference} v{s.version} ({s.client})" for s in overtaken_undecided),
        )
    )
    superseded_refused = [
        d
        for d in observations.decisions
        if (d.reference, d.version) in plan.live and is_superseded(d)
    ]
    rows.append(
        Row(
            "versions superseded before their decision, refused as such",
            None,
            str(len(superseded_refused)),
        )
    )
    duplicates = {key: len(found) for key, found in decisions.items() if len(found) > 1}
    rows.append(
        Row(
            "no duplicate decision",
            not duplicates,
            f"{len(duplicates)} versions decided more than once",
            _sample(f"{ref} v{version}: {n} decisions" for (ref, version), n in duplicates.items()),
        )
    )
    stale_decided = [key for key in plan.stale if decisions.get(key)]
    rows.append(
        Row(
            "no decision for a stale version",
            not stale_decided,
            f"{len(stale_decided)} of {len(plan.stale)} stale versions decided",
            _sample(f"{ref} v{version}" for ref, version in stale_decided),
        )
    )
    # A decision for a version nobody sent: a misread version number, a poisoned record
    # given a real key. No poisoned declaration carries a readable reference (chaos/poison.py).
    known = {s.reference for s in plan.submissions}
    invented = [
        d
        for d in observations.decisions
        if (d.reference, d.version) not in plan.live and (d.reference, d.version) not in plan.stale
    ]
    rows.append(
        Row(
            "no decision for a version never submitted",
            not invented,
            f"{len(invented)} decisions for "
            f"{len({(d.reference, d.version) for d in invented})} versions nobody sent",
            _sample(
                f"{d.reference} v{d.version}: {d.outcome}"
                + ("" if d.reference in known else " (reference never submitted)")
                for d in invented
            ),
        )
    )
    out_of_order, decided_references = decision_order_problems(observations.decisions, plan)
    rows.append(
        Row(
            "each reference's decisions in version order",
            not out_of_order,
            f"{len({reference for reference, _ in out_of_order})} of {decided_references} "
            "references decided out of order",
            _sample(f"{reference}: {problem}" for reference, problem in out_of_order),
        )
    )
    unreadable_decisions = [u for u in observations.unreadable if u.topic.endswith(".decisions")]
    rows.append(
        Row(
            "every decision opens and verifies (independent JOSE, jwcrypto)",
            not unreadable_decisions,
            f"{len(unreadable_decisions)} unreadable",
            _sample(f"{u.partition}/{u.offset}: {u.reason}" for u in unreadable_decisions),
        )
    )
    rows.append(
        Row(
            "every topic read to its end (no incomplete read)",
            not observations.incomplete,
            f"{len(observations.incomplete)} partitions read incompletely",
            _sample(x.describe() for x in observations.incomplete),
        )
    )
    unreadable_answers = [u for u in observations.unreadable if not u.topic.endswith(".decisions")]
    rows.append(
        Row(
            "answers the checker could not open (planted poison expected here)",
            None,
            str(len(unreadable_answers)),
        )
    )

    # Outcomes.
    problems: list[str] = []
    beaten: list[str] = []
    judged = 0
    for key, found in decisions.items():
        sub = plan.live.get(key)
        if sub is None:
            continue
        for decision in found:
            judged += 1
            verdict = judge(sub, decision, answers, plan.later_versions(sub))
            problems += verdict.problems
            beaten += sorted(set(verdict.beaten_by_deadline))
    rows.append(
        Row(
            "every outcome follows from the partner answers and the rules",
            not problems,
            f"{len(problems)} problems in {judged} decisions",
            _sample(problems),
        )
    )
    # The premise of every other row, so it heads the table.
    rows.insert(0, exercised(plan, observations, judged, expected_declarations))
    rows.append(
        Row(
            "no deadline decision while the answer was already in the log",
            not beaten,
            f"{len(beaten)} answers of {len({b.split(' ')[0] for b in beaten})} declarations",
            _sample(beaten),
        )
    )

    # Ledgers.
    per_reference: dict[str, dict[LineKey, Position]] = {}
    undetermined = 0
    for reference, subs in plan.by_reference.items():
        life = Lifecycle()
        for sub in subs:
            first = decisions.get((sub.reference, sub.version))
            life.apply(sub, first[0] if first else None)
        undetermined += not life.determined
        per_reference[reference] = dict(life.positions)
    expected: dict[LineKey, Position] = defaultdict(Position)
    for positions in per_reference.values():
        for line_key, position in positions.items():
            total = expected[line_key]
            total.reserved_lo += position.reserved_lo
            total.reserved_hi += position.reserved_hi
            total.written_lo += position.written_lo
            total.written_hi += position.written_hi
    lines = [
        LineCheck(
            (x.authority, x.document, x.line),
            x.authorised,
            x.reserved,
            x.written_off,
            expected.get((x.authority, x.document, x.line), Position()),
        )
        for x in observations.ledger
    ]
    checks: list[LineCheck] = lines
    per_declaration = bool(observations.ledger) and all(
        x.positions is not None for x in observations.ledger
    )
    if per_declaration:
        checks = declaration_checks(observations, per_reference, plan, decisions)
    claims = any(quantities(sub) for sub in plan.live.values())
    rows.append(ledger_coverage(observations, per_reference, claims))
    reserved_off = [x for x in checks if x.reserved_deviation]
    written_off = [x for x in checks if x.written_deviation]
    leaked = sum((x.reserved_deviation for x in reserved_off if x.reserved_deviation > 0), _ZERO)
    deviation = sum((abs(x.reserved_deviation) + abs(x.written_deviation) for x in checks), _ZERO)
    scope = "declaration positions" if per_declaration else "document lines"
    rows.append(
        Row(
            "released quantities written off exactly once",
            not written_off,
            f"{len(written_off)} {scope} off, deviation "
            f"{sum((abs(x.written_deviation) for x in written_off), _ZERO)}",
            _sample(x.describe() for x in written_off),
        )
    )
    rows.append(
        Row(
            "no reservation left held (refused, cancelled, superseded, unreadable)",
            not reserved_off,
            f"{len(reserved_off)} {scope} off, {leaked} held too much",
            _sample(x.describe() for x in reserved_off),
        )
    )
    over = [x for x in lines if x.reserved + x.written_off > x.authorised]
    rows.append(
        Row(
            "no partner line over-committed",
            not over,
            f"{len(over)} of {len(lines)} lines",
            _sample(x.describe() for x in over),
        )
    )
    rows.append(
        Row(
            "ledger deviation (expected minus actual)",
            deviation == 0,
            f"{deviation} over {len(checks)} {scope}",
            (f"{undetermined} declarations with a lost decision counted as uncertain",)
            if undetermined
            else (),
        )
    )

    # Components.
    exits = [e for e in events if e.kind == "process_exit" and not e.detail.get("expected")]
    crashes = [e for e in exits if not e.detail.get("during_broker_restart")]
    rows.append(
        Row(
            "nothing a party may write crashed a component",
            not crashes,
            f"{len(crashes)} unexpected exits",
            _exits(crashes),
        )
    )
    infrastructure = [e for e in exits if e.detail.get("during_broker_restart")]
    looping = [name for name, n in Counter(e.name for e in infrastructure).items() if n >= 3]
    rows.append(
        Row(
            "components ride out the broker restart (no crash-loop)",
            False if looping else None,
            f"{len(infrastructure)} exits while the broker restarted",
            _exits(infrastructure),
        )
    )
    readers = [e for e in events if e.kind == "clearance_reader"]
    committed = len(observations.decisions) + len(unreadable_decisions)
    if not readers:
        rows.append(Row("held-back clearance reader acted on every decision", False, "not run"))
    else:
        result = readers[-1].detail
        opened = int(result.get("opened", 0))
        rejected = int(result.get("rejected", 0))
        rows.append(
            Row(
                "held-back clearance reader acted on every decision",
                rejected == 0 and opened >= committed,
                f"{opened} opened, {rejected} rejected of {committed}, "
                f"read {result.get('age', '?')} after",
                _sample(f"{kind}: {n}" for kind, n in dict(result.get("kinds", {})).items()),
            )
        )
    audit = observations.audit
    rows.append(
        Row(
            "audit chain verifies (gun-hub audit verify)",
            audit is not None and audit.exit_code == 0,
            "not run" if audit is None else f"exit {audit.exit_code}",
            tuple(audit.output.splitlines()[-4:]) if audit is not None else (),
        )
    )
    decided = {(d.reference, d.version) for d in observations.decisions}
    missing: list[tuple[str, int]] = []
    twice: list[tuple[str, int]] = []
    if audit is None or audit.decisions is None:
        rows.append(Row("every decision in the audit trail", False, "not read"))
    else:
        audited = Counter(audit.decisions)
        missing = sorted(decided - set(audited))
        twice = sorted(key for key, count in audited.items() if count > 1)
        rows.append(
            Row(
                "every decision in the audit trail",
                not missing,
                f"{len(missing)} of {len(decided)} decisions missing",
                _sample(f"{reference} v{version}" for reference, version in missing),
            )
        )
        # A decision made again after a crash (its first audit link in, its case not yet)
        # is a new entry; one whose record was only read again is not (stop 33).
        rows.append(
            Row(
                "decisions with more than one audit entry (info)",
                None,
                f"{len(twice)} of {len(decided)}",
                _sample(f"{reference} v{version}" for reference, version in twice),
            )
        )

    report.figures = {
        "declarations": len(plan.by_reference),
        "versions_submitted": len(plan.submissions),
        "versions_to_decide": len(plan.live),
        "stale_versions": len(plan.stale),
        "by_client": dict(sent_by_client),
        "decisions": len(observations.decisions),
        "outcomes": dict(Counter(d.outcome for d in observations.decisions)),
        "lost": len(lost),
        "superseded_refused": len(superseded_refused),
        "overtaken_undecided": len(overtaken_undecided),
        "lost_by_client": dict(lost_by_client),
        "duplicates": len(duplicates),
        "stale_decided": len(stale_decided),
        "invented_decisions": len(invented),
        "decided_out_of_order": len(out_of_order),
        "incomplete_reads": len(observations.incomplete),
        "outcome_problems": len(problems),
        "deadline_beat_answer": len(beaten),
        "ledger_deviation": str(deviation),
        "ledger_lines": len(lines),
        "reservations_leaked": str(leaked),
        "faults": dict(injected),
        "faults_failed": len(failed_faults),
        "unexpected_exits": len(crashes),
        "exits_during_broker_restart": len(infrastructure),
        "audit_exit": None if audit is None else audit.exit_code,
        "audit_missing": len(missing),
        "audited_more_than_once": len(twice),
        "time_s": elapsed_s,
        "invariants_failed": [row.name for row in rows if row.ok is False],
    }
    return report


def _exits(exits: Sequence[Event]) -> tuple[str, ...]:
    by_name = Counter(e.name for e in exits)
    return _sample(
        f"{name} exited {n} time(s) on its own (last code "
        f"{[e for e in exits if e.name == name][-1].detail.get('code')}, log "
        f"{[e for e in exits if e.name == name][-1].detail.get('log', '?')})"
        for name, n in by_name.items()
    )


def partner_document_references(
    documents: Mapping[str, Sequence[Mapping[str, Any]]],
) -> dict[str, list[str]]:
    """Authority -> references, from the partner documents files' contents."""
    return {a: [str(d["reference"]) for d in docs] for a, docs in documents.items()}
