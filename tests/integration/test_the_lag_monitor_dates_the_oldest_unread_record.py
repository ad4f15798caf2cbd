"""The lag monitor dates each lagging group's oldest unread record by the broker's
log-append time, and judges it against the topic's retention as the broker describes it,
on the real broker (review stop 38-L, L1: page before retention deletes what nobody read).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client import CollectorRegistry, generate_latest

from gun_contract.kafka.client import ClientConfig
from gun_hub.ops.lag_metrics import OpsCollector, OpsState
from gun_hub.ops.lag_monitor import LagMonitor, WatchedGroup
from tests.integration.seeded_topics import fresh_topic

pytestmark = pytest.mark.broker

HOURS_36_MS = 36 * 3600 * 1000


async def contract_like_topic(bootstrap: str, prefix: str, retention_ms: int) -> str:
    """A topic stamped by the broker (LogAppendTime, as the contract's topics are), with a
    retention that is no default: the monitor can only know it from the broker."""
    topic = f"{prefix}-{time.time_ns()}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    topic,
                    1,
                    1,
                    topic_configs={
                        "message.timestamp.type": "LogAppendTime",
                        "retention.ms": str(retention_ms),
                    },
                )
            ]
        )
    finally:
        await admin.close()
    return topic


async def commit(bootstrap: str, group: str, tp: TopicPartition, offset: int) -> None:
    """``group`` has read ``tp`` up to ``offset`` (a commit of a group with no member)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: offset})
    finally:
        await consumer.stop()


async def set_retention(bootstrap: str, topic: str, retention_ms: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    topic,
                    configs={
                        "message.timestamp.type": "LogAppendTime",
                        "retention.ms": str(retention_ms),
                    },
                )
            ]
        )
    finally:
        await admin.close()


def exposition(state: OpsState) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(OpsCollector(state))
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in generate_latest(registry).decode().splitlines()
        if line.startswith(("gun_hub_consumergroup_", "gun_hub_topic_retention"))
    }


async def test_the_oldest_unread_records_age_and_the_topics_real_retention_are_measured(
    kafka_bootstrap: str,
) -> None:
    topic = await contract_like_topic(kafka_bootstrap, "unread-age", HOURS_36_MS)
    tp = TopicPartition(topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        sent = [
            await producer.send_and_wait(topic, f"r{n}".encode(), partition=0) for n in range(3)
        ]
    finally:
        await producer.stop()
    await commit(kafka_bootstrap, "unread-age-behind", tp, 1)  # record 1 onwards unread
    await commit(kafka_bootstrap, "unread-age-done", tp, 3)  # caught up
    monitor = LagMonitor(
        ClientConfig(kafka_bootstrap),
        [
            WatchedGroup("unread-age-behind", (topic,)),
            WatchedGroup("unread-age-done", (topic,)),
            WatchedGroup("unread-age-never", (topic,)),  # never committed: from the start
        ],
        dating_timeout_s=30,
    )
    await monitor.start()
    try:
        measured = await monitor.measure()
        by_group = {u.group: u for u in measured.unread}
        assert set(by_group) == {"unread-age-behind", "unread-age-never"}  # done: no age
        behind = by_group["unread-age-behind"]
        appended = datetime.fromtimestamp(sent[1].timestamp / 1000, UTC)  # the broker's
        assert sent[1].timestamp_type == 1  # LogAppendTime
        assert (behind.topic, behind.partition, behind.offset) == (topic, 0, 1)
        assert behind.appended == appended
        assert behind.age_s == pytest.approx((measured.at - appended).total_seconds(), abs=1e-3)
        assert 0 <= behind.age_s < 120
        assert behind.retention_s == 36 * 3600  # the topic's, not the contract's 7 days
        assert behind.headroom_s == pytest.approx(36 * 3600 - behind.age_s)
        assert by_group["unread-age-never"].offset == 0

        state = OpsState(lag=measured)
        series = exposition(state)
        where = f'consumergroup="unread-age-behind",partition="0",topic="{topic}"'
        assert series[
            f"gun_hub_consumergroup_oldest_unread_age_seconds{{{where}}}"
        ] == pytest.approx(behind.age_s)
        assert series[
            f"gun_hub_consumergroup_retention_headroom_seconds{{{where}}}"
        ] == pytest.approx(behind.headroom_s)
        assert series[f'gun_hub_topic_retention_seconds{{topic="{topic}"}}'] == 36 * 3600
        dated = [
            s
            for s in series
            if s.startswith(("gun_hub_consumergroup_oldest", "gun_hub_consumergroup_retention"))
        ]
        assert not [s for s in dated if 'consumergroup="unread-age-done"' in s]

        # An operator lengthens the retention for an outage: the next measurement says so.
        await set_retention(kafka_bootstrap, topic, 2 * HOURS_36_MS)
        again = {u.group: u for u in (await monitor.measure()).unread}
        assert again["unread-age-behind"].retention_s == 72 * 3600
        assert again["unread-age-behind"].appended == appended

        # The group reads on to the end: no age left (never the last one it had).
        await commit(kafka_bootstrap, "unread-age-behind", tp, 3)
        caught_up = await monitor.measure()
        assert {u.group for u in caught_up.unread} == {"unread-age-never"}
    finally:
        await monitor.stop()


async def test_a_commit_point_before_a_transactions_marker_has_no_age(
    kafka_bootstrap: str,
) -> None:
    """The lag counts the commit marker (one offset), but nothing is left to read: no
    age, and the monitor does not wait its reading time out for one."""
    topic = await fresh_topic(kafka_bootstrap, "unread-marker")
    tp = TopicPartition(topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic}-tx")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topic, b"committed", partition=0)
    finally:
        await producer.stop()
    await commit(kafka_bootstrap, "unread-marker-readers", tp, 1)  # the record read
    monitor = LagMonitor(
        ClientConfig(kafka_bootstrap),
        [WatchedGroup("unread-marker-readers", (topic,))],
        dating_timeout_s=30,
    )
    await monitor.start()
    try:
        began = time.monotonic()
        measured = await monitor.measure()
        assert time.monotonic() - began < 15  # read through to the stable end, not timed out
        [lag] = measured.partitions
        assert (lag.committed, lag.end, lag.lag) == (1, 2, 1)
        assert measured.unread == []
    finally:
        await monitor.stop()
