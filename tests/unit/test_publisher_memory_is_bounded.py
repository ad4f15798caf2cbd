"""The decision publisher remembers a bounded number of published decisions per
partition (issue 12, bounded state; gun_hub/runtime/publisher.py): a decision announced again
follows its original within the few records a crash left uncommitted, so the memory is
counted in decisions, never in time (a hub down for a day adds no record in between)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from gun_hub.domain.status_events import StatusEvent, StatusKind
from gun_hub.pipeline.decision_outbox import HEADER_VERSION
from gun_hub.runtime.published_memory import PublishedMemory
from gun_hub.runtime.publisher import (
    DecisionPublisher,
    _PartitionPublisher,
    _version_of,
    restore_from,
)


def test_the_memory_keeps_the_latest_decisions_up_to_its_capacity() -> None:
    memory = PublishedMemory(capacity=3)
    for n in range(5):
        memory.add((f"REF{n}".encode(), b"1"))
    assert len(memory) == 3
    assert (b"REF0", b"1") not in memory
    assert (b"REF4", b"1") in memory
    assert (b"REF2", b"1") in memory


def test_a_decision_seen_again_counts_as_recent() -> None:
    memory = PublishedMemory(capacity=2)
    memory.add((b"A", b"1"))
    memory.add((b"B", b"1"))
    memory.add((b"A", b"1"))  # published on a batch retried: the latest again
    memory.add((b"C", b"1"))
    assert (b"A", b"1") in memory
    assert (b"B", b"1") not in memory


def test_the_restore_reads_back_twice_the_capacity_at_most() -> None:
    """A transaction's commit marker takes an offset: one decision per transaction
    takes two, so twice the capacity covers the capacity's worth of decisions."""
    assert restore_from(beginning=0, end=100_000, capacity=20_000) == 60_000
    assert restore_from(beginning=500, end=1_000, capacity=20_000) == 500
    assert restore_from(beginning=0, end=0, capacity=20_000) == 0


def test_an_outbox_record_whose_version_header_is_null_is_read_as_having_none() -> None:
    """A null version header raised TypeError in the publisher, which stopped the worker
    (found by review in stop 34); read as none, the record does not open and is skipped
    as unreadable."""
    assert _version_of([(HEADER_VERSION, None)]) == b""
    assert _version_of([]) == b""
    assert _version_of([("other", b"9"), (HEADER_VERSION, b"2")]) == b"2"


def test_a_version_at_or_below_one_published_of_its_reference_is_not_published() -> None:
    """The publisher is the one gate of a reference's versions (review stop 38, D1): its
    cases on two partitions may both decide, and only the first decision of a version,
    never one below a version published, reaches the clearance system."""
    memory = PublishedMemory(capacity=10)
    memory.add((b"A", b"2"))
    assert memory.refusal((b"A", b"2")) == "duplicate"
    assert memory.refusal((b"A", b"1")) == "superseded"
    assert memory.refusal((b"A", b"3")) is None
    assert memory.refusal((b"B", b"1")) is None
    memory.add((b"A", b"3"))
    # Published, then superseded: its repeat is a duplicate (review stop 38-g, G1).
    assert memory.refusal((b"A", b"2")) == "duplicate"
    assert memory.refusal((b"A", b"1")) == "superseded"  # never published


def test_the_highest_versions_are_bounded_as_the_decisions_are() -> None:
    memory = PublishedMemory(capacity=2)
    memory.add((b"A", b"5"))
    memory.add((b"B", b"1"))
    memory.add((b"C", b"1"))
    assert memory.refusal((b"A", b"4")) is None  # forgotten with the oldest decisions
    assert memory.refusal((b"B", b"1")) == "duplicate"
    assert memory.refusal((b"C", b"0")) == "superseded"


def test_an_unreadable_version_is_never_called_superseded() -> None:
    """The record does not open then (its seal is bound to the version): dead-lettered
    as unreadable, not counted as a stale version."""
    memory = PublishedMemory(capacity=2)
    memory.add((b"A", b"5"))
    assert memory.refusal((b"A", b"")) is None
    assert memory.refusal((b"A", b"x")) is None


