"""A group whose commit is below the partition's log start lags by what is still there to
read, and what retention deleted before it read it is named apart (carried defect "lag
below the log's start").

A consumer back after a long stop finds retention moved the log start past its commit:
the records between its commit and the log start are gone, unread. The lag monitor
reads each partition's log start (ListOffsets, earliest: ``beginning_offsets``) but
measured the lag from the commit as kafka_exporter does, ``end - committed``: records
nobody can read any more counted as a backlog to work off, in ``kafka_consumergroup_lag``,
the snapshot on ``gun.ops.lag`` and ``gun-hub lag``, and nothing told operations that
they were lost. The readable lag is ``end - log start``; the lost ones, ``log start -
committed``, are a field of the partition's and the group's lag, a series of their own
and a warning.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, generate_latest

from gun_hub.ops.lag import GrowthWatch, LagSnapshot, partition_lags, snapshot
from gun_hub.ops.lag_metrics import OpsCollector, OpsState
from gun_hub.ops.lag_monitor import LagMonitor, WatchedGroup
from tests.unit.test_an_empty_answer_is_said_not_a_crash import lag_measuring
from tests.unit.test_lag_monitor_survives_poison import FakeAdmin, FakeOffsets

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
DECISIONS = "gun.decisions"


def test_a_commit_below_the_log_start_lags_by_what_is_left_and_names_what_was_lost() -> None:
    [lag] = partition_lags(
        "gun-clearance", {(DECISIONS, 0): 10}, {(DECISIONS, 0): 100}, {(DECISIONS, 0): 60}
    )
    assert lag.lag == 40, "records retention deleted were counted as readable lag"
    assert (lag.committed, lag.log_start, lag.end) == (10, 60, 100)
    assert lag.lost == 50


def test_a_commit_at_or_above_the_log_start_loses_nothing() -> None:
    lags = partition_lags(
        "g",
        {("t", 0): 60, ("t", 1): 75},
        {("t", 0): 100, ("t", 1): 100},
        {("t", 0): 60, ("t", 1): 60},
    )
    assert [(p.lag, p.lost) for p in lags] == [(40, 0), (25, 0)]


def test_a_partition_never_committed_lags_by_what_it_holds_and_names_nothing_lost() -> None:
    """No commit, no point to count a loss from: what retention deleted before the group
    ever read is not known (docs/operations.md, "Lag monitor")."""
    [lag] = partition_lags("g", {}, {("t", 0): 100}, {("t", 0): 30})
    assert (lag.committed, lag.log_start, lag.lag, lag.lost) == (None, 30, 70, 0)


def test_everything_deleted_past_the_commit_leaves_no_lag_and_names_the_loss() -> None:
    [lag] = partition_lags("g", {("t", 0): 5}, {("t", 0): 90}, {("t", 0): 90})
    assert (lag.lag, lag.lost) == (0, 85)


def lost_below_the_start() -> LagSnapshot:
    lags = partition_lags(
        "gun-clearance",
        {(DECISIONS, 0): 10, (DECISIONS, 1): 70},
        {(DECISIONS, 0): 100, (DECISIONS, 1): 100},
        {(DECISIONS, 0): 60, (DECISIONS, 1): 60},
    )
    lags += partition_lags("gun-hub", {("gun.declarations", 0): 5}, {("gun.declarations", 0): 9})
    return snapshot(NOW, lags, GrowthWatch())


def test_a_group_counts_what_it_lost_apart_from_its_lag() -> None:
    measured = lost_below_the_start()
    by_group = {g.group: (g.lag, g.lost) for g in measured.groups}
    assert by_group == {"gun-clearance": (40 + 30, 50), "gun-hub": (4, 0)}
    # on gun.ops.lag and read back by the view
    assert LagSnapshot.model_validate_json(measured.to_bytes()) == measured


def test_a_snapshot_from_before_the_loss_was_counted_is_still_read() -> None:
    old = (
        b'{"at":"2026-11-22T12:00:00Z","groups":[{"group":"g","lag":1,"growing":false}],'
        b'"partitions":[{"group":"g","topic":"t","partition":0,"committed":1,"end":2,'
        b'"lag":1}]}'
    )
    read = LagSnapshot.model_validate_json(old)
    assert (read.groups[0].lost, read.partitions[0].lost, read.partitions[0].log_start) == (
        0,
        0,
        None,
    )


def exposition(state: OpsState) -> str:
    registry = CollectorRegistry()
    registry.register(OpsCollector(state))
    return generate_latest(registry).decode()


def test_the_lag_exposed_is_what_is_left_and_the_loss_a_series_of_its_own() -> None:
    text = exposition(OpsState(lag=lost_below_the_start()))
    where = f'consumergroup="gun-clearance",partition="0",topic="{DECISIONS}"'
    assert f"kafka_consumergroup_lag{{{where}}} 40.0" in text
    assert f"gun_hub_consumergroup_lost_to_retention_records{{{where}}} 50.0" in text
    # only where something was lost: a partition that lost nothing has no such series
    lost = [
        line
        for line in text.splitlines()
        if line.startswith("gun_hub_consumergroup_lost_to_retention_records{")
    ]
    assert lost == [f"gun_hub_consumergroup_lost_to_retention_records{{{where}}} 50.0"]


def test_gun_hub_lag_prints_what_was_lost_apart_from_the_lag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = lag_measuring(monkeypatch, [lost_below_the_start()])
    assert result.exit_code == 0, repr(result.exception)
    [header, *rows] = result.output.splitlines()[1:]
    assert "lost to retention" in header
    by_group = {row.split()[0]: row.split()[2:4] for row in rows}
    assert by_group == {"gun-clearance": ["70", "50"], "gun-hub": ["4", "-"]}


class LogStartPast(FakeOffsets):
    """Retention moved the log start of every partition to offset 6 (the end is 10)."""

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 6)


async def test_the_monitor_reads_the_log_start_and_warns_once_of_what_was_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """FakeAdmin's group ``hub`` committed ``decl`` partition 0 at 3, below the log
    start; ``decl`` partition 1 and ``resp`` it never committed."""
    offsets = LogStartPast()
    monitor = LagMonitor(
        None,  # type: ignore[arg-type]
        [WatchedGroup("hub", ("decl", "resp"))],
        admin=FakeAdmin(),
        offsets=offsets,
        stable_offsets=offsets,
    )
    with caplog.at_level(logging.WARNING, logger="gun_hub.ops.lag_monitor"):
        first = await monitor.measure()
        second = await monitor.measure()
    assert first.partitions == second.partitions
    assert [p.lag for p in first.partitions] == [4, 4, 4]
    by_partition = {(p.topic, p.partition): (p.lag, p.lost) for p in first.partitions}
    assert by_partition == {("decl", 0): (4, 3), ("decl", 1): (4, 0), ("resp", 0): (4, 0)}
    [group] = first.groups
    assert (group.lag, group.lost) == (12, 3)
    warned = [r for r in caplog.records if "retention" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in warned]  # once, not every 5 s
    said = warned[0].getMessage()
    assert all(part in said for part in ("hub", "decl[0]", "3", "6")), said
