"""Every keyed topic has the configured partition count, or nothing starts (found by review
in stop 35).

The hub's tables, claims and answers are co-partitioned with ``gun.declarations``: a
declaration's case lives on the partition it arrived on, its claim's verdict and its
requests go back there. A declarations topic created by the clearance side with more
partitions than ``kafka.partitions`` (or grown to "scale by partitions" without the
hub's topics) sent the verdicts of its higher partitions to claims partitions that do
not exist: dead-lettered, the declaration held, its partition's commit stopped for good
while the worker looked healthy. Starting is refused instead, with what to do.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from gun_contract.kafka.admin import PartitionCountMismatch, ensure_topics
from gun_contract.topics import topic_registry
from tests.conftest import PARTITIONS, REPO, KafkaEnv


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
