"""Every keyed topic has the configured partition count, or nothing starts (found by review
in stop 35).

The hub's tables, claims and answers are co-partitioned with ``gun.declarations``: a
declaration's case lives on the partition it arrived on, its claim's verdict and its
requests go back there. A declarations topic created by the clearance side with more
partitions than ``kafka.partitions`` (or grown to "scale by partitions" without the
hub's topics) sent the verdicts of its higher partitions to claims partitions that do
not exist: dead-lettered, the declaration held, its partition's commit stopped for good
while the worker looked healthy. Starting is refused instead, with what to do.

A topic grown while the hub runs (an operator, a Strimzi KafkaTopic edited) did the same
without a restart: the group's next rebalance handed the worker the new partitions
(review stop 37, K3). The worker stops at that assignment instead, with the same
message, before it reads a record of them: they wait in the log for the topics to be
aligned.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic

from gun_contract.dead_letter import HEADER_ERROR_KIND
from gun_contract.envelope import ContentType
from gun_contract.kafka.admin import PartitionCountMismatch, ensure_topics
from gun_contract.security.entitlements import CLEARANCE_PARTY, HUB_PARTY
from gun_contract.topics import topic_registry
from gun_hub.runtime.delivery import UNDELIVERABLE
from gun_hub.xml.declaration_codec import sniff_identity
from gun_tools.processes import ProcessGroup, free_port, wait_http_ok
from tests.conftest import PARTITIONS, REPO, KafkaEnv

pytestmark = pytest.mark.broker


async def _create(bootstrap: str, name: str, partitions: int) -> None:
    """``name`` with ``partitions``, as the clearance side would create it, once the
    broker describes it with a leader for each partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
        async with asyncio.timeout(30):
            while True:
                [topic] = await admin.describe_topics([name])
                if not topic["error_code"] and len(topic["partitions"]) == partitions:
                    return
                await asyncio.sleep(0.1)
    finally:
        await admin.close()


def test_a_declarations_topic_with_more_partitions_is_named_and_nothing_is_created(
    kafka_bootstrap: str, kafka_env: KafkaEnv
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    topics = topic_registry(prefix, kafka_env.routing.authorities)
    asyncio.run(_create(kafka_bootstrap, topics.declarations, PARTITIONS * 2))
    with pytest.raises(PartitionCountMismatch) as refused:
        asyncio.run(ensure_topics(kafka_bootstrap, topics, PARTITIONS, 1))
    message = str(refused.value)
    assert f"{topics.declarations} has {PARTITIONS * 2} partitions" in message
    assert f"kafka.partitions is {PARTITIONS}" in message
    # The hub's topics were not created at the wrong count beside it.
    admin_topics = asyncio.run(_list(kafka_bootstrap))
    assert topics.claims not in admin_topics


async def _list(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def test_the_hub_does_not_start_on_topics_of_another_partition_count(
    kafka_bootstrap: str, kafka_env: KafkaEnv, tmp_path: Path
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    topics = topic_registry(prefix, kafka_env.routing.authorities)
    asyncio.run(_create(kafka_bootstrap, topics.declarations, PARTITIONS + 1))
    env = {
        **os.environ,
        **kafka_env.env(),
        "GUN_HUB_KAFKA__TOPIC_PREFIX": prefix,
        "GUN_HUB_HUB__APP_ID": f"{prefix}-hub",
        "GUN_HUB_HUB__DATA_DIR": str(tmp_path / "hub"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "gun_hub", "hub"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert f"{topics.declarations} has {PARTITIONS + 1} partitions" in result.stderr
    assert "Traceback" not in result.stderr


async def _grow(bootstrap: str, name: str, partitions: int) -> None:
    """``name`` grown to ``partitions``, as an operator would, once the broker describes
    every new partition with a leader."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_partitions({name: NewPartitions(total_count=partitions)})
        async with asyncio.timeout(30):
            while True:
                [topic] = await admin.describe_topics([name])
                if len(topic["partitions"]) == partitions:
                    return
                await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def _send_to(bootstrap: str, topic: str, partition: int, key: bytes, value: bytes) -> int:
    """The offset ``value`` was written at, on ``partition`` named outright."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=16 * 1024 * 1024)
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, value, key=key, partition=partition)
        return int(sent.offset)
    finally:
        await producer.stop()


async def _dead_letter_kinds(bootstrap: str, topic: str) -> list[str]:
    """The kind of every committed dead letter on ``topic``."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    kinds: list[str] = []
    try:
        ends = await consumer.end_offsets(list(consumer.assignment()))
        async with asyncio.timeout(60):
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    kinds += [
                        value.decode()
                        for record in records
                        for name, value in record.headers
                        if name == HEADER_ERROR_KIND
                    ]
    finally:
        await consumer.stop()
    return kinds


async def _committed(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    found = offsets.get(tp)
    return None if found is None or found.offset < 0 else int(found.offset)


def test_partitions_added_while_running_stop_the_worker(
    kafka_env: KafkaEnv, samples: Path, tmp_path: Path
) -> None:
    topics = kafka_env.topics
    grown = PARTITIONS + 2
    hub_port = free_port()
    env = {
        **kafka_env.env(),
        "GUN_HUB_HUB__DATA_DIR": str(tmp_path / "hub"),
        "GUN_HUB_HUB__WEB_PORT": str(hub_port),
        # faust's own setting (its default: 5 minutes): how soon the group's leader sees
        # the new partitions and rebalances. Nothing is read from them before that.
        "CONSUMER_METADATA_MAX_AGE_MS": "1000",
    }
    with ProcessGroup(tmp_path / "logs", env) as group:
        hub = group.start("hub", ["hub"])
        wait_http_ok(f"http://127.0.0.1:{hub_port}/readyz", 90, group)

        asyncio.run(_grow(kafka_env.bootstrap, topics.declarations, grown))
        declaration = (samples / "declarations" / "01-release-salmon.xml").read_bytes()
        identity = sniff_identity(declaration)
        assert identity is not None
        sealed = kafka_env.envelope(CLEARANCE_PARTY).seal(
            declaration,
            recipient=HUB_PARTY,
            topic=topics.declarations,
            content_type=ContentType.XML,
        )
        new_partition = grown - 1  # claims, requests, outbox... have no such partition
        offset = asyncio.run(
            _send_to(
                kafka_env.bootstrap,
                topics.declarations,
                new_partition,
                identity.reference.encode(),
                sealed,
            )
        )

        try:
            code = hub.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the hub kept running on a grown topic:\n{hub.log_tail(60)}")
        log = hub.log_file.read_text(errors="replace")

    assert code != 0
    assert f"{topics.declarations} has {grown} partitions" in log
    assert f"kafka.partitions is {PARTITIONS}" in log
    assert "refused by the broker" not in log  # no record sent to a partition missing
    assert UNDELIVERABLE not in asyncio.run(_dead_letter_kinds(kafka_env.bootstrap, topics.dlq))
    # Never read, never committed past: the declaration waits in the log for the other
    # topics to be grown to the same count and the hub started again.
    committed = asyncio.run(
        _committed(
            kafka_env.bootstrap,
            f"{kafka_env.prefix}-hub",
            TopicPartition(topics.declarations, new_partition),
        )
    )
    assert committed is None or committed <= offset
