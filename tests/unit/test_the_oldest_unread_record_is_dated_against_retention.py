"""How old each group's oldest unread record is, and how long its topic's retention
leaves it (review stop 38-L, L1: the hub named records deleted unread only once they
were lost; an operator needs the page before retention deletes anything).

The age is the broker timestamp of the first record from where the group's next read
begins (its commit point, or the log's start), only where the group lags; the headroom is
the topic's retention.ms, as the broker describes it, minus that age.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import TopicAuthorizationFailedError
from prometheus_client import CollectorRegistry, generate_latest

from gun_contract.kafka.topic_settings import deleted_after_ms
from gun_hub.ops.first_records import FirstRecords
from gun_hub.ops.lag import (
    GrowthWatch,
    LagSnapshot,
    partition_lags,
    snapshot,
    unread_ages,
    unread_positions,
)
from gun_hub.ops.lag_metrics import OpsCollector, OpsState
from tests.unit.test_an_empty_answer_is_said_not_a_crash import lag_measuring

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
DAY_S = 86400.0
WEEK_MS = 7 * 86400 * 1000
DECLARATIONS = "gun.declarations"
REQUESTS = "gun.requests.dgal"


def test_a_lagging_group_reads_on_from_its_commit_or_from_the_log_start() -> None:
    ends = {(DECLARATIONS, p): 9 for p in range(4)}
    starts = {
        (DECLARATIONS, 0): 0,
        (DECLARATIONS, 1): 4,
        (DECLARATIONS, 2): 3,
        (DECLARATIONS, 3): 0,
    }
    lags = partition_lags(
        "gun-hub", {(DECLARATIONS, 0): 5, (DECLARATIONS, 1): 2, (DECLARATIONS, 3): 9}, ends, starts
    )
    assert unread_positions(lags, starts) == {
        ("gun-hub", DECLARATIONS, 0): 5,  # its commit point
        ("gun-hub", DECLARATIONS, 1): 4,  # committed below the log start: what is left
        ("gun-hub", DECLARATIONS, 2): 3,  # never committed: the log start
        # partition 3 is caught up: nothing unread, so no age
    }


def test_the_age_is_the_first_unread_records_and_the_headroom_what_retention_leaves() -> None:
    positions = {
        ("gun-hub", DECLARATIONS, 0): 5,
        ("gun-hub", DECLARATIONS, 1): 4,
        ("gun-adapter-dgal", REQUESTS, 0): 3,
        ("gun-clearance", "gun.decisions", 0): 0,
    }
    first_records = {
        (DECLARATIONS, 0, 5): (5, NOW - timedelta(days=2)),
        # nothing found from (DECLARATIONS, 1, 4): only a transaction's marker after it
        (REQUESTS, 0, 3): (6, NOW - timedelta(days=8)),  # past retention, not deleted yet
        ("gun.decisions", 0, 0): (0, NOW - timedelta(hours=1)),
    }
    retention = {DECLARATIONS: WEEK_MS, REQUESTS: WEEK_MS, "gun.decisions": None}
    ages = unread_ages(positions, first_records, retention, NOW)
    assert [
        (a.group, a.topic, a.partition, a.offset, a.age_s, a.retention_s, a.headroom_s)
        for a in ages
    ] == [
        ("gun-adapter-dgal", REQUESTS, 0, 6, 8 * DAY_S, 7 * DAY_S, 0.0),
        ("gun-clearance", "gun.decisions", 0, 0, 3600.0, None, None),  # not deleted by age
        ("gun-hub", DECLARATIONS, 0, 5, 2 * DAY_S, 7 * DAY_S, 5 * DAY_S),
    ]


@pytest.mark.parametrize(
    ("config", "deleted_after"),
    [
        ({"cleanup.policy": "delete", "retention.ms": "604800000"}, 604800000),
        ({"cleanup.policy": "compact,delete", "retention.ms": "3600000"}, 3600000),
        ({"cleanup.policy": "delete", "retention.ms": "-1"}, None),  # kept for ever
        ({"cleanup.policy": "compact", "retention.ms": "604800000"}, None),  # never by age
        ({"cleanup.policy": "delete"}, None),  # not said
    ],
)
def test_the_retention_is_read_from_the_topics_configuration(
    config: dict[str, str], deleted_after: int | None
) -> None:
    assert deleted_after_ms(config) == deleted_after


def measured(ages_at: Mapping[tuple[str, int, int], tuple[int, datetime]]) -> LagSnapshot:
    ends = {(DECLARATIONS, 0): 10, (DECLARATIONS, 1): 10, (REQUESTS, 0): 4}
    starts = dict.fromkeys(ends, 0)
    lags = partition_lags("gun-hub", {(DECLARATIONS, 0): 3, (DECLARATIONS, 1): 10}, ends, starts)
    positions = unread_positions(lags, starts)
    retention = {DECLARATIONS: WEEK_MS, REQUESTS: 2 * 86400 * 1000}
    return snapshot(
        NOW, lags, GrowthWatch(), unread=unread_ages(positions, ages_at, retention, NOW)
    )


def test_each_group_shows_its_oldest_unread_record_and_least_headroom() -> None:
    taken = measured(
        {
            (DECLARATIONS, 0, 3): (3, NOW - timedelta(days=1)),
            (REQUESTS, 0, 0): (0, NOW - timedelta(days=1, hours=12)),
        }
    )
    [group] = taken.groups
    assert group.oldest_unread_age_s == 1.5 * DAY_S
    assert group.retention_headroom_s == 0.5 * DAY_S  # the requests topic keeps 2 days
    # published on gun.ops.lag and read back by the view
    assert LagSnapshot.model_validate_json(taken.to_bytes()) == taken


def test_a_snapshot_from_before_the_ages_is_still_read() -> None:
    old = (
        b'{"at":"2026-11-22T12:00:00Z","groups":[{"group":"g","lag":1,"growing":false}],'
        b'"partitions":[]}'
    )
    read = LagSnapshot.model_validate_json(old)
    assert read.unread == []
    assert read.groups[0].oldest_unread_age_s is None


def exposition(state: OpsState) -> str:
    registry = CollectorRegistry()
    registry.register(OpsCollector(state))
    return generate_latest(registry).decode()


def test_the_age_headroom_and_retention_are_exposed_only_where_a_group_lags() -> None:
    state = OpsState(
        lag=measured(
            {(DECLARATIONS, 0, 3): (3, NOW - timedelta(days=6)), (REQUESTS, 0, 0): (0, NOW)}
        )
    )
    text = exposition(state)
    where = 'consumergroup="gun-hub",partition="0",topic="gun.declarations"'
    assert f"gun_hub_consumergroup_oldest_unread_age_seconds{{{where}}} 518400.0" in text
    assert f"gun_hub_consumergroup_retention_headroom_seconds{{{where}}} 86400.0" in text
    assert 'gun_hub_topic_retention_seconds{topic="gun.declarations"} 604800.0' in text
    assert 'gun_hub_topic_retention_seconds{topic="gun.requests.dgal"} 172800.0' in text
    # partition 1 is caught up: no age, no headroom
    assert 'partition="1",topic="gun.declarations"' not in text.split("oldest_unread", 1)[1]

    state.lag = measured({})  # a later measurement that dated nothing: nothing stale shown
    text = exposition(state)
    assert "gun_hub_consumergroup_oldest_unread_age_seconds{" not in text
    assert "gun_hub_consumergroup_retention_headroom_seconds{" not in text


# -- reading the first records: light ------------------------------------------------


class FakeLog:
    """The part of an aiokafka consumer ``FirstRecords`` uses, over an in-memory log of
    (offset, timestamp ms) per partition; counts what it fetches."""

    class Record:
        def __init__(self, offset: int, timestamp: int) -> None:
            self.offset = offset
            self.timestamp = timestamp

    def __init__(
        self, logs: dict[TopicPartition, list[tuple[int, int]]], refused: Collection[str] = ()
    ) -> None:
        self.logs = logs
        self.refused = set(refused)
        self.positions: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self.fetched: list[tuple[TopicPartition, int]] = []

    def assign(self, tps: list[TopicPartition]) -> None:
        self.positions = dict.fromkeys(tps, 0)
        self.paused = set()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def pause(self, *tps: TopicPartition) -> None:
        self.paused |= set(tps)

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def getmany(
        self, *tps: TopicPartition, timeout_ms: int
    ) -> dict[TopicPartition, list[FakeLog.Record]]:
        # One batch of one partition a fetch, as with fetch_max_bytes 1.
        for tp in tps:
            if tp in self.paused:
                continue
            if tp.topic in self.refused:  # no Read right: aiokafka raises, naming the topic
                self.fetched.append((tp, -1))
                raise TopicAuthorizationFailedError(tp.topic)
            at = self.positions[tp]
            batch = [r for r in self.logs[tp] if r[0] >= at][:2]
            self.fetched.append((tp, at))
            self.positions[tp] = batch[-1][0] + 1 if batch else at + 1
            return {tp: [FakeLog.Record(*r) for r in batch]}
        return {}


async def test_a_position_that_does_not_move_is_fetched_once() -> None:
    stuck, moving = TopicPartition(DECLARATIONS, 0), TopicPartition(DECLARATIONS, 1)
    fake = FakeLog(
        {
            stuck: [(2, 1_000), (3, 2_000)],
            moving: [(0, 5_000), (1, 6_000), (2, 7_000)],
        }
    )
    # dated anew at every measurement: the interval is the next test's
    reader = FirstRecords(fake, redate_after_s=0)
    stable_ends = {(DECLARATIONS, 0): 4, (DECLARATIONS, 1): 3}
    first = await reader.find({(DECLARATIONS, 0, 2), (DECLARATIONS, 1, 0)}, stable_ends)
    assert first[(DECLARATIONS, 0, 2)] == (2, datetime.fromtimestamp(1, UTC))
    assert first[(DECLARATIONS, 1, 0)] == (0, datetime.fromtimestamp(5, UTC))
    fake.fetched.clear()
    again = await reader.find({(DECLARATIONS, 0, 2), (DECLARATIONS, 1, 1)}, stable_ends)
    assert again[(DECLARATIONS, 0, 2)] == first[(DECLARATIONS, 0, 2)]
    assert again[(DECLARATIONS, 1, 1)] == (1, datetime.fromtimestamp(6, UTC))
    assert fake.fetched == [(moving, 1)]  # the partition that stood still: not fetched again
    assert fake.paused == {moving}  # nothing left fetching between measurements


async def test_a_position_with_only_markers_up_to_the_stable_end_has_no_record() -> None:
    tp = TopicPartition(REQUESTS, 0)
    fake = FakeLog({tp: [(0, 1_000)]})  # offset 1: a transaction's commit marker
    reader = FirstRecords(fake)
    assert await reader.find({(REQUESTS, 0, 1)}, {(REQUESTS, 0): 2}) == {}
    assert fake.fetched == [(tp, 1)]
    assert await reader.find({(REQUESTS, 0, 1)}, {(REQUESTS, 0): 2}) == {}
    assert fake.fetched == [(tp, 1)]  # known empty up to that stable end: not read again
    # at or past the stable end (an open transaction's first record): nothing to read
    assert await reader.find({(REQUESTS, 0, 2)}, {(REQUESTS, 0): 2}) == {}
    assert fake.fetched == [(tp, 1)]


async def test_a_topic_it_may_not_read_is_left_out_and_tried_again_later() -> None:
    """The hub's principal may not read the adapters' request topics (secured profile):
    those are not dated, the hub's own inputs still are, and the refusal (which aiokafka
    logs as a warning) is not met at every measurement."""
    requests, declarations = TopicPartition(REQUESTS, 0), TopicPartition(DECLARATIONS, 0)
    fake = FakeLog({requests: [(0, 1_000)], declarations: [(0, 2_000)]}, refused={REQUESTS})
    now = [0.0]
    reader = FirstRecords(fake, refused_retry_s=600, clock=lambda: now[0])
    wanted = {(REQUESTS, 0, 0), (DECLARATIONS, 0, 0)}
    ends = {(REQUESTS, 0): 1, (DECLARATIONS, 0): 1}
    assert set(await reader.find(wanted, ends)) == {(DECLARATIONS, 0, 0)}
    assert reader.refused == {REQUESTS}
    asked = len(fake.fetched)
    now[0] = 300.0
    await reader.find(wanted, ends)
    assert len(fake.fetched) == asked  # not asked again so soon (declarations: remembered)
    assert reader.refused == {REQUESTS}
    now[0] = 700.0
    fake.refused = set()  # the Read right granted meanwhile
    assert set(await reader.find(wanted, ends)) == wanted
    assert reader.refused == set()


def test_gun_hub_lag_prints_the_oldest_unread_record_and_the_retention_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The operator's tool when no hub worker runs (and so nothing measures for
    /metrics): the same figures, from the cluster directly."""
    taken = measured({(DECLARATIONS, 0, 3): (3, NOW - timedelta(days=5, hours=6, minutes=20))})
    result = lag_measuring(monkeypatch, [taken])
    assert result.exit_code == 0, repr(result.exception)
    [header, *rows] = result.output.splitlines()[1:]
    assert header.split() == [
        *("group", "topic", "lag", "lost", "to", "retention"),
        *("oldest", "unread", "retention", "left"),
    ]
    by_topic = {row.split()[1]: row.split()[2:] for row in rows}
    assert by_topic[DECLARATIONS] == ["7", "-", "5d6h", "1d17h"]
    assert by_topic[REQUESTS] == ["4", "-", "-", "-"]  # lagging, its first record not dated


