"""The checker fails a run it could not see whole, instead of passing it vacuously.

Review stop 37, T1 to T6: a ledger never read, a run with nothing in it, a decision for a
version nobody sent, a superseded version decided after its successor, a fault counted
without its effect, and a topic read cut short all passed. Each test plants one of them
in an otherwise clean run (``Scenario`` of ``test_checker.py``, no broker) and names the
row that must fail.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from chaos.checker.invariants import CheckReport, check, fault_without_effect
from chaos.checker.model import (
    DecisionSeen,
    Event,
    Holding,
    IncompleteRead,
    LedgerLine,
)
from chaos.checker.sources import MemorySource, observe
from tests.chaos.test_checker import (
    AUTHORITY,
    DOC,
    FAULTS,
    KILLED,
    Scenario,
    _answer,
    _decision,
    _quoted,
    _submission,
    failing,
)

LEDGER_OBSERVED = "every expected ledger line observed (the partners' ledgers were read)"
EXERCISED = "the run exercised the stack (something was checked)"
NEVER_SUBMITTED = "no decision for a version never submitted"
IN_ORDER = "each reference's decisions in version order"
SCHEDULE = "fault schedule executed (each kind injected, its effect seen)"
READ_WHOLE = "every topic read to its end (no incomplete read)"


def _row(report: CheckReport, name: str) -> tuple[str, tuple[str, ...]]:
    [row] = [r for r in report.rows if r.name == name]
    return row.measured, row.detail


# -- T1: the ledger rows pass when the ledger was not observed --------------------------


def test_a_ledger_read_that_returned_nothing_fails() -> None:
    """A released 10 KGM; the partner's ledger read came back empty (store lost, a renamed
    field): no line was compared, and "deviation 0 over 0" used to pass."""
    scenario = Scenario()
    scenario.source.lines = []
    report = scenario.check()
    assert failing(report) == {LEDGER_OBSERVED}
    measured, detail = _row(report, LEDGER_OBSERVED)
    assert measured == "0 lines read; missing: 1 of 1 documents, 1 of 1 expected lines"
    assert detail == (
        "the ledger read returned no line (1 documents asked)",
        f"document not in the ledger read: {AUTHORITY} {DOC}",
        f"expected line not observed: {AUTHORITY} {DOC} line 1 (A written off 10)",
    )


DOC2 = "CHEDP.CHAOS.2"


def _a_released_on(scenario: Scenario, document: str) -> None:
    """A quotes ``document`` instead of DOC, and is released on it."""
    scenario.submissions[0] = replace(
        scenario.submissions[0], documents=(replace(_quoted(), reference=document),)
    )
    first = scenario.source.decided[0]
    scenario.source.decided[0] = replace(
        first, documents=(replace(first.documents[0], reference=document),)
    )
    scenario.source.answered[0] = replace(
        scenario.source.answered[0], verdicts=((1, "N853", document, "VALID"),)
    )


def test_a_document_missing_from_the_partner_view_fails() -> None:
    """A's write-off is on DOC2, which the partner's answer leaves out: A's 10 KGM were
    never compared, whatever the partner holds."""
    scenario = Scenario()
    _a_released_on(scenario, DOC2)
    scenario.source.lines = [LedgerLine(AUTHORITY, DOC, 1, Decimal(15), Decimal(0), Decimal(0))]
    report = check(
        scenario.submissions,
        observe(scenario.source, {AUTHORITY: [DOC, DOC2]}),
        scenario.events,
        required_faults=FAULTS,
    )
    assert failing(report) == {LEDGER_OBSERVED}
    measured, detail = _row(report, LEDGER_OBSERVED)
    assert measured == "1 lines read; missing: 1 of 2 documents, 1 of 2 expected lines"
    assert detail == (
        f"document not in the ledger read: {AUTHORITY} {DOC2}",
        f"expected line not observed: {AUTHORITY} {DOC2} line 1 (A written off 10)",
    )


def test_with_per_declaration_positions_a_missing_document_fails_too() -> None:
    """Per-declaration mode used to keep an expected position only on a line the partner
    listed: A's position on DOC2 was dropped unseen."""
    scenario = Scenario()
    _a_released_on(scenario, DOC2)
    scenario.source.lines = [
        LedgerLine(
            AUTHORITY,
            DOC,
            1,
            Decimal(15),
            Decimal(0),
            Decimal(0),
            (Holding("B", Decimal(0), Decimal(0)),),
        )
    ]
    report = check(
        scenario.submissions,
        observe(scenario.source, {AUTHORITY: [DOC, DOC2]}),
        scenario.events,
        required_faults=FAULTS,
    )
    assert failing(report) == {LEDGER_OBSERVED}


