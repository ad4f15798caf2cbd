"""The chaos suite's invariant checker, fed synthetic observations (no broker): it passes a
clean run and catches each planted fault."""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from chaos.checker.invariants import CheckReport, check
from chaos.checker.jose import EnvelopeError, EnvelopeOpener, KeyFolder
from chaos.checker.model import (
    AnswerSeen,
    DecisionSeen,
    DocumentResultSeen,
    Event,
    Holding,
    LedgerLine,
    QuotedDocument,
    Submission,
)
from chaos.checker.sources import MemorySource, observe

REPO = Path(__file__).resolve().parents[2]
DOC = "CHEDP.CHAOS.1"
AUTHORITY = "dgal"
FAULTS = ["hub_kill"]
# A hub kill as the orchestrator records it: SIGKILLed (exit -9), then restarted and ready.
KILLED = {"ok": True, "process": "hub", "exit": -9, "ready_after_s": 4.2}


def _quoted(quantity: str = "10") -> QuotedDocument:
    return QuotedDocument(1, "N853", DOC, "routed", AUTHORITY, 1, quantity, "KGM")


def _submission(seq: int, reference: str, version: int = 1, stage: str = "LODGED") -> Submission:
    return Submission(seq, reference, version, stage, "aiokafka", (_quoted(),), story="test")


def _decision(reference: str, version: int, outcome: str, verdict: str = "VALID") -> DecisionSeen:
    return DecisionSeen(
        reference,
        version,
        outcome,
        decided_at=1000.0,
        documents=(DocumentResultSeen(1, "N853", DOC, AUTHORITY, verdict),),
    )


def _answer(reference: str, version: int, verdict: str = "VALID") -> AnswerSeen:
    return AnswerSeen(
        reference, version, AUTHORITY, "RESERVE", ((1, "N853", DOC, verdict),), timestamp=999.0
    )


class Scenario:
    """A clean run: A released, B refused (racing claim lost), C controlled then cancelled."""

    def __init__(self) -> None:
        self.submissions = [
            _submission(1, "A"),
            _submission(2, "B"),
            _submission(3, "C"),
            _submission(4, "C", 2, "CANCELLED"),
        ]
        self.source = MemorySource(
            decided=[
                _decision("A", 1, "RELEASE"),
                _decision("B", 1, "REFUSE", "QUANTITY_INSUFFICIENT"),
                _decision("C", 1, "CONTROL_DOCUMENTARY", "UNAVAILABLE"),
                DecisionSeen("C", 2, "CANCELLED", decided_at=1001.0),
            ],
            answered=[
                _answer("A", 1),
                _answer("B", 1, "QUANTITY_INSUFFICIENT"),
                _answer("C", 1, "UNAVAILABLE"),
            ],
            lines=[LedgerLine(AUTHORITY, DOC, 1, Decimal(15), Decimal(0), Decimal(10))],
        )
        self.events = [
            Event(1.0, "fault", "hub_kill", KILLED),
            Event(9.0, "clearance_reader", "held-back", {"opened": 4, "rejected": 0}),
        ]

    def check(self) -> CheckReport:
        observed = observe(self.source, {AUTHORITY: [DOC]})
        return check(self.submissions, observed, self.events, required_faults=FAULTS)


def failing(report: CheckReport) -> set[str]:
    return {row.name for row in report.failed}


def test_a_clean_run_passes() -> None:
    report = Scenario().check()
    assert report.ok, [(r.name, r.detail) for r in report.failed]
    assert report.figures["lost"] == 0
    assert report.figures["duplicates"] == 0
    assert report.figures["ledger_deviation"] == "0"


def test_a_duplicated_decision_is_caught() -> None:
    scenario = Scenario()
    scenario.source.decided.append(_decision("A", 1, "RELEASE"))
    scenario.events[-1] = Event(9.0, "clearance_reader", "held-back", {"opened": 5})
    report = scenario.check()
    assert failing(report) == {"no duplicate decision"}
    assert report.figures["duplicates"] == 1


def test_a_lost_decision_is_caught() -> None:
    scenario = Scenario()
    scenario.source.decided = [d for d in scenario.source.decided if d.reference != "B"]
    report = scenario.check()
    assert "every submitted version decided (none lost)" in failing(report)
    assert report.figures["lost"] == 1
    assert report.figures["lost_by_client"] == {"aiokafka": 1}


