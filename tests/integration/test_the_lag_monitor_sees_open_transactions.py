"""The lag monitor shows what an open transaction holds back from committed readers,
on the real broker (gun_hub/ops/lag_monitor.py).

The hub reads committed records only (stop 31): a transaction left open holds every
record after its first one on its partition, a trader's declaration through the gateway
as much as the clearance system's own. The broker aborts it after its timeout; a
transaction that hangs (KAFKA-12671) is not, and only an operator can end it. So the
monitor measures, per partition, the records between the stable end (what committed
readers may read up to) and the end, and since when the stable end has not moved.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer

from gun_contract.kafka.client import ClientConfig
from gun_hub.ops.lag_monitor import LagMonitor, WatchedGroup
from tests.integration.seeded_topics import fresh_topic

pytestmark = pytest.mark.broker


async def test_records_held_behind_an_open_transaction_are_measured_until_it_commits(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    topic = await fresh_topic(kafka_bootstrap, "held-open")
    monitor = LagMonitor(
        ClientConfig(kafka_bootstrap),
        [WatchedGroup("held-open-readers", (topic,))],
        hanging_after_s=0,  # every hold is old enough to be told of here
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic}-tx")
    plain = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await monitor.start()
    await producer.start()
    await plain.start()
    try:
        await plain.send_and_wait(topic, b"committed before", partition=0)
        opened = datetime.now(UTC)
        await producer.begin_transaction()
        for n in range(3):
            await producer.send(topic, f"in the transaction {n}".encode(), partition=0)
        await producer.flush()
        await plain.send_and_wait(topic, b"another party's, held too", partition=0)

        measured = await monitor.measure()
        [held] = measured.held
        assert (held.topic, held.partition, held.stable_end, held.records) == (topic, 0, 1, 4)
        assert held.since >= opened

        again = await monitor.measure()
        assert again.held[0].since == held.since  # the same transaction, still open
        hanging = [r for r in caplog.records if "a hanging transaction?" in r.getMessage()]
        assert len(hanging) == 1  # told once, not at every measurement
        assert f"{topic}[0]: 4 record(s) held" in hanging[0].getMessage()

        await producer.commit_transaction()
        # The commit returns once the coordinator decided it; the partition's stable end
        # moves once the leader wrote its marker, just after: measured until it has.
        async with asyncio.timeout(10):
            while (await monitor.measure()).held:  # noqa: ASYNC110 - the broker's state
                await asyncio.sleep(0.05)
    finally:
        await plain.stop()
        await producer.stop()
        await monitor.stop()