def test_a_line_of_a_document_no_partner_has_is_not_owed_an_observation() -> None:
    """The workload quotes references no partner knows (refused NOT_FOUND): nothing can be
    held on them, so their absence from the ledger is no fault."""
    scenario = Scenario()
    scenario.submissions[1] = replace(
        scenario.submissions[1], documents=(replace(_quoted(), reference="NOTFOUND.1"),)
    )
    refused = _decision("B", 1, "REFUSE", "NOT_FOUND")
    scenario.source.decided[1] = replace(
        refused, documents=(replace(refused.documents[0], reference="NOTFOUND.1"),)
    )
    scenario.source.answered[1] = replace(
        scenario.source.answered[1], verdicts=((1, "N853", "NOTFOUND.1", "NOT_FOUND"),)
    )
    report = scenario.check()
    assert report.ok, [(r.name, r.detail) for r in report.failed]


# -- T2: a run with nothing in it passes -----------------------------------------------


def test_a_run_that_checked_nothing_fails() -> None:
    events = [
        Event(1.0, "fault", "hub_kill", KILLED),
        Event(9.0, "clearance_reader", "held-back", {"opened": 0, "rejected": 0}),
    ]
    report = check([], observe(MemorySource(), {AUTHORITY: [DOC]}), events, required_faults=FAULTS)
    assert not report.ok
    assert EXERCISED in failing(report)
    measured, detail = _row(report, EXERCISED)
    assert measured == "nothing was checked"
    assert detail == (
        "0 declarations in the manifest, at least 1 expected",
        "0 decisions read, at least 1 expected",
        "0 decisions judged against the rules, at least 1 expected",
    )


def test_a_run_with_fewer_declarations_than_asked_fails() -> None:
    scenario = Scenario()
    observed = observe(scenario.source, {AUTHORITY: [DOC]})
    report = check(
        scenario.submissions,
        observed,
        scenario.events,
        required_faults=FAULTS,
        expected_declarations=500,
    )
    assert failing(report) == {EXERCISED}
    measured, detail = _row(report, EXERCISED)
    assert measured == "3 declarations, 4 decisions, 1 ledger lines"
    assert detail == ("3 declarations in the manifest, at least 500 expected",)


def test_a_clean_run_states_what_it_exercised() -> None:
    report = Scenario().check()
    measured, _ = _row(report, EXERCISED)
    assert measured == "3 declarations, 4 decisions, 1 ledger lines"
    assert report.ok


# -- T3: a decision for a version nobody sent ------------------------------------------


def test_a_decision_for_a_version_never_submitted_fails() -> None:
    scenario = Scenario()
    scenario.source.decided.append(DecisionSeen("A", 7, "RELEASE", decided_at=1003.0))
    scenario.source.decided.append(DecisionSeen("Z", 1, "REFUSE", decided_at=1003.0))
    scenario.events[-1] = Event(9.0, "clearance_reader", "held-back", {"opened": 6})
    report = scenario.check()
    assert failing(report) == {NEVER_SUBMITTED}
    measured, detail = _row(report, NEVER_SUBMITTED)
    assert measured == "2 decisions for 2 versions nobody sent"
    assert detail == ("A v7: RELEASE", "Z v1: REFUSE (reference never submitted)")


# -- T4: the order of one reference's decisions ----------------------------------------