async def test_a_partition_its_group_moves_through_is_dated_at_most_once_an_interval() -> None:
    """At saturation every group lags a little on every partition and moves at every
    measurement: dating each new position every five seconds cost the hub 8 % of its
    throughput (stop 39, bench-hops). Within ``redate_after_s`` a partition dated at an
    earlier position gives that record's date: older than or as old as the first unread
    one, so the age shown is never less than the real one (a page comes early, never
    late), and by at most the interval plus the time that record waited."""
    tp = TopicPartition(DECLARATIONS, 0)
    fake = FakeLog({tp: [(0, 5_000), (1, 6_000), (2, 7_000), (3, 8_000)]})
    now = [0.0]
    reader = FirstRecords(fake, redate_after_s=60, clock=lambda: now[0])
    ends = {(DECLARATIONS, 0): 4}
    assert await reader.find({(DECLARATIONS, 0, 0)}, ends) == {
        (DECLARATIONS, 0, 0): (0, datetime.fromtimestamp(5, UTC))
    }
    now[0] = 5.0
    moved = await reader.find({(DECLARATIONS, 0, 1)}, ends)
    assert moved == {(DECLARATIONS, 0, 1): (0, datetime.fromtimestamp(5, UTC))}
    assert fake.fetched == [(tp, 0)]  # not fetched again within the interval
    now[0] = 30.0
    assert (await reader.find({(DECLARATIONS, 0, 2)}, ends))[(DECLARATIONS, 0, 2)][0] == 0
    now[0] = 61.0
    redated = await reader.find({(DECLARATIONS, 0, 2)}, ends)
    assert redated == {(DECLARATIONS, 0, 2): (2, datetime.fromtimestamp(7, UTC))}
    assert fake.fetched == [(tp, 0), (tp, 2)]


