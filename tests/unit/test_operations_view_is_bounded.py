"""The operations view prunes what is older than its retention and answers its counts
from counters kept as it is fed, not by scanning every decision (issue 12, bounded
state; gun_hub/ops/view.py)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from gun_contract.dead_letter import HEADER_COMPONENT, HEADER_ERROR_KIND, HEADER_ERROR_REASON
from gun_contract.kafka.client import ClientConfig
from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.feed import OpsFeed
from gun_hub.ops.lag_metrics import OpsState
from gun_hub.ops.view import FeedRecord, OpsView
from tests.unit.test_operations_view import NOON, TODAY, TOPICS, Feed, use

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
            feed.received("26FROLD00000000001"),
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
    view._db.set_authorizer(None)
    assert read.isdisjoint({"decisions", "decision_documents", "dead_letters"}), read


def test_the_counters_follow_a_decision_applied_again_or_replaced(view: OpsView) -> None:
    feed = Feed()
    dgal = [use("N853", "CHEDP.1", "dgal")]
    view.apply([feed.decided("26FRA0000000000001", "RELEASE", dgal)])
    view.apply([feed.decided("26FRA0000000000001", "RELEASE", dgal)])  # after a crash
    assert view.outcome_counts() == {"RELEASE": 1}
    view.apply([feed.decided("26FRA0000000000001", "REFUSE", [use("N853", "CHEDP.1", "dgal")])])
    assert view.outcome_counts() == {"REFUSE": 1}
    stats = view.statistics()["decisions"]
    assert stats["by_authority"] == {"dgal": {"REFUSE": 1}}
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
