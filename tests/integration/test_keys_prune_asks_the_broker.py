"""``gun-hub keys prune`` on a real broker: a retired encryption key is kept while the
broker keeps the topics addressed to its party longer than the registry says (an
operator lengthened a request topic's retention for a partner's outage), and pruned once
that retention is back (review stop 39-S, S2). The unit tests stand the broker in:
tests/unit/test_a_key_is_pruned_only_once_the_brokers_retention_has_passed.py.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from typer.testing import CliRunner

from gun_contract.kafka.admin import topic_retentions
from gun_contract.security.keystore import KeyStatus, KeystoreFolder, KeyUse
from gun_hub.cli import app
from tests.conftest import KafkaEnv

pytestmark = pytest.mark.broker

DAY_MS = 86_400_000


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


def private_kids(folder: Path) -> set[str]:
    return {entry["kid"] for entry in json.loads((folder / "dgal.jwk").read_text())["keys"]}


def test_prune_keeps_a_key_while_the_broker_keeps_its_topic_longer(
    kafka_env: KafkaEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "keys"
    shutil.copytree(kafka_env.keys_dir, folder)
    for name, value in {**kafka_env.env(), "GUN_HUB_SECURITY__KEYS_DIR": str(folder)}.items():
        monkeypatch.setenv(name, value)
    [old_enc] = [
        k.kid
        for k in KeystoreFolder(folder).public_keys().values()
        if k.party == "dgal" and k.use is KeyUse.ENC and k.status is KeyStatus.ACTIVE
    ]
    now = datetime.now(UTC)
    KeystoreFolder(folder).rotate("dgal", use_from=now)
    KeystoreFolder(folder).retire(old_enc, since=now - timedelta(days=15))
    requests = kafka_env.topics.requests("dgal")

    asyncio.run(set_retention(kafka_env, requests, 30 * DAY_MS))  # the partner's outage
    kept = CliRunner().invoke(app, ["keys", "prune", "--party", "dgal", "--apply"])
    assert kept.exit_code == 0, kept.output
    assert f"keep dgal enc {old_enc}" in kept.stdout
    assert "60 days" in kept.stdout
    assert requests in kept.stdout  # what the span comes from
    assert old_enc in private_kids(folder)

    asyncio.run(set_retention(kafka_env, requests, 7 * DAY_MS))  # the outage over
    pruned = CliRunner().invoke(app, ["keys", "prune", "--party", "dgal", "--apply"])
    assert pruned.exit_code == 0, pruned.output
    assert f"pruned dgal enc {old_enc}" in pruned.stdout
    assert old_enc not in private_kids(folder)
