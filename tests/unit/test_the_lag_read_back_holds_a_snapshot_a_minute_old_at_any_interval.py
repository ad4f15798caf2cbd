"""Review of the read-back at a lag monitor's start (docs/adr/0029): ``recent_snapshots``
reads from ``seen_for_s`` plus 30 s before the newest record, and ``counted_before``
trusts only snapshots ``seen_for_s`` older than the newest; so what is trusted is what
was published in a 30 s slot. ``lag_interval_s`` (settings: any value above 0) longer
than that slot leaves none in it: a worker measuring every two minutes, restarted mid-loss
after showing it for ten minutes, reads back nothing it trusts, counts the loss again,
and pages it a second time (the defect the change closes, stop 58).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import TopicPartition

from gun_contract.kafka.client import ClientConfig
from gun_hub.ops import lag_follower
from gun_hub.ops.lag import LagSnapshot, PartitionLag, counted_before
from tests.unit.test_records_a_group_lost_to_retention_are_counted_once_and_page import (
    DECISIONS,
    SEEN_FOR_S,
    T0,
)

TOPIC = "gun.ops.lag"
LAG_INTERVAL_S = 120.0


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    timestamp: int
    value: bytes


@dataclass
class Found:
    offset: int


class OnePartition:
    """``gun.ops.lag`` with one partition holding ``records``: a reader of it."""

    def __init__(self, records: list[Record]) -> None:
        self.records = records
        self.at = 0

    def assign(self, partitions: list[TopicPartition]) -> None:
        return None

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.records) for tp in partitions}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.at = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.at

    async def getmany(self, *tps: TopicPartition, timeout_ms: int = 0) -> dict[Any, Any]:
        read, self.at = self.records[self.at :], len(self.records)
        return {tps[0]: read} if read else {}

    async def offsets_for_times(self, times: dict[TopicPartition, int]) -> dict[Any, Any]:
        return {
            tp: next((Found(r.offset) for r in self.records if r.timestamp >= t), None)
            for tp, t in times.items()
        }

    async def stop(self) -> None:
        return None


def showing_the_loss(second: float, by: str = "") -> LagSnapshot:
    """A snapshot ``second`` s after T0, by the process ``by``: the clearance system's
    reader of gun.decisions committed at 10, below the log start 60 (50 lost)."""
    return LagSnapshot(
        at=T0 + timedelta(seconds=second),
        groups=[],
        partitions=[
            PartitionLag(
                group="gun-clearance",
                topic=DECISIONS,
                partition=0,
                committed=10,
                end=1000,
                lag=940,
                log_start=60,
                lost=50,
            )
        ],
        by=by,
    )


def on_the_topic(shots: list[LagSnapshot]) -> OnePartition:
    """``shots`` published in the order of their dates on the one partition of
    ``gun.ops.lag``, each record dated by its producer a moment after the snapshot."""
    ordered = sorted(shots, key=lambda s: s.at)
    return OnePartition(
        [
            Record(TOPIC, 0, n, int(s.at.timestamp() * 1000) + 200, s.to_bytes())
            for n, s in enumerate(ordered)
        ]
    )


async def read_back(
    monkeypatch: pytest.MonkeyPatch, reader: OnePartition, now_s: float
) -> list[LagSnapshot]:
    """What ``recent_snapshots`` reads back of ``reader``'s topic at ``now_s``."""

    async def one_partition(connect: Any, topic: str) -> list[int]:
        return [0]

    async def started(consumer: Any) -> None:
        return None

    monkeypatch.setattr(lag_follower, "topic_partitions", one_partition)
    monkeypatch.setattr(lag_follower, "reader_without_group", lambda *a, **k: reader)
    monkeypatch.setattr(lag_follower, "start_or_close", started)
    return await lag_follower.recent_snapshots(
        ClientConfig(bootstrap_servers="kafka:9092"),
        TOPIC,
        SEEN_FOR_S,
        clock=lambda: T0 + timedelta(seconds=now_s),
    )


async def test_a_loss_shown_for_ten_minutes_is_read_back_at_a_two_minute_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shots = [showing_the_loss(LAG_INTERVAL_S * n) for n in range(6)]
    snapshots = await read_back(monkeypatch, on_the_topic(shots), now_s=LAG_INTERVAL_S * 6)
    assert counted_before(snapshots, seen_for_s=SEEN_FOR_S) == {
        ("gun-clearance", DECISIONS, 0): 60
    }, (
        f"read back {len(snapshots)} snapshot(s), none a minute older than the newest: the "
        "loss shown for ten minutes is counted and paged again"
    )
