"""The statistics count by UTC day, say so, and every time the officers read is UTC.

The hub's clock is UTC and a decision's day is its UTC date: in Paris, a decision at 00:30
local time (23:30 UTC) counts on the day before. Nothing said so, while a document's
``last_used`` and the dashboard's dead letters were shown in the view host's local time
(review stop 37-s, F7). The answers now name the zone of their days, a decision dated in
another offset counts on its UTC day, and the times are UTC (ISO 8601, ``+00:00``), as
the history's and the dead-letter desk's already were.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from gun_contract.dead_letter import HEADER_ERROR_KIND
from gun_hub.ops.facts import DecisionFact, DocumentUse, RolloutUse, fact_bytes
from gun_hub.ops.view import OpsView
from tests.unit.test_operations_view import EORI, NOON, TOPICS, Feed

PARIS_WINTER = timezone(timedelta(hours=1))


@pytest.fixture
def in_paris(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The view's host set to Paris time (what an officer's server may well be)."""
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _decided(reference: str, at: datetime) -> bytes:
    return fact_bytes(
        DecisionFact(
            reference=reference,
            version=1,
            declarant_eori=EORI,
            stage="LODGED",
            outcome="RELEASE",
            decided_at=at,
            authorities=["dgal"],
            documents=[
                DocumentUse(
                    goods_item=1,
                    code="N853",
                    reference="CHEDP.1",
                    authority="dgal",
                    verdict="VALID",
                )
            ],
            rollout=[RolloutUse(authority="dgal", mode="enforce")],
        )
    )


def test_statistics_days_are_utc_days(tmp_path: object, in_paris: None) -> None:
    view, feed = OpsView(f"{tmp_path}/v.sqlite3", TOPICS), Feed()
    late_utc = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)  # 00:30 on the 23rd in Paris
    # The same instant written with Paris's offset: still the 22nd, the UTC day.
    paris = datetime(2026, 11, 23, 0, 30, tzinfo=PARIS_WINTER)
    view.apply(
        [
            feed.record(TOPICS.facts, _decided("26FR000690I0000001", late_utc)),
            feed.record(TOPICS.facts, _decided("26FR000690I0000002", paris)),
        ]
    )
    day = date(2026, 11, 22)
    stats = view.statistics(day, day)
    assert stats["timezone"] == "UTC"
    assert stats["decisions"]["by_day"] == {"2026-11-22": {"RELEASE": 2}}
    assert view.statistics(date(2026, 11, 23), date(2026, 11, 23))["decisions"]["total"] == 0
    [report] = view.rollout_report(day, day)
    assert report["declarations"] == 2


def test_the_times_officers_read_are_utc(tmp_path: object, in_paris: None) -> None:
    view, feed = OpsView(f"{tmp_path}/v.sqlite3", TOPICS), Feed()
    view.apply(
        [
            feed.record(TOPICS.facts, _decided("26FR000690I0000001", NOON)),
            feed.record(TOPICS.dlq, b"x", [(HEADER_ERROR_KIND, b"XML_MALFORMED")]),
        ]
    )
    [used] = view.documents_of_declarant(EORI)
    assert used["last_used"] == "2026-11-22T12:00:00+00:00"
    [letter] = view.recent_dead_letters()
    assert letter["at"] == NOON.isoformat()  # the record's time, 12:00 UTC
