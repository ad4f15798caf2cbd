"""Consumer lag: how far each consumer group is behind the end of each partition.

Pure functions over offsets; :mod:`gun_hub.ops.lag_monitor` fetches the offsets from the
cluster. Lag is what the group can still read: the end offset (high watermark) minus
where its next read begins, its committed offset, or the log start where it never
committed. A commit below the log start (retention deleted records the group never read:
a consumer back after a long stop) lags by what the log still holds, end minus log start,
and the records between the commit and the log start are counted apart as ``lost``:
kafka_exporter counts them as lag, a backlog nobody can read any more, and nothing says
they are gone (carried defect "lag below the log's start"). A partition never committed
has no point to count a loss from: nothing is known lost there.

A lag in records does not say whether anything is about to be lost: retention deletes a
record by its age, read or not. So each lagging partition also has the age of the
group's oldest unread record (its broker timestamp: the log-append time on the
contract's topics) and what the topic's retention leaves of it (``UnreadAge``): a page
while there is still time to act, where ``INPUT_AGED_OUT_OF_THE_LOG`` and
``REQUEST_AGED_OUT_OF_THE_LOG`` can only name what is lost (review stop 38-L, L1).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict

# Any party may write gun.ops.lag on an unsecured cluster: NaN and Infinity are refused
# as the record is read, or the dashboard's answer carried them, which is no JSON, and
# the page stopped updating (review of stop 55).
_READ_AS_JSON = ConfigDict(frozen=True, allow_inf_nan=False)


class PartitionLag(BaseModel):
    model_config = _READ_AS_JSON

    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group never committed on this partition
    end: int
    lag: int  # what the group can still read: end minus max(committed, log start)
    # The partition's log start (None: not measured: a snapshot of an earlier release).
    log_start: int | None = None
    # Records retention deleted before the group read them: log start minus committed,
    # where the group committed below the log start; 0 otherwise (never committed: none
    # is known lost).
    lost: int = 0


class UnreadAge(BaseModel):
    """How old a group's oldest unread record on one partition is, and how long the topic's
    retention leaves it before it may be deleted unread."""

    model_config = _READ_AS_JSON

    group: str
    topic: str
    partition: int
    offset: int  # the oldest unread record's
    appended: AwareDatetime  # its broker timestamp
    age_s: float  # at the snapshot's time
    # The topic's retention.ms as the broker describes it; None: records are not deleted
    # by age (retention.ms -1, a compacted topic), or the configuration could not be read.
    retention_s: float | None
    # Retention minus age, never below 0: the least time before retention may delete
    # this record (Kafka deletes a segment once its newest record is that old, so a record
    # lives at least this long, often a segment's span longer).
    headroom_s: float | None


class GroupLag(BaseModel):
    model_config = _READ_AS_JSON

    group: str
    lag: int
    growing: bool
    # Over the group's partitions: records retention deleted before the group read them
    # (``PartitionLag.lost``; absent from earlier releases' snapshots).
    lost: int = 0
    # Over the group's partitions (None: nothing unread dated; absent before stop 39).
    oldest_unread_age_s: float | None = None
    retention_headroom_s: float | None = None


class TransactionHold(BaseModel):
    """Records a committed reader cannot read yet on one partition: those from an open
    transaction's first record (the stable end) to the end, whoever wrote them."""

    model_config = _READ_AS_JSON

    topic: str
    partition: int
    stable_end: int
    records: int
    since: datetime  # first measured at this stable end


