"""The checker owes a decision to every version that arrived in order (architecture.md
section 4: exactly one per version; only a version arriving after a higher one gets none),
a version superseded before its decision included: its REFUSE, SUPERSEDED (review stop
40, W4). Until then the raced story's first version was allowed to go undecided, which
hid the hub's failing to decide it.

A raced pair: D v1 sent right before D v2. Synthetic observations (no broker), built on
the clean run of ``tests/chaos/test_checker.py``.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from chaos.checker.invariants import CheckReport
from chaos.checker.model import DecisionSeen, Event, LedgerLine
from tests.chaos.test_checker import (
    AUTHORITY,
    DOC,
    Scenario,
    _answer,
    _decision,
    _quoted,
    _submission,
    failing,
)

LOST = "every submitted version decided (none lost)"
OUTCOMES = "every outcome follows from the partner answers and the rules"
SUPERSEDED_TEXT = "superseded by version 2 before it was decided: version 2's decision governs"


def _raced(
    scenario: Scenario, *, v1_offset: int | None, v2_offset: int | None, resent: bool = False
) -> None:
    """D v1 (may be superseded) and v2 delivered at these offsets of partition 1; v2 is
    released (10 KGM written off, as v1 claimed too: the line holds A's and D's 10)."""
    scenario.submissions += [
        replace(
            _submission(5, "D"),
            may_be_superseded=True,
            partition=1,
            offset=v1_offset,
            resent=resent,
        ),
        replace(_submission(6, "D", 2), partition=1, offset=v2_offset),
    ]
    scenario.source.decided.append(
        replace(_decision("D", 2, "RELEASE"), partition=2, offset=11),
    )
    scenario.source.answered += [_answer("D", 2)]
    scenario.source.lines = [LedgerLine(AUTHORITY, DOC, 1, Decimal(40), Decimal(0), Decimal(20))]


def _refused_as_superseded(scenario: Scenario, **changes: object) -> None:
    superseded = DecisionSeen(
        "D",
        1,
        "REFUSE",
        decided_at=1002.0,
        reasons=(("SUPERSEDED", SUPERSEDED_TEXT),),
        partition=2,
        offset=10,
    )
    scenario.source.decided.append(replace(superseded, **changes))  # type: ignore[arg-type]


def _readers_saw_all(scenario: Scenario) -> None:
    scenario.events[-1] = Event(
        9.0, "clearance_reader", "held-back", {"opened": len(scenario.source.decided)}
    )


def _check(scenario: Scenario) -> CheckReport:
    _readers_saw_all(scenario)
    return scenario.check()


def test_a_version_that_arrived_first_and_got_no_decision_is_lost() -> None:
    scenario = Scenario()
    _raced(scenario, v1_offset=7, v2_offset=8)
    report = _check(scenario)
    assert failing(report) == {LOST}
    assert report.figures["lost"] == 1


def test_its_refusal_as_superseded_before_the_next_decision_passes() -> None:
    scenario = Scenario()
    _raced(scenario, v1_offset=7, v2_offset=8)
    _refused_as_superseded(scenario)
    report = _check(scenario)
    assert report.ok, [(r.name, r.detail) for r in report.failed]
    assert report.figures["superseded_refused"] == 1
    assert report.figures["lost"] == 0


def test_a_version_perhaps_overtaken_by_a_retry_may_go_undecided() -> None:
    """A send of v1 failed and was retried: where v1 first landed is not known, and a v1
    behind v2 in the log is stale (no decision)."""
    scenario = Scenario()
    _raced(scenario, v1_offset=9, v2_offset=8, resent=True)
    report = _check(scenario)
    assert report.ok, [(r.name, r.detail) for r in report.failed]
    assert report.figures["overtaken_undecided"] == 1


def test_a_version_behind_the_next_in_the_log_may_go_undecided() -> None:
    scenario = Scenario()
    _raced(scenario, v1_offset=9, v2_offset=8)
    assert _check(scenario).ok


def test_a_superseded_refusal_after_the_higher_decision_fails_the_order() -> None:
    scenario = Scenario()
    _raced(scenario, v1_offset=7, v2_offset=8)
    _refused_as_superseded(scenario, offset=12)
    assert failing(_check(scenario)) == {"each reference's decisions in version order"}


def test_a_superseded_decision_must_be_a_bare_refusal_naming_a_later_version() -> None:
    for changes, problem in (
        ({"outcome": "RELEASE"}, "superseded, decided RELEASE, expected REFUSE"),
        (
            {"documents": _decision("D", 1, "REFUSE").documents},
            "superseded, yet 1 document results",
        ),
        (
            {"reasons": (("SUPERSEDED", SUPERSEDED_TEXT.replace("2", "3")),)},
            "superseded by version [3], versions submitted after it: [2]",
        ),
    ):
        scenario = Scenario()
        _raced(scenario, v1_offset=7, v2_offset=8)
        _refused_as_superseded(scenario, **changes)
        report = _check(scenario)
        assert failing(report) == {OUTCOMES}, changes
        [row] = [r for r in report.rows if r.name == OUTCOMES]
        assert row.detail == (f"D v1: {problem}",)


def test_a_superseded_refusal_deletes_nothing_its_reservation_stands_until_restated() -> None:
    """No DELETE is sent for a version refused as superseded: the next version's RESERVE
    restates its lines. Here v2 (5 KGM) is lost, so its RESERVE may never have been
    applied, and v1's 10 KGM may still be held: only the lost decision fails, not the
    reservation rows (a REFUSE taken for a deletion would expect at most 5)."""
    scenario = Scenario()
    _raced(scenario, v1_offset=7, v2_offset=8)
    scenario.submissions[-1] = replace(scenario.submissions[-1], documents=(_quoted("5"),))
    scenario.source.decided.pop()  # v2's decision lost
    _refused_as_superseded(scenario)
    scenario.source.lines = [
        LedgerLine(AUTHORITY, DOC, 1, Decimal(40), Decimal(10), Decimal(10)),
    ]
    report = _check(scenario)
    assert failing(report) == {LOST}