def test_a_remembered_reference_keeps_all_its_published_versions() -> None:
    """A reference's published versions are forgotten together, the reference published
    least recently first: a version it published is never taken for one it did not
    (a memory of pairs forgot version 1 while it still knew version 2 was the highest,
    and called version 1's repeat superseded; review stop 38-g, G1)."""
    memory = PublishedMemory(capacity=3)
    memory.add((b"A", b"1"))
    memory.add((b"B", b"1"))
    memory.add((b"A", b"2"))
    memory.add((b"C", b"1"))  # four decisions: B, the least recent reference, goes
    assert memory.refusal((b"A", b"1")) == "duplicate"
    assert memory.refusal((b"A", b"2")) == "duplicate"
    assert memory.refusal((b"B", b"1")) is None
    assert len(memory) == 3


def test_a_reference_alone_keeps_its_highest_versions_up_to_the_capacity() -> None:
    memory = PublishedMemory(capacity=2)
    for version in (b"1", b"2", b"3"):
        memory.add((b"A", version))
    assert len(memory) == 2
    assert memory.highest(b"A") == 3
    assert memory.refusal((b"A", b"3")) == "duplicate"
    assert memory.refusal((b"A", b"4")) is None


REFERENCE = b"25BE000000000001"


class _Producer:
    """A transactional producer that takes every record (the lane's sends, no broker)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[object]:
        self.sent.append((topic, value))
        delivered: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        delivered.set_result(SimpleNamespace(offset=len(self.sent) - 1))  # where it went
        return delivered

    async def send_offsets_to_transaction(self, *_: Any) -> None:
        pass


class _OutboxRecord:
    def __init__(self, version: bytes, offset: int) -> None:
        self.key = REFERENCE
        self.value = b"sealed"
        self.headers = [(HEADER_VERSION, version)]
        self.offset = offset


def _not_published(reason: str) -> float:
    sample = REGISTRY.get_sample_value("gun_hub_decisions_not_published_total", {"reason": reason})
    return sample or 0.0


@pytest.mark.asyncio
async def test_a_published_version_announced_again_behind_a_higher_one_is_a_duplicate() -> None:
    """Version 1 published, then version 2; the worker died before their announcements
    were marked, and the case announces both again, version 1 first
    (``case.unconfirmed()``). Version 1 reached the clearance system: no
    IGNORED_STALE_VERSION "decided but not published" for it, and no ``superseded`` count
    (the operators' sign of a reference split across partitions; review stop 38-g, G1)."""
    publisher = DecisionPublisher(
        connect=None,  # type: ignore[arg-type]
        outbox_topic="gun.hub.decision-outbox",
        decisions_topic="gun.decisions",
        app_id="gun-hub",
        envelope=None,  # type: ignore[arg-type]
        outbox_cipher=None,  # type: ignore[arg-type]
        status="gun.status",
    )
    memory = PublishedMemory(100)
    memory.add((REFERENCE, b"1"))
    memory.add((REFERENCE, b"2"))
    producer = _Producer()
    lane = _PartitionPublisher(0, producer, memory)
    superseded, duplicates = _not_published("superseded"), _not_published("duplicate")

    published = await publisher._publish_batch(
        lane,
        None,
        TopicPartition("gun.hub.decision-outbox", 0),
        [_OutboxRecord(b"1", 7), _OutboxRecord(b"2", 8)],
    )

    assert published
    statuses = [StatusEvent.model_validate_json(v) for t, v in producer.sent if t == "gun.status"]
    assert [s for s in statuses if s.kind == StatusKind.IGNORED_STALE_VERSION] == []
    assert [t for t, _ in producer.sent] == []  # nothing published again either
    assert _not_published("superseded") == superseded
    assert _not_published("duplicate") == duplicates + 2
