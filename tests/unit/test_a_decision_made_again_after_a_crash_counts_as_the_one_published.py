"""A declaration version decided again after a crash: the view keeps the first decision.

The worker dies after the broker took a decision's outbox record, status event and fact,
and before it took the case's changelog write: the restored case has no decision, the
record is read again and the version is decided again (another ``decided_at``, and, if
the answers and the deadline are read in another order, maybe another outcome). The
publisher publishes the first outbox record of a (reference, version) and skips the
repeat (runtime/publisher.py); the status events and facts of both are on their topics in
the same order (one key, one partition each, written by the same worker one after the
other). So the view keeps the first too: the statistics count the decision the clearance
system received, on its day, and the trader's state is its outcome (review stop 37-s,
F4).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.facts import DecisionFact, DocumentUse, OverrideUse, RolloutUse, fact_bytes
from gun_hub.ops.view import OpsView, current_state
from gun_hub.web.redaction import trader_status
from tests.unit.test_operations_view import EORI, TOPICS, Feed

REF = "26FR000690I0000012"
FIRST = datetime(2026, 11, 22, 23, 59, 59, 900000, tzinfo=UTC)
AGAIN = FIRST + timedelta(seconds=2.1)  # after midnight (UTC): the next day


def _decision(
    outcome: str, at: datetime, verdict: str = "VALID", *, override: bool = False
) -> DecisionFact:
    return DecisionFact(
        reference=REF,
        version=1,
        declarant_eori=EORI,
        stage="LODGED",
        outcome=outcome,
        decided_at=at,
        authorities=["dgal"],
        documents=[
            DocumentUse(
                goods_item=1, code="N853", reference="CHEDP.1", authority="dgal", verdict=verdict
            )
        ],
        override=OverrideUse(goods_items=1, covered=1) if override else None,
        office="FR000690",
        rollout=[RolloutUse(authority="dgal", mode="enforce")],
    )


def test_a_decision_decided_again_after_a_crash_counts_as_the_one_published(
    tmp_path: Path,
) -> None:
    view, feed = OpsView(tmp_path / "v.sqlite3", TOPICS), Feed()
    view.apply([feed.record(TOPICS.facts, fact_bytes(_decision("RELEASE", FIRST)))])
    view.apply([feed.record(TOPICS.facts, fact_bytes(_decision("RELEASE", AGAIN)))])
    assert view.statistics()["decisions"]["by_day"] == {"2026-11-22": {"RELEASE": 1}}
    assert view.decisions_since(AGAIN.timestamp()) == 0  # still the first's time


def test_a_decision_made_again_differently_is_counted_as_the_first(tmp_path: Path) -> None:
    """The repeat refuses where the first released (its answer read after the deadline
    this time): every count keeps the first, which is what the clearance system got."""
    view, feed = OpsView(tmp_path / "v.sqlite3", TOPICS), Feed()
    first = _decision("RELEASE", FIRST, override=True)
    again = _decision("REFUSE", AGAIN, "UNAVAILABLE")
    view.apply([feed.record(TOPICS.facts, fact_bytes(first))])
    view.apply([feed.record(TOPICS.facts, fact_bytes(again))])

    decisions = view.statistics()["decisions"]
    assert decisions["by_outcome"] == {"RELEASE": 1}
    assert decisions["by_authority"] == {"dgal": {"RELEASE": 1}}
    assert decisions["by_document_code"]["N853"] == {"uses": 1, "by_verdict": {"VALID": 1}}
    assert view.statistics()["overrides"]["declared"] == 1
    [report] = view.rollout_report()
    assert report["decided"] == {"RELEASE": 1}
    [used] = view.documents_of_declarant(EORI)
    assert used["last_used"].startswith("2026-11-22T23:59:59")


def test_the_trader_state_is_the_first_decision_of_a_version(tmp_path: Path) -> None:
    """Two DECIDED events of one version (they differ, so both are kept): the state is the
    first's outcome; officers see the second marked ``decided_again``; the trader does not
    see it at all (the clearance system never received it)."""
    view, feed = OpsView(tmp_path / "v.sqlite3", TOPICS), Feed()
    view.apply(
        [
            feed.received(REF),
            feed.status(REF, StatusKind.RECEIVED),
            feed.status(REF, StatusKind.DECIDED, 1, outcome="RELEASE"),
            feed.status(REF, StatusKind.DECIDED, 2, outcome="REFUSE", detail="UNAVAILABLE"),
        ]
    )
    officers = view.declaration(REF)
    assert officers is not None
    assert (officers["state"], officers["outcome"], officers["reasons"]) == (
        "DECIDED",
        "RELEASE",
        [],
    )
    decided = [e for e in officers["history"] if e["kind"] == "DECIDED"]
    assert [(e["outcome"], e.get("decided_again", False)) for e in decided] == [
        ("RELEASE", False),
        ("REFUSE", True),
    ]

    mine = view.history_of_declarant(REF, EORI)
    assert mine is not None
    trader = trader_status(REF, mine, confidential=())
    assert trader["outcome"] == "RELEASE"
    assert [e["kind"] for e in trader["history"]] == ["RECEIVED", "DECIDED"]
    assert "decided_again" not in str(trader)


def test_a_later_version_decided_is_no_decision_made_again() -> None:
    """Each version has its own first decision: version 2's is the state."""
    history = [
        {"version": 1, "kind": "DECIDED", "at": "t1", "detail": "", "outcome": "RELEASE"},
        {"version": 2, "kind": "RECEIVED", "at": "t2", "detail": ""},
        {"version": 2, "kind": "DECIDED", "at": "t3", "detail": "", "outcome": "REFUSE"},
        {"version": 2, "kind": "DECIDED", "at": "t4", "detail": "", "outcome": "RELEASE"},
    ]
    state = current_state(history)
    assert (state["version"], state["outcome"]) == (2, "REFUSE")
