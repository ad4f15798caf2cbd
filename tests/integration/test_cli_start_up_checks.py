"""Start-up refuses a bad configuration with a message naming the fault."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from gun_contract.kafka.acls import acl_plan, adapter_topics, gateway_topics
from gun_contract.kafka.admin import check_topic_configs
from gun_contract.kafka.client import ClientConfig
from gun_contract.kafka.topic_settings import TopicSettingsRefused
from gun_contract.settings import BrokerSettings
from gun_contract.topics import TOPIC_MAX_MESSAGE_BYTES, TopicRegistry, topic_registry
from gun_hub.domain.routing import load_routing_table
from gun_tools.local_broker import BrokerError, LocalBroker, apply_acls
from gun_tools.processes import free_port
from tests.conftest import PARTIES, PARTITIONS, REPO


def test_a_bad_routing_table_stops_the_hub_with_its_reason(tmp_path: Path) -> None:
    table = tmp_path / "routing.toml"
    table.write_text(
        '[authorities.dgal]\nname = "DGAL"\ncodes = ["C640"]\n'
        '[authorities.cites]\nname = "CITES"\ncodes = ["C640"]\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "gun_hub", "hub"],
        env={**os.environ, "GUN_HUB_HUB__ROUTING_TABLE": str(table)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "document code C640 is routed to both dgal and cites" in result.stderr
    assert "Traceback" not in result.stderr


# -- topic settings on a secured cluster (review stop 37, K1) ---------------------------------

# aiokafka closes a TLS connection without awaiting asyncio's TLS shutdown (see
# test_secured_broker.py): the garbage collector reports the socket as unclosed.
TLS_SOCKETS_RECLAIMED = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <(function _SelectorTransport.__del__|socket.socket)"
    ":pytest.PytestUnraisableExceptionWarning"
)
SEVEN_DAYS_MS = str(7 * 86_400_000)
# What an admin left at the broker's defaults, or set by hand, on three topics.
LEFT_BY_THE_ADMIN = {
    "gun.declarations": {"message.timestamp.type": "CreateTime"},
    "gun.decisions": {"max.message.bytes": "1048588"},
    "gun.audit": {"retention.ms": SEVEN_DAYS_MS},
}


@pytest.fixture(scope="module")
def secured(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalBroker, TopicRegistry]]:
    """The secured broker with every topic made by its admin, as ``kafka-topics.sh`` would
    (three of them left with settings that break the contract), and the ACL plan granted."""
    settings = BrokerSettings(
        home=tmp_path_factory.mktemp("secure-kafka"),
        jars_cache=REPO / ".gun-hub" / "cache",
        port=free_port(),
        controller_port=free_port(),
        secure=True,
        start_timeout_s=90,
    )
    broker = LocalBroker(settings, PARTITIONS, PARTIES)
    topics = topic_registry("gun", load_routing_table(REPO / "config" / "routing.toml").authorities)
    try:
        broker.start()
    except BrokerError as err:
        pytest.fail(f"the secured test broker did not start: {err}", pytrace=False)
    try:
        asyncio.run(_made_by_the_admin(broker.client_config("admin"), topics))
        apply_acls(broker, acl_plan(topics, "gun-hub", "gun-clearance"))
        yield broker, topics
    finally:
        broker.stop()
        gc.collect()  # aiokafka's abandoned TLS sockets, reclaimed before the next module


async def _made_by_the_admin(admin_config: ClientConfig, topics: TopicRegistry) -> None:
    admin = AIOKafkaAdminClient(**admin_config.options())
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    spec.name,
                    PARTITIONS if spec.keyed else 1,
                    1,
                    topic_configs={
                        **spec.broker_config(),
                        **LEFT_BY_THE_ADMIN.get(spec.name, {}),
                    },
                )
                for spec in topics.specs()
            ]
        )
    finally:
        await admin.close()


async def _described(config: ClientConfig, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(**config.options())
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        [(_code, _message, _type, _name, entries)] = response.resources
        return {entry[0]: entry[1] for entry in entries}
    finally:
        await admin.close()


@pytest.mark.broker
@TLS_SOCKETS_RECLAIMED
def test_a_secured_start_refuses_topics_whose_settings_break_the_contract(
    secured: tuple[LocalBroker, TopicRegistry], keys_dir: Path, tmp_path: Path
) -> None:
    broker, _topics = secured
    hub = broker.client_config("hub")
    env = {
        **os.environ,
        "GUN_HUB_KAFKA__BOOTSTRAP_SERVERS": hub.bootstrap_servers,
        "GUN_HUB_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "GUN_HUB_KAFKA__SASL_USERNAME": "hub",
        "GUN_HUB_KAFKA__SASL_PASSWORD": str(hub.password),
        "GUN_HUB_KAFKA__SSL_CAFILE": str(hub.ca_file),
        "GUN_HUB_KAFKA__PARTITIONS": str(PARTITIONS),
        "GUN_HUB_SECURITY__KEYS_DIR": str(keys_dir),
        "GUN_HUB_SECURITY__STATE_DIR": str(tmp_path / "state"),
        "GUN_HUB_HUB__DATA_DIR": str(tmp_path / "hub"),
        "GUN_HUB_HUB__WEB_PORT": str(free_port()),
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
    named = {
        line.split(":")[0]: line for line in result.stderr.splitlines() if line.startswith("gun.")
    }
    assert sorted(named) == sorted(LEFT_BY_THE_ADMIN)  # one line per topic, no other
    assert "message.timestamp.type is CreateTime, wanted LogAppendTime" in named["gun.declarations"]
    assert (
        f"max.message.bytes is 1048588, wanted at least {TOPIC_MAX_MESSAGE_BYTES}"
        in named["gun.decisions"]
    )
    assert f"retention.ms is {SEVEN_DAYS_MS}, wanted -1" in named["gun.audit"]
    assert "--entity-name gun.audit --add-config retention.ms=-1" in named["gun.audit"]
    # Described only: nothing was changed.
    admin = broker.client_config("admin")
    assert asyncio.run(_described(admin, "gun.audit"))["retention.ms"] == SEVEN_DAYS_MS
    declarations = asyncio.run(_described(admin, "gun.declarations"))
    assert declarations["message.timestamp.type"] == "CreateTime"


@pytest.mark.broker
@TLS_SOCKETS_RECLAIMED
async def test_each_party_may_describe_the_settings_of_the_topics_it_checks(
    secured: tuple[LocalBroker, TopicRegistry], caplog: pytest.LogCaptureFixture
) -> None:
    broker, topics = secured
    by_name = {spec.name: spec for spec in topics.specs()}
    caplog.set_level(logging.WARNING, logger="gun_contract.kafka.admin")
    # The gateway is granted DescribeConfigs on gun.declarations: what it finds stops it.
    with pytest.raises(TopicSettingsRefused) as refused:
        await check_topic_configs(
            broker.client_config("gateway"), [by_name[n] for n in gateway_topics(topics)]
        )
    assert list(refused.value.found) == ["gun.declarations"]
    # An adapter checks its own topics, all as the registry wants them: no fault, no warning.
    for authority in topics.authorities:
        own = [by_name[n] for n in adapter_topics(topics, authority)]
        await check_topic_configs(broker.client_config(authority), own)
    assert "DescribeConfigs" not in caplog.text


@pytest.mark.broker
@TLS_SOCKETS_RECLAIMED
async def test_a_principal_not_allowed_to_describe_configs_is_warned_not_stopped(
    secured: tuple[LocalBroker, TopicRegistry], caplog: pytest.LogCaptureFixture
) -> None:
    """The clearance system's principal has Describe but no DescribeConfigs on
    gun.declarations (left on CreateTime): the settings go unchecked, with one warning
    naming the missing ACL, and nothing is refused."""
    broker, topics = secured
    caplog.set_level(logging.WARNING, logger="gun_contract.kafka.admin")
    declarations = next(s for s in topics.specs() if s.name == topics.declarations)
    await check_topic_configs(broker.client_config("clearance"), [declarations])
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "may not DescribeConfigs topics gun.declarations" in warning.getMessage()
    assert "grant it the DescribeConfigs ACL" in warning.getMessage()
