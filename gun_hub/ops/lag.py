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

from pydantic import AwareDatetime, BaseModel, ConfigDict


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


class TransactionHold(BaseModel):
    """Records a committed reader cannot read yet on one partition: those from an open
    transaction's first record (the stable end) to the end, whoever wrote them."""

    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int
    stable_end: int
    records: int
    since: datetime  # first measured at this stable end


class LagSnapshot(BaseModel):
    """One measurement of every watched group, published on ``gun.ops.lag``."""

    model_config = ConfigDict(frozen=True)

    # With its time zone: a naive time compared with a kept one raised TypeError, and the
    # view process stopped at it (stop 34).
    at: AwareDatetime
    groups: list[GroupLag]
    partitions: list[PartitionLag]
    held: list[TransactionHold] = []  # absent from snapshots before stop 32

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


def transaction_holds(
    ends: Mapping[TopicPartition, int],
    stable_ends: Mapping[TopicPartition, int],
    before: Iterable[TransactionHold],
    at: datetime,
) -> list[TransactionHold]:
    """The partitions whose stable end (what a committed reader may read up to) is short
    of their end: an open transaction holds what follows its first record. A hold keeps
    the date it was first measured at while its stable end stays put (``before``: the
    last measurement's; kept as it was where the stable end could not be read): the broker
    aborts a transaction past its timeout, so a hold much older than that is a
    transaction hanging (KAFKA-12671), for an operator to abort."""
    earlier = {(h.topic, h.partition, h.stable_end): h.since for h in before}
    unread = {(h.topic, h.partition): h for h in before}
    held = []
    for (topic, partition), end in sorted(ends.items()):
        stable = stable_ends.get((topic, partition))
        if stable is None:  # not read this time: as it was (a hanging one stays dated)
            if (topic, partition) in unread:
                held.append(unread[(topic, partition)])
            continue
        if stable >= end:
            continue
        since = earlier.get((topic, partition, stable), at)
        held.append(
            TransactionHold(
                topic=topic,
                partition=partition,
                stable_end=stable,
                records=end - stable,
                since=since,
            )
        )
    return held


def snapshot(
    at: datetime,
    lags: Iterable[PartitionLag],
    growth: GrowthWatch,
    held: Iterable[TransactionHold] = (),
) -> LagSnapshot:
    """Aggregate partition lags per group and flag growing ones."""
    partitions = list(lags)
    totals: dict[str, int] = {}
    for lag in partitions:
        totals[lag.group] = totals.get(lag.group, 0) + lag.lag
    groups = [
        GroupLag(group=group, lag=total, growing=growth.observe(group, total))
        for group, total in sorted(totals.items())
    ]
    return LagSnapshot(at=at, groups=groups, partitions=partitions, held=list(held))
