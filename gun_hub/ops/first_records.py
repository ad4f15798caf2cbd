"""Dates the first record at or after a position on a few partitions: what the lag
monitor dates each group's oldest unread record by (``lag.unread_ages``).

Kept light, as the monitor runs beside a hub worker (review stop 38-L, L1):

* one consumer without a group, that reads committed records as the hub's readers do (an
  aborted transaction's records are never theirs to read);
* each fetch brings one record batch of one partition: ``fetch_max_bytes`` of 1 is
  exhausted by the first batch, which the broker returns whole all the same (KIP-74),
  and every other partition of the fetch gets nothing (never a part of a batch, which
  aiokafka would take for a record too large and step over). A partition dated is
  paused, and all of them once the read ends: nothing is fetched between measurements;
* a read stops at ``timeout_s``: what it did not reach is dated at a later measurement;
* a topic it may not read (no Read right: the hub's principal has none on the adapters'
  request topics) is left out of that read and said (``refused``), the others dated; it
  is tried again only after ``refused_retry_s`` (aiokafka warns at each refusal);
* what it found is remembered by position, since the record at a position never changes
  (the log is only appended to; a position below the log's start is never asked for,
  ``lag.unread_positions``): a partition whose group does not move, the one that
  matters, is fetched once, not at every measurement; only positions asked for at the
  last measurement are remembered;
* a partition its group moves through is dated at most once every ``redate_after_s``
  (a minute by default): in between, a position gets the date of the record found at
  an earlier position of that partition, which is older than or as old as the first
  unread one. At saturation every group lags a little on every partition and moves at
  every measurement, and dating each new position every five seconds cost the hub 8 %
  of its throughput (stop 39); the age shown is never less than the real one, so a
  page for retention comes early, never late, and by at most the interval and the time
  that record waited.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import TopicAuthorizationFailedError

from gun_contract.kafka.client import ClientConfig
from gun_contract.limits import DATABLE_TIMESTAMPS_MS

Position = tuple[str, int, int]  # topic, partition, offset


def dating_consumer(connect: ClientConfig, client_id: str) -> AIOKafkaConsumer:
    """The consumer ``FirstRecords`` reads with (module docstring)."""
    return AIOKafkaConsumer(
        **connect.options(),
        client_id=client_id,
        group_id=None,
        isolation_level="read_committed",
        auto_offset_reset="earliest",  # deleted since it was asked: the log's start
        fetch_max_bytes=1,
        fetch_max_wait_ms=100,
    )


class FirstRecords:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        timeout_s: float = 2.0,
        refused_retry_s: float = 600.0,
        redate_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consumer = consumer
        self._timeout_s = timeout_s
        self._refused_retry_s = refused_retry_s
        self._redate_after_s = redate_after_s
        self._clock = clock
        self._refused_at: dict[str, float] = {}
        # What was found at each position, and when (by ``clock``).
        self._dated: dict[Position, tuple[int, datetime, float]] = {}
        # Positions found to hold no committed record up to a stable end: none until
        # that stable end moves (a transaction's marker after a group's commit point).
        self._empty_up_to: dict[Position, int] = {}
        self.refused: set[str] = set()  # topics not allowed to be read, lately

    async def find(
        self, positions: Collection[Position], stable_ends: Mapping[tuple[str, int], int]
    ) -> dict[Position, tuple[int, datetime]]:
        """The offset and broker timestamp of the first committed record at or after each
        of ``positions``, where one is found before the partition's stable end (what a
        committed reader may read up to) within the read's time."""
        wanted = {
            p for p in positions if p[2] < stable_ends.get((p[0], p[1]), p[2])
        }  # nothing committed to read at or past the stable end (or no end known)
        now = self._clock()
        known = {p: self._dated[p] for p in wanted if p in self._dated}
        found = {p: (offset, appended) for p, (offset, appended, _) in known.items()}
        recent = self._recent_by_partition(now)
        for p in wanted - found.keys():
            earlier = [q for q in recent.get((p[0], p[1]), ()) if q[2] <= p[2]]
            if earlier:  # an older record's date, within the interval (module docstring)
                offset, appended, _ = self._dated[max(earlier)]
                found[p] = (offset, appended)
        todo = {
            p
            for p in wanted - found.keys()
            if self._empty_up_to.get(p, -1) < stable_ends[(p[0], p[1])]
        }
        self._refused_at = {
            t: at for t, at in self._refused_at.items() if now - at < self._refused_retry_s
        }
        todo = {p for p in todo if p[0] not in self._refused_at}
        deadline = time.monotonic() + self._timeout_s
        while todo and time.monotonic() < deadline:
            # One position per partition a round (two groups may lag on one partition).
            round_: dict[TopicPartition, int] = {}
            for topic, partition, offset in sorted(todo):
                round_.setdefault(TopicPartition(topic, partition), offset)
            dated, empty = await self._read(round_, stable_ends, deadline)
            for tp, offset in round_.items():
                position = (tp.topic, tp.partition, offset)
                todo.discard(position)
                if tp in dated:
                    found[position] = dated[tp]
                    known[position] = (*dated[tp], now)
                elif tp in empty:
                    self._empty_up_to[position] = stable_ends[(tp.topic, tp.partition)]
        self.refused = set(self._refused_at)
        # Kept: the positions asked for now (their record never changes) and the datings
        # still recent enough to stand for a later position.
        self._dated = {
            p: d for p, d in self._dated.items() if p in wanted or now - d[2] < self._redate_after_s
        }
        self._dated.update(known)
        self._empty_up_to = {p: e for p, e in self._empty_up_to.items() if p in wanted}
        return found

    def _recent_by_partition(self, now: float) -> dict[tuple[str, int], list[Position]]:
        recent: dict[tuple[str, int], list[Position]] = {}
        for position, (_, _, dated_at) in self._dated.items():
            if now - dated_at < self._redate_after_s:
                recent.setdefault((position[0], position[1]), []).append(position)
        return recent

    async def _read(
        self,
        positions: Mapping[TopicPartition, int],
        stable_ends: Mapping[tuple[str, int], int],
        deadline: float,
    ) -> tuple[dict[TopicPartition, tuple[int, datetime]], set[TopicPartition]]:
        """The first record of each partition from its position, and the partitions read
        up to their stable end without one."""
        consumer = self._consumer
        consumer.assign(list(positions))
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        dated: dict[TopicPartition, tuple[int, datetime]] = {}
        empty: set[TopicPartition] = set()
        pending = set(positions)
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                while pending:
                    try:
                        batch = await consumer.getmany(*pending, timeout_ms=200)
                    except TopicAuthorizationFailedError as err:
                        refused = {tp for tp in pending if tp.topic in err.args}
                        if not refused:
                            raise
                        self._refused_at.update(
                            dict.fromkeys({tp.topic for tp in refused}, self._clock())
                        )
                        pending -= refused
                        consumer.pause(*refused)
                        continue
                    for tp, records in batch.items():
                        first = next((r for r in records if r.offset >= positions[tp]), None)
                        if tp in pending and first is not None:
                            appended = _broker_time(first.timestamp)
                            if appended is None:
                                empty.add(tp)  # no date to give: as if nothing were there
                            else:
                                dated[tp] = (first.offset, appended)
                            pending.discard(tp)
                            consumer.pause(tp)
                    for tp in list(pending):
                        if await consumer.position(tp) >= stable_ends[(tp.topic, tp.partition)]:
                            empty.add(tp)  # read through: only markers, or aborted records
                            pending.discard(tp)
                            consumer.pause(tp)
        except TimeoutError:
            pass  # what was not reached is dated at a later measurement
        finally:
            consumer.pause(*positions)  # nothing fetched until the next measurement
        return dated, empty


def _broker_time(timestamp_ms: int) -> datetime | None:
    """A record's timestamp: its log-append time on the contract's topics; on a topic left
    on CreateTime (``gun.dlq``, which every party may write) its producer's, which
    retention judges it by all the same. None for one no calendar holds (year 10000):
    that partition goes undated until more is written there, the others are dated (review
    stop 40-F, F1: one such record failed the whole reading)."""
    if timestamp_ms not in DATABLE_TIMESTAMPS_MS:
        return None
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
