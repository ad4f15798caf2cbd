"""An adapter's queue of operations pending on a down partner is bounded: at the limit the
adapter stops fetching requests (backpressure, nothing dropped) and says so, by a metric
and a log line, until half the queue has been replayed (issue 12, bounded state)."""

from __future__ import annotations

import logging

import pytest
from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from adapters.base.pending import PendingLimit

TOPIC = "gun.requests.dgal"


class FakeConsumer:
    def __init__(self, *partitions: int) -> None:
        self.assigned = {TopicPartition(TOPIC, p) for p in partitions}
        self.paused: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused -= set(partitions)


def full_signals(authority: str) -> tuple[float, float]:
    gauge = REGISTRY.get_sample_value("gun_adapter_pending_queue_full", {"authority": authority})
    total = REGISTRY.get_sample_value(
        "gun_adapter_pending_limit_reached_total", {"authority": authority}
    )
    return gauge or 0.0, total or 0.0


def test_at_the_limit_fetching_stops_until_half_the_queue_is_replayed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limit = PendingLimit("dgal-test", 100)
    consumer = FakeConsumer(0, 1)
    assert not limit.hold(consumer, 99)
    assert consumer.paused == set()
    with caplog.at_level(logging.WARNING):
        assert limit.hold(consumer, 100)
    assert consumer.paused == consumer.assigned
    assert full_signals("dgal-test") == (1.0, 1.0)
    assert "pending operations reached the limit of 100" in caplog.text
    assert limit.hold(consumer, 60)  # still above half: still held
    consumer.assigned.add(TopicPartition(TOPIC, 2))  # a partition assigned meanwhile
    assert limit.hold(consumer, 60)
    assert consumer.paused == consumer.assigned
    assert not limit.hold(consumer, 50)
    assert consumer.paused == set()
    assert full_signals("dgal-test") == (0.0, 1.0)