def test_a_decision_missing_from_the_audit_trail_is_caught() -> None:
    scenario = Scenario()
    scenario.source.audited = [("A", 1), ("B", 1), ("C", 1)]
    report = scenario.check()
    assert failing(report) == {"every decision in the audit trail"}
    assert report.figures["audit_missing"] == 1


def test_a_decision_with_two_audit_entries_is_counted_not_failed() -> None:
    """Decided again after a crash (its audit link in, its case not yet): a new entry."""
    scenario = Scenario()
    scenario.source.audited = [("A", 1), ("A", 1), ("B", 1), ("C", 1), ("C", 2)]
    report = scenario.check()
    assert report.ok, [(r.name, r.detail) for r in report.failed]
    assert report.figures["audited_more_than_once"] == 1


def test_a_leaked_reservation_is_caught() -> None:
    """B was refused, yet its 10 KGM stay reserved at the partner."""
    scenario = Scenario()
    scenario.source.lines = [LedgerLine(AUTHORITY, DOC, 1, Decimal(25), Decimal(10), Decimal(10))]
    report = scenario.check()
    assert failing(report) == {
        "no reservation left held (refused, cancelled, superseded, unreadable)",
        "ledger deviation (expected minus actual)",
    }
    assert report.figures["reservations_leaked"] == "10"


def test_with_per_declaration_positions_the_leak_is_pinned_on_its_declaration() -> None:
    scenario = Scenario()
    scenario.source.lines = [
        LedgerLine(
            AUTHORITY,
            DOC,
            1,
            Decimal(25),
            Decimal(10),
            Decimal(10),
            (Holding("A", Decimal(0), Decimal(10)), Holding("B", Decimal(10), Decimal(0))),
        )
    ]
    report = scenario.check()
    [leak] = [r for r in report.failed if r.name.startswith("no reservation left held")]
    assert leak.detail == (
        "B on dgal CHEDP.CHAOS.1 line 1: reserved 10 (expected 0), written off 0 "
        "(expected 0) [v1 LODGED>REFUSE]",
    )


def test_a_write_off_applied_twice_is_caught() -> None:
    scenario = Scenario()
    scenario.source.lines = [LedgerLine(AUTHORITY, DOC, 1, Decimal(25), Decimal(0), Decimal(20))]
    assert "released quantities written off exactly once" in failing(scenario.check())


def test_an_outcome_the_answers_do_not_support_is_caught() -> None:
    scenario = Scenario()
    scenario.source.decided[1] = _decision("B", 1, "RELEASE")  # the partner refused B
    report = scenario.check()
    assert "every outcome follows from the partner answers and the rules" in failing(report)


def test_a_risk_control_of_a_valid_declaration_is_allowed() -> None:
    scenario = Scenario()
    scenario.source.decided[0] = replace(
        _decision("A", 1, "CONTROL_PHYSICAL"), reasons=(("RISK.LIVE-ANIMALS", "rule"),)
    )
    scenario.submissions.append(_submission(5, "A", 2, "RELEASED_AFTER_CONTROL"))
    scenario.source.decided.append(DecisionSeen("A", 2, "RELEASE", decided_at=1002.0))
    scenario.events[-1] = Event(9.0, "clearance_reader", "held-back", {"opened": 5})
    assert Scenario.check(scenario).ok


def test_a_risk_rule_raising_a_degraded_control_to_physical_is_allowed() -> None:
    """C's partner was down (a documentary control); a risk rule asks for a physical one.
    The stronger control wins, the rule named (found by review, stop 36, D5)."""
    scenario = Scenario()
    scenario.source.decided[2] = replace(
        _decision("C", 1, "CONTROL_PHYSICAL", "UNAVAILABLE"),
        reasons=(("DEGRADED_MODE", "office"), ("RISK.LIVE-ANIMALS", "rule")),
    )
    assert Scenario.check(scenario).ok


def test_a_degraded_control_raised_to_physical_without_a_risk_rule_is_caught() -> None:
    scenario = Scenario()
    scenario.source.decided[2] = _decision("C", 1, "CONTROL_PHYSICAL", "UNAVAILABLE")
    report = scenario.check()
    assert "every outcome follows from the partner answers and the rules" in failing(report)


def test_a_risk_rule_never_excuses_a_control_of_a_refused_declaration() -> None:
    scenario = Scenario()
    scenario.source.decided[1] = replace(
        _decision("B", 1, "CONTROL_PHYSICAL", "QUANTITY_INSUFFICIENT"),
        reasons=(("RISK.LIVE-ANIMALS", "rule"),),
    )
    report = scenario.check()
    assert "every outcome follows from the partner answers and the rules" in failing(report)