class LagSnapshot(BaseModel):
    """One measurement of every watched group, published on ``gun.ops.lag``."""

    model_config = _READ_AS_JSON

    # With its time zone: a naive time compared with a kept one raised TypeError, and the
    # view process stopped at it (stop 34).
    at: AwareDatetime
    groups: list[GroupLag]
    partitions: list[PartitionLag]
    held: list[TransactionHold] = []  # absent from snapshots before stop 32
    unread: list[UnreadAge] = []  # absent from snapshots before stop 39
    # The measuring process that published it (``LagMonitor``: host, pid and a random
    # tag); empty in snapshots before stop 59. ``counted_before`` compares a process's
    # snapshots with its own only: two processes' clocks may differ.
    by: str = ""

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
    """Lag of ``group`` on every partition of the topics it reads (``ends``), from where
    its next read begins: its commit, or the log start (``starts``) where it never
    committed or committed below it; what retention deleted between its commit and the
    log start is ``lost``, never lag (see the module docstring).
    """
    starts = starts or {}
    lags = []
    for (topic, partition), end in sorted(ends.items()):
        done = committed.get((topic, partition))
        start = starts.get((topic, partition))
        floor = start or 0
        lost = 0
        if done is not None:
            lost = max(0, floor - done)
            floor = max(floor, done)
        lags.append(
            PartitionLag(
                group=group,
                topic=topic,
                partition=partition,
                committed=done,
                end=end,
                lag=max(0, end - floor),
                log_start=start,
                lost=lost,
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


def unread_positions(
    lags: Iterable[PartitionLag], starts: Mapping[TopicPartition, int]
) -> dict[tuple[str, str, int], int]:
    """Where each group's next read of each partition it lags on begins, by (group,
    topic, partition): its committed offset, or the log's start where it never committed
    or committed below it (retention deleted what lay between). A partition without lag
    has nothing unread, so no age: none is reported for it."""
    positions = {}
    for lag in lags:
        if lag.lag <= 0:
            continue
        start = starts.get((lag.topic, lag.partition), 0)
        done = lag.committed if lag.committed is not None else start
        positions[(lag.group, lag.topic, lag.partition)] = max(done, start)
    return positions


DatedRecords = Mapping[tuple[str, int, int], tuple[int, datetime]]
"""By (topic, partition, position): the offset and broker timestamp of the first record
at or after the position, where the broker returned one."""


def unread_ages(
    positions: Mapping[tuple[str, str, int], int],
    first_records: DatedRecords,
    retention_ms: Mapping[str, int | None],
    at: datetime,
) -> list[UnreadAge]:
    """The age of each group's oldest unread record (``unread_positions``), and how long
    retention leaves it. A position whose first record is not known (only transaction
    markers after it, or the broker did not answer in time) has no age."""
    ages = []
    for (group, topic, partition), position in sorted(positions.items()):
        found = first_records.get((topic, partition, position))
        if found is None:
            continue
        offset, appended = found
        age_s = max(0.0, (at - appended).total_seconds())
        retention = retention_ms.get(topic)
        retention_s = retention / 1000 if retention is not None else None
        ages.append(
            UnreadAge(
                group=group,
                topic=topic,
                partition=partition,
                offset=offset,
                appended=appended,
                age_s=age_s,
                retention_s=retention_s,
                headroom_s=max(0.0, retention_s - age_s) if retention_s is not None else None,
            )
        )
    return ages


def snapshot(
    at: datetime,
    lags: Iterable[PartitionLag],
    growth: GrowthWatch,
    held: Iterable[TransactionHold] = (),
    unread: Iterable[UnreadAge] = (),
    by: str = "",
) -> LagSnapshot:
    """Aggregate partition lags per group and flag growing ones; each group's oldest
    unread record and least retention headroom over its partitions."""
    partitions = list(lags)
    unread = list(unread)
    totals: dict[str, int] = {}
    lost: dict[str, int] = {}
    for lag in partitions:
        totals[lag.group] = totals.get(lag.group, 0) + lag.lag
        lost[lag.group] = lost.get(lag.group, 0) + lag.lost
    groups = []
    for group, total in sorted(totals.items()):
        ages = [u for u in unread if u.group == group]
        headrooms = [u.headroom_s for u in ages if u.headroom_s is not None]
        groups.append(
            GroupLag(
                group=group,
                lag=total,
                growing=growth.observe(group, total),
                lost=lost[group],
                oldest_unread_age_s=max((u.age_s for u in ages), default=None),
                retention_headroom_s=min(headrooms, default=None),
            )
        )
    return LagSnapshot(
        at=at, groups=groups, partitions=partitions, held=list(held), unread=unread, by=by
    )


def counted_before(
    snapshots: Iterable[LagSnapshot], seen_for_s: float
) -> dict[tuple[str, str, int], int]:
    """By (group, topic, partition): the log start up to which what the group lost there
    was counted, as snapshots read back from ``gun.ops.lag`` show it (a monitor started
    again: ``LagMonitor.recall``). Every measuring worker counts a loss before it
    publishes the snapshot that shows it, so a loss shown was counted; only those shown in
    snapshots at least ``seen_for_s`` older than the newest *of the same process* (its
    ``by``) are taken, so that the process that counted one lived a while after, and was
    scraped since (one that died at once may never have been: its loss is counted again,
    a second page rather than none). Each process's snapshots are dated by its own clock,
    compared with each other only: an earlier process's clock running ahead made a dying
    one's only snapshot look a minute old (a review of stop 59). Snapshots naming no
    process (before stop 59) are taken as one process's. Several workers publish, each
    measuring every group: the highest log start shown wins (the earlier ones were
    counted on the way to it)."""
    every = list(snapshots)
    if not every:
        return {}
    newest: dict[str, datetime] = {}
    for shot in every:
        newest[shot.by] = max(newest.get(shot.by, shot.at), shot.at)
    counted: dict[tuple[str, str, int], int] = {}
    for shot in every:
        if (newest[shot.by] - shot.at).total_seconds() < seen_for_s:
            continue
        for p in shot.partitions:
            if p.lost <= 0 or p.committed is None:
                continue
            where = (p.group, p.topic, p.partition)
            log_start = p.committed + p.lost
            counted[where] = max(counted.get(where, log_start), log_start)
    return counted
