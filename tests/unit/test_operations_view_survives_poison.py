"""The operations view and its feed survive every record (issue 10, defect 3).

Adapters may write ``gun.dlq`` and ``gun.ops.health``, so anything can be there (and the
view must not trust the hub's own topics blindly either): a record the view cannot apply
is skipped and counted, logged once, and neither rolls back nor stops its batch; a huge or
malformed header breaks nothing; a failure of the view itself is retried from the offsets
it last applied.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from gun_contract.dead_letter import HEADER_COMPONENT, HEADER_ERROR_KIND, HEADER_ERROR_REASON
from gun_contract.envelope import ContentType
from gun_contract.health import CircuitStatus, PartnerHealth
from gun_contract.heartbeats import HeartbeatGate
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.keystore import PartyKeys
from gun_contract.topics import topic_registry
from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.feed import OpsFeed, feed_record
from gun_hub.ops.lag_metrics import OpsState
from gun_hub.ops.view import FeedRecord, OpsView
from tests.conftest import envelope_of
from tests.poison_corpus import hostile_headers, named_bombs
from tests.unit.test_operations_view import NOON, TOPICS, Feed, use

REFERENCE = "26FRA0000000000077"


def status_json(**fields: object) -> bytes:
    event = {
        "reference": REFERENCE,
        "version": 1,
        "kind": "RECEIVED",
        "at": "2026-11-22T12:00:00Z",
        **fields,
    }
    return json.dumps(event).encode()


def bad_values_for(topic: str) -> dict[str, bytes]:
    """Values of the right JSON shape that still cannot be stored, per topic."""
    if topic == TOPICS.status:
        return {
            "version beyond SQLite integers": status_json(version=10**30),
            "lone surrogate": status_json(reference="\udc80x"),
            "huge detail": status_json(detail="d" * 200_000),
        }
    if topic == TOPICS.facts:
        decided = {
            "kind": "DECIDED",
            "reference": REFERENCE,
            "version": 10**30,
            "declarant_eori": "FR1",
            "stage": "LODGED",
            "outcome": "RELEASE",
            "decided_at": "2026-11-22T12:00:00Z",
            "authorities": [],
            "documents": [],
        }
        written = {
            "kind": "WRITTEN_OFF",
            "reference": REFERENCE,
            "version": 1,
            "authority": "dgal",
            "at": "2026-11-22T12:00:00Z",
            "documents": [
                {"code": "N853", "reference": "C1", "line": 1, "quantity": "1", "unit": "KGM"},
                {"code": "N853", "reference": "C1", "line": 10**30, "quantity": "1"},
            ],
        }
        huge_quantity = {
            **written,
            "documents": [{"code": "N853", "reference": "C1", "quantity": "9e999999"}],
        }
        received = {
            "kind": "RECEIVED",
            "reference": REFERENCE,
            "version": 10**30,
            "declarant_eori": "FR1",
            "received_at": "2026-11-22T12:00:00Z",
        }
        return {
            "receipt version beyond SQLite integers": json.dumps(received).encode(),
            "decision version beyond SQLite integers": json.dumps(decided).encode(),
            "a write-off failing on its second line": json.dumps(written).encode(),
            "a quantity no sum can hold": json.dumps(huge_quantity).encode(),
        }
    if topic == TOPICS.health:
        beat = PartnerHealth(
            authority="dgal",
            adapter="adapter.dgal",
            circuit=CircuitStatus.CLOSED,
            pending_operations=0,
            at=NOON,
            every_s=5,
        ).model_dump()
        return {
            "authority of a megabyte": json.dumps(
                {**beat, "authority": "a" * 1_000_000, "at": "2026-11-22T12:00:00Z"}
            ).encode(),
            "no authority": json.dumps(
                {**beat, "authority": "", "at": "2026-11-22T12:00:00Z"}
            ).encode(),
        }
    return {}


def genuine(feed: Feed, topic: str, n: int) -> FeedRecord:
    if topic == TOPICS.status:
        return feed.status(f"26FRA00000000010{n:02d}", StatusKind.RECEIVED)
    if topic == TOPICS.facts:
        return feed.decided(f"26FRA00000000010{n:02d}", "RELEASE", [use("N853", "C1", "dgal")])
    if topic == TOPICS.health:
        health = PartnerHealth(
            authority=f"auth{n}",
            adapter="adapter",
            circuit=CircuitStatus.CLOSED,
            pending_operations=n,
            at=NOON,
            every_s=5,
        )
        return feed.record(topic, health.to_bytes())
    return feed.record(topic, b"x", [(HEADER_ERROR_KIND, b"GENUINE")])


@pytest.mark.parametrize("topic", TOPICS.all())
def test_poison_on_any_topic_is_skipped_counted_and_the_batch_applied(
    tmp_path: Path, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    view = OpsView(tmp_path / "v.sqlite3", TOPICS)
    feed = Feed()
    poisons = {**named_bombs(), **bad_values_for(topic)}
    if topic == TOPICS.dlq:  # every value is fine on the dead-letter topic: poison headers
        batch = [genuine(feed, topic, 0)]
        batch += [feed.record(topic, value, hostile_headers_list()) for value in poisons.values()]
        batch += [genuine(feed, topic, 1)]
    else:
        batch = [genuine(feed, topic, 0)]
        batch += [feed.record(topic, value) for value in poisons.values()]
        batch += [genuine(feed, topic, 1)]
    with caplog.at_level(logging.WARNING, logger="gun_hub.ops.view"):
        assert view.apply(batch) == len(batch)
    assert view.positions() == {(topic, 0): len(batch)}
    if topic == TOPICS.dlq:
        assert view.skipped == 0
        assert view.dead_letter_counts()["total"] == len(batch)
        for letter in view.recent_dead_letters(len(batch)):
            assert len(letter["kind"]) <= 128
            assert len(letter["component"]) <= 128
            assert len(letter["reason"]) <= 300
    else:
        assert view.skipped == len(poisons)
        assert view.skipped_by_topic == {topic: len(poisons)}
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert 1 <= len(warnings) <= 3, [r.getMessage() for r in warnings]  # once, not per record
    if topic == TOPICS.status:
        assert view.declaration("26FRA0000000001000") is not None
        assert view.declaration("26FRA0000000001001") is not None
    if topic == TOPICS.facts:
        assert view.statistics()["decisions"]["total"] == 2
        assert view.written_off() == []  # the first line of the failing write-off undone
    if topic == TOPICS.health:
        assert sorted(view.partners()) == [("auth0", ""), ("auth1", "")]
    # Every question still has an answer.
    view.statistics()
    view.written_off()
    view.documents_of_declarant("FR12345678901234")
    view.recent_dead_letters()
    view.partners()


def hostile_headers_list() -> list[tuple[str, bytes]]:
    return hostile_headers(random.Random(5))


def test_a_dead_letter_with_null_undecodable_or_byte_named_headers_is_counted(
    tmp_path: Path,
) -> None:
    view = OpsView(tmp_path / "v.sqlite3", TOPICS)
    feed = Feed()
    weird: Any = [
        (HEADER_ERROR_KIND, None),
        (b"gun.component", b"\xff\xfe"),
        (HEADER_ERROR_REASON, b"\xed\xa0\x80" * 10_000),
        (HEADER_COMPONENT, b"c" * 5_000_000),
    ]
    # Each at a place of its own in the log (the view keeps a dead letter once per place).
    record = FeedRecord(TOPICS.dlq, 0, 10, -1, b"", weird)
    far_future = FeedRecord(TOPICS.dlq, 0, 11, 2**62, b"", [(HEADER_ERROR_KIND, b"K")])
    view.apply([record, far_future, feed.record(TOPICS.dlq, b"", [(HEADER_ERROR_KIND, b"OK")])])
    assert view.dead_letter_counts()["total"] == 3
    assert len(view.recent_dead_letters()) == 3


def consumer_record(
    value: bytes | None, headers: Any, offset: int = 0, timestamp: int = 1_700_000_000_000
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=TOPICS.dlq,
        partition=0,
        offset=offset,
        timestamp=timestamp,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value or b""),
        headers=headers,
    )


def test_a_record_with_null_header_values_becomes_a_feed_record() -> None:
    converted = feed_record(
        consumer_record(None, [("gun.error.kind", None), ("x", b"y"), ("z", bytearray(b"w"))])
    )
    assert converted.value == b""
    assert list(converted.headers) == [("x", b"y"), ("z", b"w")]


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s * 100)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


class _Consumer:
    """Serves a fixed log; remembers seeks (what the feed uses of AIOKafkaConsumer)."""

    def __init__(self, log: list[ConsumerRecord[bytes, bytes]]) -> None:
        self._log = log
        self.position_ = 0
        self.seeks: list[int] = []

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, len(self._log))

    async def getmany(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        batch = self._log[self.position_ : self.position_ + 2]
        self.position_ += len(batch)
        if not batch:
            await asyncio.sleep(0.01)
            return {}
        return {TopicPartition(TOPICS.dlq, 0): batch}

    async def position(self, tp: TopicPartition) -> int:
        return self.position_

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append(offset)
        self.position_ = offset

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.seek(partitions[0], 0)


class _FlakyView(OpsView):
    """A view whose database fails once (a full disk, a lock) on its second batch."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, TOPICS)
        self.calls = 0

    def apply(self, records: Any) -> int:
        self.calls += 1
        if self.calls == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return super().apply(records)