def _raced(scenario: Scenario, v1_offset: int, v2_offset: int) -> None:
    """D v1 sent right before v2 (may be superseded), both decided, at these offsets."""
    scenario.submissions += [
        replace(_submission(5, "D"), may_be_superseded=True),
        _submission(6, "D", 2),
    ]
    scenario.source.decided += [
        replace(_decision("D", 1, "RELEASE"), partition=2, offset=v1_offset),
        replace(_decision("D", 2, "RELEASE"), partition=2, offset=v2_offset),
    ]
    scenario.source.answered += [_answer("D", 1), _answer("D", 2)]
    scenario.source.lines = [LedgerLine(AUTHORITY, DOC, 1, Decimal(40), Decimal(0), Decimal(30))]
    scenario.events[-1] = Event(9.0, "clearance_reader", "held-back", {"opened": 6})


def test_a_superseded_version_decided_after_its_successor_fails() -> None:
    """architecture.md 4: a lower version arriving after a higher one is ignored; decisions
    keep their order on the declaration's partition (decisions.md). The clearance system's
    last word for D would be v1."""
    scenario = Scenario()
    _raced(scenario, v1_offset=11, v2_offset=10)
    report = scenario.check()
    assert failing(report) == {IN_ORDER}
    measured, detail = _row(report, IN_ORDER)
    assert measured == "1 of 4 references decided out of order"
    assert detail == ("D: v1 at 2/11 after v2 at 2/10",)


def test_a_raced_pair_decided_in_order_passes() -> None:
    scenario = Scenario()
    _raced(scenario, v1_offset=10, v2_offset=11)
    report = scenario.check()
    assert report.ok, [(r.name, r.detail) for r in report.failed]


def test_decisions_of_one_reference_on_two_partitions_fail() -> None:
    """The decision goes to the partition its declaration arrived on, and a reference's
    versions share one: on two partitions their order is lost for the reader."""
    scenario = Scenario()
    _raced(scenario, v1_offset=10, v2_offset=11)
    scenario.source.decided[-1] = replace(scenario.source.decided[-1], partition=3)
    report = scenario.check()
    assert failing(report) == {IN_ORDER}
    _, detail = _row(report, IN_ORDER)
    assert detail == ("D: decisions on partitions 2, 3",)


# -- T5: the fault schedule counts attempts, not effects -------------------------------


def test_a_fault_event_without_ok_is_not_an_injection() -> None:
    scenario = Scenario()
    scenario.events[0] = Event(1.0, "fault", "hub_kill", {})
    report = scenario.check()
    assert failing(report) == {SCHEDULE}
    _, detail = _row(report, SCHEDULE)
    assert "never injected with its effect seen: hub_kill" in detail


def test_any_failed_injection_fails_the_schedule() -> None:
    scenario = Scenario()
    scenario.events.insert(1, Event(2.0, "fault", "hub_kill", {"ok": False, "error": "boom"}))
    report = scenario.check()
    assert failing(report) == {SCHEDULE}
    _, detail = _row(report, SCHEDULE)
    assert "failed to inject hub_kill at 2.0 s: boom" in detail


def test_a_kill_of_a_process_already_gone_is_no_injection() -> None:
    scenario = Scenario()
    scenario.events[0] = Event(1.0, "fault", "hub_kill", {**KILLED, "exit": 1})
    report = scenario.check()
    assert failing(report) == {SCHEDULE}
    _, detail = _row(report, SCHEDULE)
    assert "no effect seen: hub_kill at 1.0 s (exit 1, not killed by SIGKILL)" in detail


def test_a_kill_without_its_restart_is_no_injection() -> None:
    scenario = Scenario()
    killed_only = {k: v for k, v in KILLED.items() if k != "ready_after_s"}
    scenario.events[0] = Event(1.0, "fault", "hub_kill", killed_only)
    assert failing(scenario.check()) == {SCHEDULE}


def _outage(**detail: object) -> Event:
    return Event(
        20.0,
        "fault",
        "partner_outage",
        {"ok": True, "target": AUTHORITY, "outage": True, "applied": True, **detail},
    )


