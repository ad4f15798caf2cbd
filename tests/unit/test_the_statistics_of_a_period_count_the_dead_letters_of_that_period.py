"""``GET /stats?from=&to=`` (``gun-hub stats --from D --to D``) answers for the period it
names: its dead letters by kind are those of the period, as its decisions and overrides
are.

The answer says ``"from"`` and ``"to"``, the decisions, overrides and rollout figures are
counted per day within them, but ``dead_letters`` comes from ``dead_letter_counts``, one
counter per kind over everything the view keeps (the retention, 30 days): an officer asking
for yesterday reads a month of dead letters as yesterday's (``gun-hub stats`` prints them
under "decisions from D to D"). Each dead letter is kept with its time (``at``), so the
period could be answered.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from gun_contract.dead_letter import HEADER_ERROR_KIND
from gun_hub.ops.view import FeedRecord, OpsView
from tests.unit.test_operations_view import NOON, TODAY, TOPICS, Feed, use


def _letter(feed: Feed, kind: bytes, days_ago: int) -> FeedRecord:
    record = feed.record(TOPICS.dlq, b"x", [(HEADER_ERROR_KIND, kind)])
    at_ms = int((NOON - timedelta(days=days_ago)).timestamp() * 1000)
    return FeedRecord(
        record.topic, record.partition, record.offset, at_ms, record.value, record.headers
    )


def test_a_days_statistics_count_that_days_dead_letters(tmp_path: Path) -> None:
    view, feed = OpsView(tmp_path / "view.sqlite3", TOPICS), Feed()
    view.apply(
        [
            feed.decided("26FRD0000000000001", "RELEASE", [use("N853", "D1", "dgal")]),
            _letter(feed, b"XML_MALFORMED", 0),
            # Three weeks ago: within the retention, outside the day asked.
            *(_letter(feed, b"ENVELOPE_REPLAY", 21) for _ in range(5)),
        ]
    )
    today = view.statistics(TODAY, TODAY)
    assert today["decisions"]["total"] == 1
    assert today["dead_letters"] == {"total": 1, "by_kind": {"XML_MALFORMED": 1}}, (
        f"{TODAY}'s statistics list {today['dead_letters']}"
    )
