"""Consumer lag: how far each consumer group is behind the end of each partition.

Pure functions over offsets; :mod:`gun_hub.ops.lag_monitor` fetches the offsets from the
cluster. Lag is measured as kafka_exporter measures it: end offset (high watermark) minus
the group's committed offset; a partition the group never committed counts its whole
content as lag (the group has read none of it).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class PartitionLag(BaseModel):
    model_config = ConfigDict(frozen=True)

    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group never committed on this partition
    end: int
    lag: int


class GroupLag(BaseModel):
    model_config = ConfigDict(frozen=True)

    group: str
    lag: int
    growing: bool


class LagSnapshot(BaseModel):
    """One measurement of every watched group, published on ``gun.ops.lag``."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    groups: list[GroupLag]
    partitions: list[PartitionLag]

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    def group(self, name: str) -> GroupLag | None:
        return next((g for g in self.groups if g.group == name), None)


TopicPartition = tuple[str, int]


def partition_lags(
    group: str,
    committed: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
    starts: Mapping[TopicPartition, int] | None = None,
) -> list[PartitionLag]:
    """Lag of ``group`` on every partition of the topics it reads (``ends``).

    Without a commit the lag is what the partition still holds (end minus log start).
    """
    starts = starts or {}
    lags = []
    for (topic, partition), end in sorted(ends.items()):
        done = committed.get((topic, partition))
        floor = done if done is not None else starts.get((topic, partition), 0)
        lags.append(
            PartitionLag(
                group=group,
                topic=topic,
                partition=partition,
                committed=done,
                end=end,
                lag=max(0, end - floor),
            )
        )
    return lags


class GrowthWatch:
    """Flags a group whose total lag rose at each of its last ``samples`` measurements.

    A single rise is ordinary (a burst arriving); a lag that keeps rising means the group
    consumes slower than producers write, or not at all.
    """

    def __init__(self, samples: int = 3) -> None:
        self._samples = samples
        self._history: dict[str, deque[int]] = {}

    def observe(self, group: str, lag: int) -> bool:
        history = self._history.setdefault(group, deque(maxlen=self._samples + 1))
        history.append(lag)
        if len(history) <= self._samples:
            return False
        return all(later > earlier for earlier, later in itertools.pairwise(history))


def snapshot(at: datetime, lags: Iterable[PartitionLag], growth: GrowthWatch) -> LagSnapshot:
    """Aggregate partition lags per group and flag growing ones."""
    partitions = list(lags)
    totals: dict[str, int] = {}
    for lag in partitions:
        totals[lag.group] = totals.get(lag.group, 0) + lag.lag
    groups = [
        GroupLag(group=group, lag=total, growing=growth.observe(group, total))
        for group, total in sorted(totals.items())
    ]
    return LagSnapshot(at=at, groups=groups, partitions=partitions)