def test_a_partner_outage_that_nothing_felt_is_no_injection() -> None:
    """The simulator took the switch, yet no answer of that authority was UNAVAILABLE and
    no deadline named it within the outage's window."""
    scenario = Scenario()
    scenario.events.insert(1, _outage(from_epoch=2000.0, until_epoch=2015.0))
    report = check(
        scenario.submissions,
        observe(scenario.source, {AUTHORITY: [DOC]}),
        scenario.events,
        required_faults=[*FAULTS, "partner_outage"],
    )
    assert failing(report) == {SCHEDULE}
    _, detail = _row(report, SCHEDULE)
    assert (
        f"no effect seen: partner_outage at 20.0 s ({AUTHORITY}: no UNAVAILABLE answer "
        "nor deadline decision in its window)"
    ) in detail


def test_a_partner_outage_felt_by_the_hub_passes() -> None:
    """C's UNAVAILABLE answer (timestamp 999) falls in the outage's window."""
    scenario = Scenario()
    scenario.events.insert(1, _outage(from_epoch=990.0, until_epoch=998.0))
    report = check(
        scenario.submissions,
        observe(scenario.source, {AUTHORITY: [DOC]}),
        scenario.events,
        required_faults=[*FAULTS, "partner_outage"],
    )
    assert report.ok, [(r.name, r.detail) for r in report.failed]


def test_a_partner_fault_the_simulator_did_not_take_is_no_injection() -> None:
    scenario = Scenario()
    scenario.events.insert(
        1, Event(20.0, "fault", "partner_garbage", {"ok": True, "target": AUTHORITY})
    )
    report = check(
        scenario.submissions,
        observe(scenario.source, {AUTHORITY: [DOC]}),
        scenario.events,
        required_faults=[*FAULTS, "partner_garbage"],
    )
    assert failing(report) == {SCHEDULE}
    _, detail = _row(report, SCHEDULE)
    assert (
        f"no effect seen: partner_garbage at 20.0 s ({AUTHORITY}: the simulator's "
        "fault switch was not read back)"
    ) in detail


# -- T6: a truncated topic read is silent ----------------------------------------------


def test_a_topic_read_stopped_before_its_end_fails_as_incomplete() -> None:
    """A transaction left open holds the read_committed end (the LSO) back: every later
    decision is hidden. Said as such, not only as "lost"."""
    scenario = Scenario()
    scenario.source.incomplete = [
        IncompleteRead("chaos.decisions", 4, read_to=120, stable_end=120, high_watermark=180)
    ]
    report = scenario.check()
    assert failing(report) == {READ_WHOLE}
    measured, detail = _row(report, READ_WHOLE)
    assert measured == "1 partitions read incompletely"
    assert detail == (
        "chaos.decisions partition 4: read up to offset 120 of 180 (last stable offset 120: "
        "a transaction left open hides what follows)",
    )


def test_incomplete_read_wording_when_the_reader_gave_up_early() -> None:
    gave_up = IncompleteRead("chaos.decisions", 1, read_to=50, stable_end=90, high_watermark=90)
    assert gave_up.describe() == (
        "chaos.decisions partition 1: read up to offset 50 of 90 (the read stopped before "
        "the last stable offset 90)"
    )


# -- the live ledger read: a missing field is an error, never an empty ledger ----------


def test_a_ledger_answer_without_its_fields_is_an_error_not_an_empty_ledger() -> None:
    """``GET /admin/ledger`` renamed or emptied: a KeyError, not a partner holding nothing."""
    from chaos.checker.sources import ledger_lines

    with pytest.raises(KeyError, match="balances"):
        ledger_lines(AUTHORITY, {"documents": [{"reference": DOC, "lines": []}]}, [DOC])
    with pytest.raises(KeyError, match="documents"):
        ledger_lines(AUTHORITY, {"docs": []}, [DOC])


@pytest.mark.parametrize(
    ("records", "seen"),
    [({"chaos.declarations": 15, "chaos.dlq": 10}, True), (12, True), ({}, False), (0, False)],
    ids=["by-topic", "a-count", "no-topic", "none"],
)
def test_poison_sent_counts_by_topic_or_in_all(records: object, seen: bool) -> None:
    """The orchestrator writes the poisoned records it sent by topic: the first real run of
    the stricter checker crashed on that form (stop 37)."""
    event = Event(2.0, "fault", "poison", {"ok": True, "records": records})
    why = fault_without_effect(event, observe(MemorySource(), {}))
    assert (why == "") is seen
    assert seen or why == "no poisoned record sent"