def test_a_stale_version_decided_is_caught() -> None:
    """D's version 1 arrives after its version 2: it must be ignored, not decided."""
    scenario = Scenario()
    scenario.submissions += [_submission(5, "D", 2, "PRELODGED"), _submission(6, "D", 1)]
    scenario.source.decided += [_decision("D", 2, "ADVICE"), _decision("D", 1, "RELEASE")]
    scenario.source.answered.append(replace(_answer("D", 2), operation="CHECK"))
    scenario.events[-1] = Event(9.0, "clearance_reader", "held-back", {"opened": 6})
    assert failing(scenario.check()) == {"no decision for a stale version"}


def test_a_deadline_that_beat_a_waiting_answer_is_caught() -> None:
    scenario = Scenario()
    scenario.source.decided[2] = replace(
        scenario.source.decided[2], reasons=(("DEADLINE", "no answer from dgal within 30s"),)
    )
    # The answer was in the log 10 s before the deadline decided the case.
    scenario.source.answered[2] = replace(_answer("C", 1, "VALID"), timestamp=990.0)
    report = scenario.check()
    assert "no deadline decision while the answer was already in the log" in failing(report)


@pytest.mark.parametrize(
    ("change", "row"),
    [
        (
            lambda s: s.events.append(Event(5.0, "process_exit", "adapter-dgal", {"code": 1})),
            "nothing a party may write crashed a component",
        ),
        (
            lambda s: s.events.__setitem__(
                -1, Event(9.0, "clearance_reader", "held-back", {"opened": 0, "rejected": 4})
            ),
            "held-back clearance reader acted on every decision",
        ),
        (
            lambda s: s.events.pop(0),
            "fault schedule executed (each kind injected, its effect seen)",
        ),
    ],
)
def test_component_reader_and_schedule_failures_are_caught(
    change: Callable[[Scenario], object], row: str
) -> None:
    scenario = Scenario()
    change(scenario)
    assert row in failing(scenario.check())


def test_the_checker_opens_envelopes_with_jwcrypto_and_refuses_the_wrong_sender(
    tmp_path: Path,
) -> None:
    """The hub seals with its own JOSE code; the checker opens with jwcrypto from the key
    files."""
    from gun_contract.envelope import ContentType
    from gun_contract.security.keystore import KeystoreFolder
    from gun_contract.topics import topic_registry
    from tests.conftest import envelope_of

    KeystoreFolder(tmp_path).init(["hub", "clearance", "dgal"])
    topics = topic_registry("chaos", ["dgal"])
    payload = b'<Decision xmlns="urn:gun-hub:decision:v1"/>'
    sealed = envelope_of("hub", topics, tmp_path).seal(
        payload, recipient="clearance", topic=topics.decisions, content_type=ContentType.XML
    )
    keys = KeyFolder(tmp_path)
    opened = EnvelopeOpener(keys, sender="hub", recipient="clearance", topic=topics.decisions)
    assert opened.open(sealed).payload == payload
    forged = EnvelopeOpener(keys, sender="dgal", recipient="clearance", topic=topics.decisions)
    with pytest.raises(EnvelopeError):
        forged.open(sealed)
    with pytest.raises(EnvelopeError):
        opened.open(b"[" * 3000)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.add("." * node.level + (node.module or ""))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and getattr(node.func, "id", getattr(node.func, "attr", ""))
            in {"__import__", "import_module"}
        ):
            found.add("<dynamic import>")
    return found


def test_the_checker_imports_nothing_of_the_hub() -> None:
    """Independence: the checker shares no code with what it judges."""
    files = sorted((REPO / "chaos" / "checker").rglob("*.py"))
    assert files
    forbidden = ("gun_contract", "gun_hub", "gun_tools", "adapters", "partner_sim")
    offending = {
        f"{path.relative_to(REPO)}: {name}"
        for path in files
        for name in _imports(path)
        if name.split(".")[0] in forbidden
        or name.startswith(".")
        or name == "<dynamic import>"
        or (name.split(".")[0] == "chaos" and not name.startswith("chaos.checker"))
    }
    assert offending == set()


def test_manifest_lines_round_trip() -> None:
    sub = replace(_submission(1, "A"), partition=3, submitted_at=1.5)
    assert Submission.from_json(sub.to_json()) == sub
    assert json.loads(sub.to_json())["documents"][0]["authority"] == AUTHORITY
