"""The checker's topic read says when it did not reach the end of a partition's log.

``read_committed`` ends at the last stable offset: a transaction left open (a producer
killed mid-transaction, not yet aborted) hides every record after it. Before review stop
37 (T6) the read just returned what it had, and the hidden decisions were only counted
"lost". Here, on the real broker, a committed transaction is read to its end (its commit
marker included), and one left open is reported with its offsets.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from confluent_kafka import Producer

from chaos.checker.model import IncompleteRead
from chaos.checker.sources import read_topic
from tests.integration.seeded_topics import fresh_topic

pytestmark = [pytest.mark.chaos, pytest.mark.broker]


def _transactional(bootstrap: str) -> Producer:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": f"checker-{uuid.uuid4().hex[:8]}"}
    )
    producer.init_transactions(30)
    return producer


def _commit(producer: Producer, topic: str, values: list[bytes]) -> None:
    producer.begin_transaction()
    for value in values:
        producer.produce(topic, value, key=b"A", partition=0)
    producer.commit_transaction(30)


def test_a_topic_of_ended_transactions_is_read_to_its_end(kafka_bootstrap: str) -> None:
    """Committed and aborted transactions (a hub killed mid-transaction leaves aborted ones)
    end in markers the reader never sees as records: it still reaches the log's end."""
    topic = asyncio.run(fresh_topic(kafka_bootstrap, "checker-read"))
    producer = _transactional(kafka_bootstrap)
    _commit(producer, topic, [b"v1", b"v2"])  # offsets 0, 1; commit marker at 2
    producer.begin_transaction()
    producer.produce(topic, b"aborted", key=b"A", partition=0)  # offset 3
    producer.flush(30)
    producer.abort_transaction(30)  # abort marker at 4

    read = read_topic(kafka_bootstrap, topic, timeout_s=30, idle_s=1)

    assert [r.value for r in read.records] == [b"v1", b"v2"]
    assert read.incomplete == []


def test_a_transaction_left_open_is_reported_as_an_incomplete_read(kafka_bootstrap: str) -> None:
    topic = asyncio.run(fresh_topic(kafka_bootstrap, "checker-read"))
    producer = _transactional(kafka_bootstrap)
    _commit(producer, topic, [b"v1"])  # offset 0; commit marker at 1
    producer.begin_transaction()
    producer.produce(topic, b"hidden", key=b"A", partition=0)  # offset 2, left open
    producer.flush(30)
    try:
        read = read_topic(kafka_bootstrap, topic, timeout_s=30, idle_s=1)
    finally:
        producer.abort_transaction(30)

    assert [r.value for r in read.records] == [b"v1"]
    assert read.incomplete == [IncompleteRead(topic, 0, read_to=2, stable_end=2, high_watermark=3)]
    assert "a transaction left open hides what follows" in read.incomplete[0].describe()
