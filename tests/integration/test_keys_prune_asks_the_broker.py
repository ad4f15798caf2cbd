"""``gun-hub keys prune`` on a real broker: a retired encryption key is kept while the
broker keeps the topics addressed to its party longer than the registry says (an
operator lengthened a request topic's retention for a partner's outage), and pruned once
that retention is back (review stop 39-S, S2). The unit tests stand the broker in:
tests/unit/test_a_key_is_pruned_only_once_the_brokers_retention_has_passed.py.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from gun_contract.kafka.admin import topic_retentions
from gun_contract.security.keystore import KeyUse
from tests.conftest import KafkaEnv
from tests.keystore_fixtures import DAY_MS, keys_prune, private_kids, retired_after_a_rotation

pytestmark = pytest.mark.broker


async def set_retention(env: KafkaEnv, topic: str, retention_ms: int) -> None:
    """``retention.ms`` of ``topic`` set as kafka-configs does (AlterConfigs replaces the
    topic's overrides: the registry's others are given again), once the broker describes
    it so (the change reaches the broker's configuration a moment after the answer)."""
    [spec] = [spec for spec in env.topics.specs() if spec.name == topic]
    admin = AIOKafkaAdminClient(bootstrap_servers=env.bootstrap)
    await admin.start()
    try:
        configs = {**spec.broker_config(), "retention.ms": str(retention_ms)}
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)]
        )
        deadline = time.monotonic() + 30
        while (await topic_retentions(admin, [topic])).get(topic) != retention_ms:
            assert time.monotonic() < deadline, f"the broker never described {topic} so"
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def test_prune_keeps_a_key_while_the_broker_keeps_its_topic_longer(
    kafka_env: KafkaEnv, own_keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        **kafka_env.env(),
        "GUN_HUB_SECURITY__KEYS_DIR": str(own_keys_dir),
    }.items():
        monkeypatch.setenv(name, value)
    now = datetime.now(UTC)
    [old_enc] = retired_after_a_rotation(
        own_keys_dir, "dgal", now - timedelta(days=61), uses=[KeyUse.ENC], use_from=now
    )
    requests = kafka_env.topics.requests("dgal")

    asyncio.run(set_retention(kafka_env, requests, 45 * DAY_MS))  # the partner's outage
    code, out, err = keys_prune("dgal", "--apply")
    assert code == 0, out + err
    assert f"keep dgal enc {old_enc}" in out
    assert "90 days" in out
    assert requests in out  # what the span comes from
    assert old_enc in private_kids(own_keys_dir, "dgal")

    asyncio.run(set_retention(kafka_env, requests, 7 * DAY_MS))  # the outage over
    code, out, err = keys_prune("dgal", "--apply")
    assert code == 0, out + err
    assert f"pruned dgal enc {old_enc}" in out
    assert old_enc not in private_kids(own_keys_dir, "dgal")