async def test_the_feed_outlives_a_failing_view_and_reads_again_what_was_not_applied(
    tmp_path: Path,
) -> None:
    log = [
        consumer_record(b"", [(HEADER_ERROR_KIND, f"K{n}".encode())], offset=n) for n in range(6)
    ]
    view = _FlakyView(tmp_path / "v.sqlite3")
    feed = OpsFeed(None, view, OpsState(), retry_s=0.01)  # type: ignore[arg-type]
    consumer = _Consumer(log)
    follow = asyncio.create_task(feed.follow(consumer, [TopicPartition(TOPICS.dlq, 0)]))
    try:
        async with asyncio.timeout(5):
            await feed.caught_up.wait()
        await until(lambda: view.dead_letter_counts()["total"] >= 6)
    finally:
        follow.cancel()
    assert view.dead_letter_counts()["total"] == 6  # nothing lost, nothing twice
    assert consumer.seeks == [2]  # read again from what the view had applied
    assert view.positions() == {(TOPICS.dlq, 0): 6}


async def test_the_feed_survives_a_poisoned_health_record(tmp_path: Path, keys_dir: Path) -> None:
    view = OpsView(tmp_path / "v.sqlite3", TOPICS)
    state = OpsState()
    now = datetime.now(UTC).isoformat()
    heartbeat = (
        '{"authority":"dgal","adapter":"a","circuit":"open","pending_operations":1,'
        f'"at":"{now}","every_s":5}}'
    ).encode()
    # Heartbeats are believed signed only, by the party they name (test_signed_heartbeats).
    registry = topic_registry("g", ("dgal",))
    signed = envelope_of("dgal", registry, keys_dir).sign(
        heartbeat, topic=TOPICS.health, content_type=ContentType.JSON
    )
    log = [
        ConsumerRecord(
            TOPICS.health, 0, 0, int(time.time() * 1000), 0, None, value, None, 0, 0, headers
        )
        for value, headers in [(b"[" * 3000, [("h", None)]), (signed, [])]
    ]

    class HealthConsumer(_Consumer):
        async def getmany(
            self, timeout_ms: int = 0, max_records: int | None = None
        ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
            batch = await super().getmany(timeout_ms, max_records)
            return {TopicPartition(TOPICS.health, 0): b for b in batch.values()}

    gate = HeartbeatGate(PartyKeys.load(keys_dir, "hub"), Entitlements.from_registry(registry))
    feed = OpsFeed(None, view, state, heartbeats=gate)  # type: ignore[arg-type]
    partitions = [TopicPartition(TOPICS.health, 0)]
    follow = asyncio.create_task(feed.follow(HealthConsumer(log), partitions))
    try:
        await until(lambda: ("dgal", "") in state.partners)
    finally:
        follow.cancel()
    assert view.skipped == 0  # the poison is refused before the view: it is no heartbeat
    assert state.partners["dgal", ""].circuit is CircuitStatus.OPEN
