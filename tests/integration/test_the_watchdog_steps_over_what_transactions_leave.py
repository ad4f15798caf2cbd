"""What a committed read skips holds no record for the hub: a transaction's markers, and
everything an aborted transaction wrote, however long (gun_hub/runtime/watchdog.py).

The hub reads committed records only (gun_hub/runtime/strict_consumer.py). A clearance
system publishing in transactions leaves its last commit marker last in a partition, and
a committed read's end lies past it: nothing is ever fetched there, so only the
watchdog's look at the broker can say the offset holds nothing. Found by review in stop
31: the look never marked what followed the last record it saw, and read at most 2,000
offsets, so the partition's commit stayed behind a marker (its deadlines never fired)
or, behind a long aborted transaction, stopped for good. The look's own bookkeeping is
specified in tests/unit/test_offset_watchdog.py; this is the broker's side of it.
"""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer
from faust.types import TP

from gun_hub.runtime.watchdog import PROBE_MAX_RECORDS, OffsetWatchdog
from tests.integration.seeded_topics import fresh_topic

pytestmark = pytest.mark.broker


async def _in_a_transaction(bootstrap: str, topic: str, records: int, *, commit: bool) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"{topic}-{commit}", linger_ms=5
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        for n in range(records):
            await producer.send(topic, f"record {n}".encode(), partition=0)
        await producer.flush()
        if commit:
            await producer.commit_transaction()
        else:
            await producer.abort_transaction()
    finally:
        await producer.stop()


async def _look(bootstrap: str, topic: str, start: int, stop: int) -> tuple[set[int], int]:
    watchdog = OffsetWatchdog(lambda: None, bootstrap, {topic}, 4.0)
    try:
        return await watchdog._present(TP(topic, 0), start, stop)
    finally:
        await watchdog.stop()


async def test_a_commit_marker_last_in_the_log_is_seen_through(kafka_bootstrap: str) -> None:
    topic = await fresh_topic(kafka_bootstrap, "marker-last")
    await _in_a_transaction(kafka_bootstrap, topic, 3, commit=True)  # 0-2, marker at 3
    present, covered = await _look(kafka_bootstrap, topic, 0, 100)
    assert present == {0, 1, 2}
    assert covered == 4  # past the marker: offset 3 holds nothing


async def test_an_aborted_transaction_is_seen_through_a_window_at_a_time(
    kafka_bootstrap: str,
) -> None:
    topic = await fresh_topic(kafka_bootstrap, "aborted-long")
    aborted = PROBE_MAX_RECORDS + 500
    await _in_a_transaction(kafka_bootstrap, topic, aborted, commit=False)  # + its marker
    await _in_a_transaction(kafka_bootstrap, topic, 1, commit=True)
    first = aborted + 1  # the committed record, after the abort marker

    present, covered = await _look(kafka_bootstrap, topic, 0, first + 1)
    assert present == set()
    assert covered == PROBE_MAX_RECORDS  # one window, every offset of it read through
    present, covered = await _look(kafka_bootstrap, topic, covered, first + 1)
    assert present == {first}
    assert covered == first + 1
