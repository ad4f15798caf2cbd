"""The plaintext start-up brings an existing topic's size limit and timestamp type in line
with the contract, and nothing else (review stop 37, K2).

A topic made by hand or by an earlier release is aligned by ``ensure_topics``. Its
alteration used to replace every topic-level override with the registry's: a retention
an operator lengthened for a partner's outage (docs/operations.md) went back to 7 days, a
``min.insync.replicas`` and a compression were dropped. A compacted log topic or an audit
topic that deletes were left as they were, in silence. Now the operator's overrides are
sent back with the two aligned keys, and those two faults stop the start, changed by no one.
A retention shorter than the hub relies on (the deadlines topic's, stop 52) is lengthened.
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
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from gun_contract.kafka.admin import ensure_topics
from gun_contract.kafka.topic_settings import TopicSettingsRefused
from gun_contract.topics import TOPIC_MAX_MESSAGE_BYTES, TopicRegistry, topic_registry
from tests.conftest import PARTITIONS, REPO
from tests.local_cluster import poll_until

pytestmark = pytest.mark.broker

THIRTY_DAYS_MS = str(30 * 86_400_000)
SEVEN_DAYS_MS = str(7 * 86_400_000)
WATCHED = (
    "cleanup.policy",
    "retention.ms",
    "min.insync.replicas",
    "compression.type",
    "max.message.bytes",
    "message.timestamp.type",
)


def fresh_registry() -> TopicRegistry:
    return topic_registry(f"t{uuid.uuid4().hex[:10]}", ["dgal"])


async def made_by_hand(bootstrap: str, topics: dict[str, dict[str, str]]) -> None:
    """As an operator would with ``kafka-topics.sh --create --config ...``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, PARTITIONS, 1, topic_configs=c) for name, c in topics.items()]
        )

        async def listed() -> bool:
            return set(topics) <= set(await admin.list_topics())

        # Listed once the broker's metadata has them: a start-up that did not list them
        # yet would try to create them, not align them.
        await poll_until("the topics made by hand listed", listed, 30)
    finally:
        await admin.close()


async def described(bootstrap: str, name: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        [(_code, _message, _type, _name, entries)] = response.resources
        return {entry[0]: entry[1] for entry in entries if entry[0] in WATCHED}
    finally:
        await admin.close()


async def test_alignment_keeps_the_operators_other_overrides(kafka_bootstrap: str) -> None:
    topics = fresh_registry()
    requests = topics.requests("dgal")
    await made_by_hand(
        kafka_bootstrap,
        {
            requests: {
                "retention.ms": THIRTY_DAYS_MS,  # lengthened for a partner's outage
                "min.insync.replicas": "2",
                "compression.type": "zstd",
                # no size limit (the broker's 1 MiB) and CreateTime: the two to align
            }
        },
    )
    before = await described(kafka_bootstrap, requests)
    await ensure_topics(kafka_bootstrap, topics, PARTITIONS, 1)
    after = await described(kafka_bootstrap, requests)
    assert before["message.timestamp.type"] == "CreateTime"
    assert after == {
        **before,
        "max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES),
        "message.timestamp.type": "LogAppendTime",
    }
    assert after["retention.ms"] == THIRTY_DAYS_MS


async def test_a_larger_size_limit_is_left_alone(kafka_bootstrap: str) -> None:
    topics = fresh_registry()
    larger = str(2 * TOPIC_MAX_MESSAGE_BYTES)
    await made_by_hand(
        kafka_bootstrap,
        {
            topics.decisions: {
                **next(s for s in topics.specs() if s.name == topics.decisions).broker_config(),
                "max.message.bytes": larger,
                "retention.ms": THIRTY_DAYS_MS,
            }
        },
    )
    await ensure_topics(kafka_bootstrap, topics, PARTITIONS, 1)
    assert (await described(kafka_bootstrap, topics.decisions))["max.message.bytes"] == larger


async def test_a_deadlines_topic_made_by_an_earlier_release_keeps_its_notices_a_week(
    kafka_bootstrap: str,
) -> None:
    """Made with 24 hours before stop 52: a takeover notice read later than that was
    lost. The start-up lengthens it to the declarations' 7 days, keeping the rest."""
    topics = fresh_registry()
    spec = next(s for s in topics.specs() if s.name == topics.deadlines)
    await made_by_hand(
        kafka_bootstrap,
        {
            topics.deadlines: {
                **spec.broker_config(),
                "retention.ms": str(86_400_000),
                "min.insync.replicas": "1",
            }
        },
    )
    await ensure_topics(kafka_bootstrap, topics, PARTITIONS, 1)
    after = await described(kafka_bootstrap, topics.deadlines)
    assert (after["retention.ms"], after["min.insync.replicas"]) == (SEVEN_DAYS_MS, "1")


async def test_a_compacted_log_topic_or_a_deleting_audit_topic_stops_the_start(
    kafka_bootstrap: str,
) -> None:
    topics = fresh_registry()
    await made_by_hand(
        kafka_bootstrap,
        {
            topics.declarations: {
                "cleanup.policy": "compact",
                "message.timestamp.type": "LogAppendTime",
                "max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES),
            },
            topics.audit: {
                "retention.ms": SEVEN_DAYS_MS,
                "max.message.bytes": "1048588",  # alignable, but nothing is touched
            },
        },
    )
    with pytest.raises(TopicSettingsRefused) as refused:
        await ensure_topics(kafka_bootstrap, topics, PARTITIONS, 1)
    lines = {line.split(":")[0]: line for line in str(refused.value).splitlines()[1:]}
    assert sorted(lines) == sorted([topics.declarations, topics.audit])
    assert "cleanup.policy is compact, wanted delete" in lines[topics.declarations]
    assert f"retention.ms is {SEVEN_DAYS_MS}, wanted -1" in lines[topics.audit]
    # Refused as found: nothing altered, nothing created beside them.
    audit = await described(kafka_bootstrap, topics.audit)
    assert (audit["retention.ms"], audit["max.message.bytes"]) == (SEVEN_DAYS_MS, "1048588")
    assert (await described(kafka_bootstrap, topics.declarations))["cleanup.policy"] == "compact"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert topics.claims not in await admin.list_topics()
    finally:
        await admin.close()


def test_the_hub_does_not_start_on_a_compacted_declarations_topic(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The same refusal reaches the operator as ``cannot start``, exit 2 (cli/components.py)."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    declarations = f"{prefix}.declarations"
    asyncio.run(
        made_by_hand(
            kafka_bootstrap,
            {
                declarations: {
                    "cleanup.policy": "compact",
                    "message.timestamp.type": "LogAppendTime",
                    "max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES),
                }
            },
        )
    )
    env = {
        **os.environ,
        "GUN_HUB_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "GUN_HUB_KAFKA__TOPIC_PREFIX": prefix,
        "GUN_HUB_KAFKA__PARTITIONS": str(PARTITIONS),
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
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert f"{declarations}: cleanup.policy is compact, wanted delete" in result.stderr
