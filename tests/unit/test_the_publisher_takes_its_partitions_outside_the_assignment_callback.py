"""The decision publisher takes the outbox partitions it is assigned (a producer each,
fencing the previous owner, and the memory of what was published) outside the group's
assignment callback (gun_hub/runtime/publisher.py).

aiokafka's group coordinator sends no heartbeat while a rebalance listener runs, and the
publisher's consumer has the default 10 s session. Taking the partitions there, one after
another (InitProducerId, which may wait for a fenced owner's transaction to end, then up
to twice 20,000 sealed decisions read back per partition), a survivor taking over 8
partitions was expelled before it was done, the group rebalanced, and it began again: a
publishing storm (found by the scale-out review; ADR 0019 moved the audit chains' reads
out of that callback for the same reason). A partition still never publishes before its
memory of what was published is read.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from gun_contract.kafka.client import ClientConfig
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import StateCipher
from gun_contract.topics import topic_registry
from gun_hub.runtime import publisher as publisher_module
from gun_hub.runtime.published_memory import PublishedMemory
from gun_hub.runtime.publisher import DecisionPublisher, _Handover
from tests.conftest import envelope_of

OUTBOX = "gun.hub.decision-outbox"
DECISIONS = "gun.decisions"
TOPICS = topic_registry("gun", ("cites", "dga", "dgal"))
# Well under the publisher consumer's session timeout (10 s): the callback must not wait
# for the broker at all.
PROMPTLY_S = 0.5


class Broker:
    """What taking a partition waits for: each partition's InitProducerId and the read of
    what was published on it, answered when the test says so."""

    def __init__(self) -> None:
        self.producers: list[Producer] = []
        self.read: dict[int, asyncio.Event] = {}
        self.reading: list[int] = []

    def memory_read(self, partition: int) -> asyncio.Event:
        return self.read.setdefault(partition, asyncio.Event())

    async def recently_published(self, partition: int) -> PublishedMemory:
        self.reading.append(partition)
        await self.memory_read(partition).wait()
        return PublishedMemory(10)


class Producer:
    """A transactional producer whose start (InitProducerId) takes as long as the broker."""

    def __init__(self, broker: Broker, **options: Any) -> None:
        self.transactional_id = options["transactional_id"]
        self.stopped = False
        self._txn_manager = None
        broker.producers.append(self)

    async def start(self) -> None:
        await asyncio.sleep(0)

    async def stop(self) -> None:
        self.stopped = True


class Consumer:
    """The publisher's group member: what it is assigned, paused, and sought."""

    def __init__(self) -> None:
        self.assigned: set[TopicPartition] = set()
        self.sought: list[tuple[int, int]] = []
        self._paused: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, *tps: TopicPartition) -> None:
        self._paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self._paused.difference_update(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought.append((tp.partition, offset))


def _publisher(
    monkeypatch: pytest.MonkeyPatch, keys_dir: Path
) -> tuple[DecisionPublisher, Broker, list[int]]:
    """A publisher whose broker the test answers; the partitions it publishes a batch on,
    in order. (Its envelope and outbox cipher go unused: no batch is really published.)"""
    broker = Broker()
    monkeypatch.setattr(
        publisher_module, "AIOKafkaProducer", lambda **options: Producer(broker, **options)
    )
    publisher = DecisionPublisher(
        ClientConfig("127.0.0.1:9"),
        OUTBOX,
        DECISIONS,
        "hub",
        envelope=envelope_of(HUB_PARTY, TOPICS, keys_dir),
        outbox_cipher=StateCipher.load(keys_dir, HUB_PARTY),
    )
    published: list[int] = []

    async def publish_batch(_publisher: Any, _consumer: Any, tp: Any, _records: Any) -> bool:
        published.append(tp.partition)
        return True

    monkeypatch.setattr(publisher, "_recently_published", broker.recently_published)
    monkeypatch.setattr(publisher, "_publish_batch", publish_batch)
    return publisher, broker, published


def _decision(partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(OUTBOX, partition, offset, 0, 0, b"REF", b"sealed", None, 3, 6, [])


async def _let_tasks_run() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_eight_partitions_assigned_are_taken_after_the_assignment_callback_returns(
    monkeypatch: pytest.MonkeyPatch, keys_dir: Path
) -> None:
    publisher, broker, _published = _publisher(monkeypatch, keys_dir)
    consumer = Consumer()
    assigned = {TopicPartition(OUTBOX, p) for p in range(8)}
    consumer.assigned = assigned

    await asyncio.wait_for(
        _Handover(publisher, consumer).on_partitions_assigned(assigned), PROMPTLY_S
    )

    await _let_tasks_run()
    assert sorted(broker.reading) == list(range(8))  # taken beside each other, not in line
    for partition in range(8):
        broker.memory_read(partition).set()
    await _let_tasks_run()
    assert publisher.partitions == set(range(8))


async def test_a_partition_publishes_nothing_before_its_memory_is_read(
    monkeypatch: pytest.MonkeyPatch, keys_dir: Path
) -> None:
    publisher, broker, published = _publisher(monkeypatch, keys_dir)
    consumer = Consumer()
    tp = TopicPartition(OUTBOX, 2)
    consumer.assigned = {tp}
    await asyncio.wait_for(_Handover(publisher, consumer).on_partitions_assigned({tp}), PROMPTLY_S)

    publisher._queue(consumer, tp, [_decision(2, 40)])  # fetched at once
    await _let_tasks_run()
    assert published == []  # what it published before is not known yet

    broker.memory_read(2).set()
    await _let_tasks_run()
    assert published == [2]


async def test_a_revocation_does_not_wait_for_a_partition_being_taken(
    monkeypatch: pytest.MonkeyPatch, keys_dir: Path
) -> None:
    """The revocation runs in the group's callback too: it gives the taking up (its
    producer stopped, nothing kept) rather than wait for the memory read."""
    publisher, broker, published = _publisher(monkeypatch, keys_dir)
    consumer = Consumer()
    tp = TopicPartition(OUTBOX, 5)
    consumer.assigned = {tp}
    handover = _Handover(publisher, consumer)
    await asyncio.wait_for(handover.on_partitions_assigned({tp}), PROMPTLY_S)
    await _let_tasks_run()
    assert broker.reading == [5]

    await asyncio.wait_for(handover.on_partitions_revoked({tp}), PROMPTLY_S)
    consumer.assigned = set()
    broker.memory_read(5).set()
    await _let_tasks_run()
    assert publisher.partitions == set()
    assert [producer.stopped for producer in broker.producers] == [True]
    assert published == []
