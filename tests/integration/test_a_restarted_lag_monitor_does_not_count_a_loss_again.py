"""On the real broker: a lag monitor started again (its hub worker restarted) while a
group's commit is still below the log start reads back the snapshots on ``gun.ops.lag``
and does not count what they show counted again; counted again, the page fired a second
time for the same records and the counter's total held them twice (stop 58). What
retention deleted since is counted (docs/adr/0028).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY

from gun_contract.kafka.client import ClientConfig
from gun_hub.ops.lag_monitor import LagMonitor, WatchedGroup
from tests.integration.seeded_topics import fresh_topic, seeded_topic
from tests.integration.test_the_lag_monitor_counts_no_lag_below_the_log_start import (
    delete_before,
)
from tests.integration.test_the_lag_monitor_dates_the_oldest_unread_record import commit

pytestmark = pytest.mark.broker

LOST = "gun_hub_consumergroup_lost_to_retention_total"


def every_30_s(start: datetime) -> Iterator[datetime]:
    at = start
    while True:
        yield at
        at += timedelta(seconds=30)


async def test_a_monitor_started_again_counts_only_what_retention_deleted_since(
    kafka_bootstrap: str,
) -> None:
    topic = await seeded_topic(kafka_bootstrap, "lost-restart", 10)
    snapshots = await fresh_topic(kafka_bootstrap, "ops-lag-restart")
    tp = TopicPartition(topic, 0)
    group = f"{topic}-stopped"
    await commit(kafka_bootstrap, group, tp, 2)  # read 2, then stopped
    await delete_before(kafka_bootstrap, tp, 6)  # retention deletes records 0 to 5

    def counted() -> float:
        return REGISTRY.get_sample_value(LOST, {"consumergroup": group, "topic": topic}) or 0

    def monitor(clock: Iterator[datetime]) -> LagMonitor:
        return LagMonitor(
            ClientConfig(kafka_bootstrap),
            [WatchedGroup(group, (topic,))],
            clock=lambda: next(clock),
            dating_timeout_s=30,
            snapshots_topic=snapshots,
        )

    # The first worker's monitor: finds the loss, counts it, publishes for 90 s.
    first = monitor(every_30_s(datetime.now(UTC) - timedelta(minutes=5)))
    await first.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for _ in range(4):
            await producer.send_and_wait(snapshots, (await first.measure()).to_bytes())
    finally:
        await producer.stop()
        await first.stop()
    assert counted() == 4

    # Restarted, the loss as it was: nothing counted again.
    again = monitor(every_30_s(datetime.now(UTC)))
    await again.start()
    try:
        measured = await again.measure()
        assert [p.lost for p in measured.partitions] == [4]
        assert counted() == 4  # not 8
        # Retention goes on while the commit stays: what it deleted since is counted.
        await delete_before(kafka_bootstrap, tp, 8)
        await again.measure()
        assert counted() == 4 + 2
    finally:
        await again.stop()