async def test_a_group_behind_the_position_dated_gets_its_own_date() -> None:
    """Two groups on one partition: a dating at a later position says nothing of the
    older record the slower group has not read."""
    tp = TopicPartition(DECLARATIONS, 0)
    fake = FakeLog({tp: [(0, 5_000), (1, 6_000), (2, 7_000)]})
    now = [0.0]
    reader = FirstRecords(fake, redate_after_s=60, clock=lambda: now[0])
    ends = {(DECLARATIONS, 0): 3}
    await reader.find({(DECLARATIONS, 0, 2)}, ends)
    now[0] = 5.0
    both = await reader.find({(DECLARATIONS, 0, 2), (DECLARATIONS, 0, 0)}, ends)
    assert both[(DECLARATIONS, 0, 0)] == (0, datetime.fromtimestamp(5, UTC))
    assert both[(DECLARATIONS, 0, 2)] == (2, datetime.fromtimestamp(7, UTC))


@pytest.mark.parametrize("timestamp_ms", [253_402_300_800_000, -62_135_596_800_001])
async def test_a_record_dated_outside_any_calendar_leaves_only_its_partition_undated(
    timestamp_ms: int,
) -> None:
    """``gun.dlq`` keeps its producers' timestamps, and every party may write it: one
    record dated year 10000 made the whole reading fail ("year 10000 is out of range"),
    and every group's backlog went undated, the declarations' too, for as long as the
    hub sat before it (review stop 40-F, F1)."""
    poisoned, declarations = TopicPartition("gun.dlq", 0), TopicPartition(DECLARATIONS, 0)
    fake = FakeLog({poisoned: [(0, timestamp_ms)], declarations: [(0, 2_000)]})
    reader = FirstRecords(fake)
    wanted = {("gun.dlq", 0, 0), (DECLARATIONS, 0, 0)}
    ends = {("gun.dlq", 0): 1, (DECLARATIONS, 0): 1}
    first = await reader.find(wanted, ends)
    assert first == {(DECLARATIONS, 0, 0): (0, datetime.fromtimestamp(2, UTC))}
    asked = len(fake.fetched)
    assert await reader.find(wanted, ends) == first
    assert len(fake.fetched) == asked  # not read again until more is written there
