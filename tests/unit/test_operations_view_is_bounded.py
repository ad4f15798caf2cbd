"""The operations view prunes what is older than its retention and answers its counts
from counters kept as it is fed, not by scanning every decision (issue 12, bounded
state; gun_hub/ops/view.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gun_contract.dead_letter import HEADER_COMPONENT, HEADER_ERROR_KIND, HEADER_ERROR_REASON
from gun_contract.kafka.client import ClientConfig
from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.facts import DecisionFact, OverrideUse, RolloutUse, fact_bytes
from gun_hub.ops.feed import OpsFeed
from gun_hub.ops.lag_metrics import OpsState
from gun_hub.ops.view import FeedRecord, OpsView
from tests.unit.test_operations_view import EORI, NOON, TODAY, TOPICS, Feed, use

OLD_DAY = TODAY - timedelta(days=40)
OLD = NOON - timedelta(days=40)
RETENTION = timedelta(days=30)


@pytest.fixture
def view(tmp_path: Path) -> OpsView:
    return OpsView(tmp_path / "view.sqlite3", TOPICS)


def dead_letter(feed: Feed, kind: str, at_ms: int) -> FeedRecord:
    record = feed.record(
        TOPICS.dlq,
        b"x",
        [
            (HEADER_ERROR_KIND, kind.encode()),
            (HEADER_COMPONENT, b"hub.intake"),
            (HEADER_ERROR_REASON, b"why"),
        ],
    )
    return FeedRecord(record.topic, 0, record.offset, at_ms, b"x", record.headers)


def fill(view: OpsView) -> None:
    """One declaration decided 40 days ago, one today; a dead letter of each age."""
    feed = Feed()
    dgal = [use("N853", "CHEDP.1", "dgal")]
    view.apply(
        [
            feed.received("26FROLD00000000001", at=OLD),
            feed.status("26FROLD00000000001", StatusKind.RECEIVED, minutes=-40 * 24 * 60),
            feed.decided("26FROLD00000000001", "RELEASE", dgal, day=OLD_DAY),
            feed.received("26FRNEW00000000001"),
            feed.status("26FRNEW00000000001", StatusKind.RECEIVED),
            feed.decided("26FRNEW00000000001", "REFUSE", dgal),
            dead_letter(feed, "XML_MALFORMED", int(OLD.timestamp() * 1000)),
            dead_letter(feed, "XML_MALFORMED", int(NOON.timestamp() * 1000)),
        ]
    )


def test_what_is_older_than_the_retention_is_pruned(view: OpsView) -> None:
    fill(view)
    view.prune(NOON - RETENTION)
    assert view.declaration("26FROLD00000000001") is None
    assert view.declarant_of("26FROLD00000000001") is None
    assert view.declaration("26FRNEW00000000001") is not None
    assert view.declarant_of("26FRNEW00000000001") is not None
    stats = view.statistics()
    assert stats["decisions"]["by_outcome"] == {"REFUSE": 1}
    assert list(stats["decisions"]["by_day"]) == [TODAY.isoformat()]
    assert stats["decisions"]["by_authority"] == {"dgal": {"REFUSE": 1}}
    assert stats["decisions"]["by_document_code"]["N853"]["uses"] == 1
    assert view.dead_letter_counts() == {"total": 1, "by_kind": {"XML_MALFORMED": 1}}
    for table in ("decisions", "decision_documents", "events", "declarants", "dead_letters"):
        [(rows,)] = view._db.execute(f"SELECT COUNT(*) FROM {table}").fetchall()  # noqa: S608
        assert rows == 1, table


def test_the_dashboards_counts_read_no_decision_nor_dead_letter_row(view: OpsView) -> None:
    """The dashboard asks every second: its counts come from counters."""
    fill(view)
    read: set[str] = set()

    def reads(action: int, table: str | None, *_: object) -> int:
        if action == sqlite3.SQLITE_READ and table:
            read.add(table)
        return sqlite3.SQLITE_OK

    view._db.set_authorizer(reads)
    assert view.outcome_counts() == {"REFUSE": 1, "RELEASE": 1}
    assert view.dead_letter_counts()["total"] == 2
    view.statistics()
    view.rollout_report()
    view._db.set_authorizer(None)
    kept = {"decisions", "decision_documents", "overrides", "rollout_uses", "dead_letters"}
    assert read.isdisjoint(kept), read


def test_the_counters_keep_the_first_decision_applied_again_or_made_again(
    view: OpsView,
) -> None:
    """Applied again, or decided again after a crash: the first is counted, once (the
    publisher publishes the first, review stop 37-s F4)."""
    feed = Feed()
    dgal = [use("N853", "CHEDP.1", "dgal")]
    view.apply([feed.decided("26FRA0000000000001", "RELEASE", dgal)])
    view.apply([feed.decided("26FRA0000000000001", "RELEASE", dgal)])  # after a crash
    assert view.outcome_counts() == {"RELEASE": 1}
    refused = [use("N853", "CHEDP.1", "dgal", "NOT_FOUND")]
    view.apply([feed.decided("26FRA0000000000001", "REFUSE", refused)])
    assert view.outcome_counts() == {"RELEASE": 1}
    stats = view.statistics()["decisions"]
    assert stats["by_authority"] == {"dgal": {"RELEASE": 1}}
    assert stats["by_document_code"]["N853"] == {"uses": 1, "by_verdict": {"VALID": 1}}


def test_a_view_made_before_the_counters_counts_what_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "view.sqlite3"
    view = OpsView(path, TOPICS)
    fill(view)
    expected = view.statistics()
    for table in ("decision_counts", "authority_counts", "code_counts", "dead_letter_counts"):
        view._db.execute(f"DROP TABLE {table}")
    view.close()
    again = OpsView(path, TOPICS)
    assert again.statistics() == expected


async def test_the_feed_prunes_the_view_once_an_hour(view: OpsView) -> None:
    fill(view)
    feed = OpsFeed(
        ClientConfig(bootstrap_servers="unused:9092"),
        view,
        OpsState(),
        retention_s=RETENTION.total_seconds(),
    )
    assert await feed.prune_if_due(NOON.timestamp())
    assert view.declaration("26FROLD00000000001") is None
    assert not await feed.prune_if_due(NOON.timestamp() + 3599)
    assert await feed.prune_if_due(NOON.timestamp() + 3600)


def test_a_prune_goes_step_by_step_never_holding_the_loop_for_a_day_of_rows(
    view: OpsView,
) -> None:
    """Each step deletes a bounded number of rows: the feed yields between steps."""
    feed = Feed()
    view.apply(
        [
            feed.status(f"26FROLD{n:011d}", StatusKind.RECEIVED, minutes=-40 * 24 * 60)
            for n in range(5)
        ]
    )
    steps = []
    while deleted := view.prune(NOON - RETENTION, batch=2):
        steps.append(deleted)
    assert steps == [2, 2, 1]
    assert view.declaration("26FROLD00000000000") is None


async def test_a_retention_shorter_than_four_hours_is_pruned_four_times_within_it(
    view: OpsView,
) -> None:
    """A minute of retention (a steady-run benchmark) cannot wait an hour between prunes."""
    feed = OpsFeed(
        ClientConfig(bootstrap_servers="unused:9092"), view, OpsState(), retention_s=60.0
    )
    assert await feed.prune_if_due(NOON.timestamp())
    assert not await feed.prune_if_due(NOON.timestamp() + 14)
    assert await feed.prune_if_due(NOON.timestamp() + 15)


# -- decisions retire by time, the day's statistics stay (counters) -----------------------

_MINUTE = timedelta(minutes=1)


def decided_at(
    feed: Feed,
    reference: str,
    outcome: str,
    at: datetime,
    *,
    override: OverrideUse | None = None,
    rollout: Sequence[RolloutUse] = (),
) -> FeedRecord:
    """A decision fact decided at ``at`` (``Feed.decided`` decides at noon)."""
    documents = [use("N853", "CHEDP.1", "dgal"), use("C640", "CITES.1", "cites", "NOT_FOUND")]
    fact = DecisionFact(
        reference=reference,
        version=1,
        declarant_eori=EORI,
        stage="LODGED",
        outcome=outcome,
        decided_at=at,
        authorities=["cites", "dgal"],
        documents=documents,
        override=override,
        office="FR000690",
        rollout=list(rollout),
    )
    return feed.record(TOPICS.facts, fact_bytes(fact))


def fill_one_day(view: OpsView, morning: int = 6, afternoon: int = 4) -> None:
    """Decisions from 6:00 and from 14:00 of the same day, with overrides, rollout uses
    and (the morning's) status events."""
    feed = Feed()
    records = []
    shadow = RolloutUse(
        authority="cites", mode="shadow", would_decide="REFUSE", agrees=False, reasons=["A", "A"]
    )
    for n in range(morning + afternoon):
        at = NOON.replace(hour=6 if n < morning else 14) + n * _MINUTE
        reference = f"26FRDAY{n:011d}"
        records += [
            feed.received(reference),
            feed.status(reference, StatusKind.RECEIVED, minutes=int((at - NOON) / _MINUTE)),
            decided_at(
                feed,
                reference,
                ("RELEASE", "REFUSE", "CONTROL_DOCUMENTARY")[n % 3],
                at,
                override=OverrideUse(goods_items=1, covered=n % 2, declined=n % 3 == 0),
                rollout=[shadow, RolloutUse(authority="dgal", mode="enforce")],
            ),
        ]
    view.apply(records)


def rows(view: OpsView, table: str) -> int:
    [(count,)] = view._db.execute(f"SELECT COUNT(*) FROM {table}").fetchall()  # noqa: S608
    return int(count)


def test_decisions_older_than_the_retention_leave_within_their_day_the_days_counts_stay(
    view: OpsView,
) -> None:
    """A retention shorter than a day (a steady-run benchmark) still bounds the view: the
    decisions of the morning leave at noon, with their documents, overrides and rollout
    uses, while the day's statistics (answered from counters) still count them."""
    fill_one_day(view)
    statistics, report = view.statistics(), view.rollout_report()
    assert statistics["decisions"]["total"] == 10
    assert statistics["overrides"]["declared"] == 10
    while view.prune(NOON, batch=4):
        pass
    assert rows(view, "decisions") == 4
    assert rows(view, "decision_documents") == 8
    assert rows(view, "overrides") == 4
    assert rows(view, "rollout_uses") == 8
    assert view.statistics() == statistics
    assert view.rollout_report() == report
    # The day is wholly before the next day's cutoff: its counts leave with it.
    while view.prune(NOON + timedelta(days=1)):
        pass
    assert view.statistics()["decisions"]["total"] == 0
    assert view.statistics()["overrides"]["declared"] == 0
    assert view.rollout_report() == []


def test_a_decision_applied_again_counts_once_in_the_override_and_rollout_counts(
    view: OpsView,
) -> None:
    fill_one_day(view, morning=1, afternoon=0)
    once = view.statistics(), view.rollout_report()
    fill_one_day(view, morning=1, afternoon=0)  # the same facts, emitted again after a crash
    assert (view.statistics(), view.rollout_report()) == once


def test_a_counter_counted_from_rows_leaves_the_other_counters_alone(tmp_path: Path) -> None:
    """Rows pruned by time no longer say what their day held: a view opened with a counter
    missing counts that one from its rows, and never counts again those it has."""
    path = tmp_path / "view.sqlite3"
    view = OpsView(path, TOPICS)
    fill_one_day(view)
    while view.prune(NOON):
        pass
    expected = view.statistics(), view.rollout_report()
    view._db.execute("DROP TABLE dead_letter_counts")
    view.close()
    again = OpsView(path, TOPICS)
    assert (again.statistics(), again.rollout_report()) == expected


def test_a_view_made_before_the_override_and_rollout_counters_counts_them(
    tmp_path: Path,
) -> None:
    """A view pruned by whole days (before the counters of overrides and rollout uses)
    holds every row of the days it keeps: they are counted from them, once."""
    path = tmp_path / "view.sqlite3"
    view = OpsView(path, TOPICS)
    fill_one_day(view)
    expected = view.statistics(), view.rollout_report()
    for table in ("override_counts", "rollout_counts", "rollout_reason_counts"):
        view._db.execute(f"DROP TABLE IF EXISTS {table}")
    view.close()
    again = OpsView(path, TOPICS)
    assert (again.statistics(), again.rollout_report()) == expected
    while again.prune(NOON):
        pass
    assert (again.statistics(), again.rollout_report()) == expected


def test_the_pages_of_pruned_rows_are_used_again(tmp_path: Path) -> None:
    """No VACUUM needed: what a prune frees, the next decisions fill (the file does not
    grow by what it held again). Each round's day leaves whole: its decisions, its counts
    and its memory of the decisions that left before it (``decisions_left``)."""
    view = OpsView(tmp_path / "view.sqlite3", TOPICS)

    def one_round(first: int) -> int:
        feed = Feed()
        view.apply(
            decided_at(feed, f"26FRPGS{first + n:011d}", "RELEASE", NOON - _MINUTE)
            for n in range(1500)
        )
        while view.prune(NOON + timedelta(days=1)):
            pass
        view._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return (tmp_path / "view.sqlite3").stat().st_size

    first = one_round(0)
    assert rows(view, "decisions") == 0
    again = [one_round(1500 * n) for n in range(1, 4)]
    assert max(again) <= first * 1.1, (first, again)


def test_a_declaration_whose_decision_left_is_still_its_declarants_while_events_are(
    view: OpsView,
) -> None:
    """The decision leaves by its time; a later event (the write-off) is kept longer, and
    the trader lookup still knows whose it is from the receipt (ADR 0007)."""
    feed = Feed()
    reference = "26FRWOF00000000001"
    view.apply(
        [
            feed.received(reference),
            feed.status(reference, StatusKind.RECEIVED, minutes=-60),
            decided_at(feed, reference, "RELEASE", NOON - 50 * _MINUTE),
            feed.status(reference, StatusKind.WRITTEN_OFF, minutes=30),
        ]
    )
    while view.prune(NOON):
        pass
    assert rows(view, "decisions") == 0
    assert view.declarant_of(reference) == EORI
    assert view.history_of_declarant(reference, EORI) is not None
    assert view.history_of_declarant(reference, "FR99999999999999") is None


def test_a_decision_emitted_again_after_its_row_left_is_not_counted_twice(
    view: OpsView,
) -> None:
    """The hub emits a decision's fact again after a crash, possibly once its row has left
    by its time while its day's counts stay: the day still counts it once, and the row
    does not come back."""
    fill_one_day(view, morning=1, afternoon=0)
    once = view.statistics(), view.rollout_report()
    while view.prune(NOON):
        pass
    assert rows(view, "decisions") == 0
    fill_one_day(view, morning=1, afternoon=0)  # the same facts, emitted again
    assert (view.statistics(), view.rollout_report()) == once
    assert rows(view, "decisions") == 0
    # The memory of what left goes with its day's counts.
    while view.prune(NOON + timedelta(days=1)):
        pass
    assert view.statistics()["decisions"]["total"] == 0
    assert rows(view, "decisions_left") == 0


async def test_with_a_retention_shorter_than_a_day_what_left_is_forgotten_a_retention_later(
    view: OpsView,
) -> None:
    """The memory of the decisions that left (``decisions_left``) went only with their
    day: with a retention shorter than a day it held every decision of the day, and the
    view's file grew through a steady run (stop 42's 20-minute ``./tasks bench-steady``
    at a 30-s retention: +12.2 % over its second ten minutes, all of it this memory). It
    now also goes one retention after its decision left: what is emitted again (a hub's
    crash, a version decided again) comes within minutes. The day's counts stay."""
    feed = OpsFeed(
        ClientConfig(bootstrap_servers="unused:9092"), view, OpsState(), retention_s=60.0
    )
    facts = Feed()
    view.apply(
        decided_at(facts, f"26FRMEM{n:011d}", "RELEASE", NOON - 10 * _MINUTE) for n in range(40)
    )
    counted = view.statistics()
    # A minute's retention: the decisions leave a minute after they were made, and are
    # remembered for a minute more.
    assert await feed.prune_if_due((NOON - 8.5 * _MINUTE).timestamp())
    assert (rows(view, "decisions"), rows(view, "decisions_left")) == (0, 40)
    assert await feed.prune_if_due((NOON - 8.25 * _MINUTE).timestamp())
    assert rows(view, "decisions_left") == 40  # within a retention of leaving: remembered
    assert await feed.prune_if_due(NOON.timestamp())
    assert rows(view, "decisions_left") == 0
    assert view.statistics() == counted


def test_a_decision_emitted_again_within_a_retention_of_leaving_is_still_not_counted_twice(
    view: OpsView,
) -> None:
    fill_one_day(view, morning=1, afternoon=0)
    once = view.statistics()
    # The morning's decisions (6:00) leave at noon and are remembered from 5:00 on.
    while view.prune(NOON, forget_left_before=NOON.replace(hour=5)):
        pass
    assert rows(view, "decisions") == 0 < rows(view, "decisions_left")
    fill_one_day(view, morning=1, afternoon=0)  # the same facts, emitted again
    assert view.statistics() == once


def test_a_view_made_before_decisions_left_were_dated_forgets_them_with_their_day(
    tmp_path: Path,
) -> None:
    """Its rows have no time: they leave with their day, as they did."""
    path = tmp_path / "view.sqlite3"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE decisions_left (reference TEXT NOT NULL, version INTEGER NOT NULL, "
        "day TEXT NOT NULL, PRIMARY KEY (reference, version))"
    )
    old.execute(
        "INSERT INTO decisions_left VALUES ('26FROLDLEFT0000001', 1, ?)", (TODAY.isoformat(),)
    )
    old.commit()
    old.close()
    view = OpsView(path, TOPICS)
    while view.prune(NOON, forget_left_before=NOON + timedelta(hours=1)):
        pass
    assert rows(view, "decisions_left") == 1
    while view.prune(NOON + timedelta(days=1)):
        pass
    assert rows(view, "decisions_left") == 0


def test_a_receipt_read_after_its_declarations_events_left_leaves_with_the_next_prune(
    view: OpsView, tmp_path: Path
) -> None:
    """A receipt older than two retentions, read once the declaration's events have left
    (the facts topic read behind the status topic), leaves no declarant behind once the
    view is pruned again, in a view made before receipts were dated too; one younger is
    kept, its events perhaps not read yet (they may be read after it: the review of stop
    54, test_a_receipt_read_ahead_of_its_events_is_kept_until_they_are_read.py)."""
    feed = Feed()
    early, recent = "26FRRCP00000000001", "26FRRCP00000000002"
    view.apply([feed.status(early, StatusKind.RECEIVED, minutes=-60)])
    while view.prune(NOON):
        pass
    view.apply(
        [feed.received(early, at=NOON - 60 * _MINUTE), feed.received(recent, at=NOON + _MINUTE)]
    )
    while view.prune(NOON + RETENTION, forget_left_before=NOON):
        pass
    assert view.declarant_of(early) is None
    assert view.declarant_of(recent) == EORI
    assert rows(view, "declarants") == 1


def test_a_view_made_before_receipts_were_dated_lets_their_undated_rows_leave(
    tmp_path: Path,
) -> None:
    path = tmp_path / "view.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE declarants (reference TEXT NOT NULL, version INTEGER NOT NULL, "
            "declarant TEXT NOT NULL, PRIMARY KEY (reference, version))"
        )
        old.execute("INSERT INTO declarants VALUES ('26FRRCP00000000009', 1, ?)", (EORI,))
    view = OpsView(path, TOPICS)
    assert view.declarant_of("26FRRCP00000000009") == EORI
    while view.prune(NOON, forget_left_before=NOON - RETENTION):
        pass
    assert view.declarant_of("26FRRCP00000000009") is None


def test_no_index_is_kept_that_no_query_uses(view: OpsView) -> None:
    """The decisions leave by their time (``decisions_by_time``); by day, only counters."""
    indexes = {
        row[0] for row in view._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
    }
    assert "decisions_by_day" not in indexes
    assert "decisions_by_time" in indexes
