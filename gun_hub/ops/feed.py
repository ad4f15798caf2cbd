"""Feeds the operations view (view.py) from Kafka.

A consumer without a group: every hub worker reads every partition of the status, facts,
dead-letter and health topics into its own view, from the offsets the view recorded with
its last applied batch (at start, from the beginning when the view is new).

Nothing a party writes stops the feed (issue 10, defect 3): a record the view cannot use
is skipped and counted by the view; a header with no value, or of any size, is read as
what it is. If the view itself fails (its database: a full disk, a lock), the feed logs
it, waits, and reads again from the offsets the view last applied: nothing is lost and
nothing applied twice.

Heartbeats pass a gate first (ops/heartbeats.py): a health record reaches the view as the
heartbeat it carries only if it is signed by the party whose component it names and is
newer than the last one believed; any other is left out, logged with its reason (at most
once a minute per reason, with how many more there were) and counted in
``gun_hub_heartbeats_refused_total{reason}``. A refused record that ends a batch is read
again after a restart (the view records the offsets of what it applies): refused again.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from gun_contract.consume import Batch, consume
from gun_contract.heartbeats import HeartbeatFault, HeartbeatGate, HeartbeatRefused
from gun_contract.kafka.admin import partitions_of
from gun_contract.kafka.client import ClientConfig, reached, read_without_group
from gun_hub.metrics import HEARTBEATS_REFUSED
from gun_hub.ops.lag_metrics import OpsState
from gun_hub.ops.view import FeedRecord, OpsView

log = logging.getLogger(__name__)

_PRUNE_EVERY_S = 3600.0
# An adapter replica silent this long is gone (scaled away, its pod replaced): the
# dashboard stops listing it (OpsView.forget_silent_replicas).
_REPLICA_GONE_S = 86_400.0
_BATCH = 2000  # records per SQLite transaction: a few milliseconds of work
_CHECKS_PER_TURN = 20  # heartbeat signatures verified between two turns of the event loop


class OpsFeed:
    """``heartbeats``: the gate health records pass; by default the one the hub's own
    settings and keys make (``security.factory.heartbeat_gate_from_environment``), built
    when the first health record arrives."""

    def __init__(
        self,
        connect: ClientConfig,
        view: OpsView,
        state: OpsState,
        *,
        retry_s: float = 1.0,
        heartbeats: HeartbeatGate | None = None,
        retention_s: float | None = None,
        gather_ms: int = 0,
    ) -> None:
        self._connect = connect
        # How long the broker holds each fetch (ops.view_gather_ms, reader_without_group).
        self._gather_ms = gather_ms
        self._view = view
        self._state = state
        self._retry_s = retry_s
        self._heartbeats = heartbeats
        self._refusals = _RefusalLog()
        self.caught_up = asyncio.Event()  # set once the view reached the end it first saw
        # What the view keeps (None: everything); pruned at most once per _PRUNE_EVERY_S.
        self._retention_s = retention_s
        self._pruned_at = 0.0

    async def prune_if_due(self, now: float) -> bool:
        """Prune the view past its retention, if an hour (or a quarter of a shorter
        retention) has passed since it last was,
        step by step (``OpsView.prune``), letting the event loop run between steps; and
        forget the adapter replicas silent for a day (or the retention, if shorter)."""
        if self._retention_s is None:
            return False
        # An hour apart, or a quarter of a retention shorter than four hours.
        if now - self._pruned_at < min(_PRUNE_EVERY_S, self._retention_s / 4):
            return False
        self._pruned_at = now
        before = datetime.fromtimestamp(now - self._retention_s, UTC)
        # What left is remembered for one more retention (OpsView.prune).
        forget_left_before = datetime.fromtimestamp(now - 2 * self._retention_s, UTC)
        while True:
            if not self._view.prune(before, forget_left_before=forget_left_before):
                break
            await asyncio.sleep(0)  # the agents run between two steps
        silent = min(self._retention_s, _REPLICA_GONE_S)
        if self._view.forget_silent_replicas(datetime.fromtimestamp(now - silent, UTC)):
            self._state.partners = self._view.partners()
        return True

    async def run(self) -> None:
        await read_without_group(
            self._connect,
            "gun-hub-ops-view",
            self._assign,
            self.follow,
            gather_ms=self._gather_ms,
        )

    async def follow(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Apply what ``consumer`` (assigned to ``partitions``) reads, batch by batch.

        A reader without a group (gun_contract/consume.py): nothing is committed, the view
        records the offsets of what it applied; a batch it failed to apply is read again
        from there, never dead-lettered (its records are not at fault)."""
        targets = await consumer.end_offsets(partitions)
        self._state.partners = self._view.partners()
        failures = 0
        rewound = False  # this poll's batch was not applied: read again before anything

        async def apply(batch: Batch) -> None:
            nonlocal failures, rewound
            records = await self._believed([feed_record(r) for b in batch.values() for r in b])
            if not records:
                return
            try:
                self._view.apply(records)
            except Exception:  # the view's database failed (records never raise)
                failures += 1
                log.exception(
                    "operations view: a batch of %d records was not applied (failure %d); "
                    "reading again from the last applied offsets",
                    len(records),
                    failures,
                )
                await asyncio.sleep(min(self._retry_s * failures, 30.0))
                await self._rewind(consumer, partitions)
                rewound = True
                return
            failures = 0
            if any(r.topic == self._view.topics.health for r in records):
                self._state.partners = self._view.partners()

        async def after_poll() -> None:
            nonlocal rewound
            if rewound:
                rewound = False
                return
            if not self.caught_up.is_set() and await reached(consumer, targets):
                self.caught_up.set()
            try:
                await self.prune_if_due(time.time())
            except sqlite3.Error:
                log.exception("operations view: not pruned; tried again in an hour")

        await consume(consumer, apply, commit=False, max_records=_BATCH, after_poll=after_poll)

    async def _believed(self, records: list[FeedRecord]) -> list[FeedRecord]:
        """``records`` with each health record replaced by the heartbeat it carries, once
        verified; refused ones left out, logged and counted. A check takes 0.1 to 0.3 ms
        (ES256): a backlog of heartbeats (a new view reads a day of them, about 17,000 per
        adapter) gives the event loop back every :data:`_CHECKS_PER_TURN`."""
        health = self._view.topics.health
        if not any(r.topic == health for r in records):
            return records
        gate = self._gate()
        # What the view believes now (the last batch it applied), then this batch in order.
        latest = {replica: h.at for replica, h in self._state.partners.items()}
        kept = []
        checked = 0
        for record in records:
            if record.topic != health:
                kept.append(record)
                continue
            checked += 1
            if checked % _CHECKS_PER_TURN == 0:
                await asyncio.sleep(0)
            try:
                beat = gate.check(record.value, topic=record.topic, latest=latest)
            except HeartbeatRefused as refused:
                HEARTBEATS_REFUSED.labels(refused.fault.value).inc()
                self._refusals.note(record, refused)
                continue
            latest[beat.replica_key] = beat.at
            kept.append(replace(record, value=beat.to_bytes()))
        return kept

    def _gate(self) -> HeartbeatGate:
        if self._heartbeats is None:
            from gun_hub.security.factory import heartbeat_gate_from_environment

            self._heartbeats = heartbeat_gate_from_environment()
        return self._heartbeats

    async def _rewind(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Back to what the view last applied (the beginning where it applied nothing)."""
        known = self._view.positions()
        for tp in partitions:
            if (tp.topic, tp.partition) in known:
                consumer.seek(tp, known[(tp.topic, tp.partition)])
            else:
                await consumer.seek_to_beginning(tp)

    async def _assign(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        admin = AIOKafkaAdminClient(**self._connect.options(), client_id="gun-hub-ops-view")
        await admin.start()
        try:
            existing = await partitions_of(admin, self._view.topics.all())
        finally:
            await admin.close()
        partitions = [
            TopicPartition(topic, partition)
            for topic, numbers in sorted(existing.items())
            for partition in numbers
        ]
        consumer.assign(partitions)
        await self._rewind(consumer, partitions)
        log.info("operations view reading %d partitions", len(partitions))
        return partitions


class _RefusalLog:
    """Logs a refused heartbeat: the first of each reason, then at most one every
    ``every_s`` seconds, saying how many were refused for it in between (a party writing
    forged heartbeats every second fills no disk). The metric counts each one."""

    def __init__(self, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._every_s = every_s
        self._clock = clock
        self._logged: dict[HeartbeatFault, float] = {}
        self._quiet: Counter[HeartbeatFault] = Counter()

    def note(self, record: FeedRecord, refused: HeartbeatRefused) -> None:
        fault, now = refused.fault, self._clock()
        last = self._logged.get(fault)
        if last is not None and now - last < self._every_s:
            self._quiet[fault] += 1
            return
        self._logged[fault] = now
        quiet = self._quiet.pop(fault, 0)
        log.warning(
            "operations view: heartbeat at %s/%d/%d refused (%s): %s%s",
            record.topic,
            record.partition,
            record.offset,
            fault.value,
            str(refused)[:300],
            f"; {quiet} more refused for this reason since the last one logged" if quiet else "",
        )


def feed_record(record: ConsumerRecord[bytes, bytes]) -> FeedRecord:
    """The view's copy of a Kafka record: a null value reads as empty, a header without a
    value as absent (a foreign producer may write either)."""
    headers = [
        (str(name), bytes(value))
        for name, value in record.headers or ()
        if isinstance(value, bytes | bytearray | memoryview)
    ]
    timestamp = record.timestamp if isinstance(record.timestamp, int) else -1
    key = bytes(record.key) if isinstance(record.key, bytes | bytearray | memoryview) else None
    return FeedRecord(
        record.topic, record.partition, record.offset, timestamp, record.value or b"", headers, key
    )
