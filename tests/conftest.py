"""Shared fixtures: the real Kafka broker of the test session, and isolated topic sets.

The broker is the project's own embedded broker (:class:`LocalBroker`) on free ports with
a throw-away data folder, started once per session by the first test that needs it. A
broker that cannot start fails those tests, locally and in CI alike: never a skip. To run
against a broker you already have, set ``GUN_HUB_TEST_BOOTSTRAP=host:port``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _pytest.logging import LogCaptureHandler

from gun_contract.kafka.admin import ensure_topics
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.jose_envelope import EnvelopePolicy, JoseEnvelope
from gun_contract.security.keystore import KeystoreFolder, PartyKeys
from gun_contract.security.replay import MemoryReplayGuard
from gun_contract.settings import (
    BrokerSettings,
    HubSettings,
    KafkaSettings,
    SecuritySettings,
    Settings,
)
from gun_contract.topics import TopicRegistry, topic_registry
from gun_hub.domain.routing import RoutingTable, load_routing_table
from gun_tools.local_broker import BrokerError, LocalBroker
from gun_tools.processes import free_port

REPO = Path(__file__).resolve().parent.parent
PARTITIONS = 4


# What gun_contract.logs.configure_logging sets besides the root logger's handlers and level.
_LEVELS_SET_AT_START_UP = ("aiokafka", "kafka")


@pytest.fixture(autouse=True)
def logging_left_as_it_was() -> Iterator[None]:
    """The root logger's handlers and level, and the loggers a command's start-up quiets,
    as before the test. A command run in the test's process (``CliRunner().invoke(app,
    ["hub"])``, ``configure_logging`` itself) configures logging as a process does once:
    its handler wrote to the runner's stderr, closed once the command returned, and every
    later test's log records ended in "ValueError: I/O operation on closed file" tracebacks
    on that test's stderr (the keystore's in stop 56's CI), with the root at INFO. A test
    reading its stderr line by line failed when anything logged meanwhile (a start-up's
    "waiting for Kafka"). pytest's own capture handlers of the test's phase are left to
    pytest; those of an earlier phase put back by a test's own restoring are dropped."""
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    levels = {name: logging.getLogger(name).level for name in _LEVELS_SET_AT_START_UP}
    yield
    root.handlers[:] = [h for h in before if not isinstance(h, LogCaptureHandler)] + [
        h for h in root.handlers if isinstance(h, LogCaptureHandler) and h not in before
    ]
    root.setLevel(level)
    for name, was in levels.items():
        logging.getLogger(name).setLevel(was)


@pytest.fixture(scope="session")
def local_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker | None]:
    """The session's own broker (None when GUN_HUB_TEST_BOOTSTRAP names another one)."""
    if os.environ.get("GUN_HUB_TEST_BOOTSTRAP"):
        yield None
        return
    broker = started_test_broker(tmp_path_factory.mktemp("kafka"))
    yield broker
    broker.stop()


def started_test_broker(home: Path) -> LocalBroker:
    """A broker of the tests' own, on free ports, started (a test that fails otherwise)."""
    broker = LocalBroker(
        BrokerSettings(
            home=home,
            jars_cache=REPO / ".gun-hub" / "cache",
            port=free_port(),
            controller_port=free_port(),
            heap="512m",
            start_timeout_s=90,
        ),
        partitions=PARTITIONS,
    )
    try:
        broker.start()
    except BrokerError as err:
        pytest.fail(f"the test Kafka broker did not start: {err}", pytrace=False)
    return broker


@pytest.fixture(scope="session")
def kafka_bootstrap(local_broker: LocalBroker | None) -> str:
    """Bootstrap servers of the real broker of this test session."""
    if local_broker is None:
        return os.environ["GUN_HUB_TEST_BOOTSTRAP"]
    return local_broker.bootstrap_servers


PARTIES = ["hub", "clearance", "gateway", "cites", "dga", "dgal"]


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keys of every party, generated for this test session only."""
    folder = tmp_path_factory.mktemp("keys")
    KeystoreFolder(folder).init(PARTIES, force=True)
    return folder


@pytest.fixture
def own_keys_dir(keys_dir: Path, tmp_path: Path) -> Path:
    """A copy of the session's keys for this test alone, to rotate, retire and prune."""
    copy = tmp_path / "keys"
    shutil.copytree(keys_dir, copy)
    return copy


def envelope_of(
    party: str, topics: TopicRegistry, keys_dir: Path, policy: EnvelopePolicy | None = None
) -> JoseEnvelope:
    """``party``'s envelope with in-memory replay memory (a fresh one per call)."""
    return JoseEnvelope(
        PartyKeys.load(keys_dir, party),
        Entitlements.from_registry(topics),
        MemoryReplayGuard(),
        policy,
    )


@dataclass(frozen=True)
class KafkaEnv:
    """A broker plus a topic prefix of the test's own, with every topic created."""

    bootstrap: str
    prefix: str
    topics: TopicRegistry
    routing: RoutingTable
    keys_dir: Path
    state_dir: Path
    replication_factor: int = 1

    def settings(self, **hub: object) -> Settings:
        return Settings(
            kafka=KafkaSettings(
                bootstrap_servers=self.bootstrap,
                topic_prefix=self.prefix,
                partitions=PARTITIONS,
                replication_factor=self.replication_factor,
            ),
            hub=HubSettings(**hub),
            security=SecuritySettings(keys_dir=self.keys_dir, state_dir=self.state_dir),
        )

    def envelope(self, party: str) -> JoseEnvelope:
        return envelope_of(party, self.topics, self.keys_dir)

    def env(self) -> dict[str, str]:
        """Environment variables that point a child process at this broker and prefix."""
        return {
            "GUN_HUB_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "GUN_HUB_KAFKA__TOPIC_PREFIX": self.prefix,
            "GUN_HUB_KAFKA__PARTITIONS": str(PARTITIONS),
            "GUN_HUB_KAFKA__REPLICATION_FACTOR": str(self.replication_factor),
            "GUN_HUB_HUB__APP_ID": f"{self.prefix}-hub",
            "GUN_HUB_SECURITY__KEYS_DIR": str(self.keys_dir),
            "GUN_HUB_SECURITY__STATE_DIR": str(self.state_dir),
        }


def fresh_kafka_env(
    bootstrap: str, keys_dir: Path, state_dir: Path, replication_factor: int = 1
) -> KafkaEnv:
    """Every topic of a fresh prefix created on ``bootstrap``, with ``replication_factor``
    replicas (a cluster's min ISR is its own: the topics take the broker's default)."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    routing = load_routing_table(REPO / "config" / "routing.toml")
    topics = topic_registry(prefix, routing.authorities)
    asyncio.run(ensure_topics(bootstrap, topics, PARTITIONS, replication_factor))
    return KafkaEnv(bootstrap, prefix, topics, routing, keys_dir, state_dir, replication_factor)


@pytest.fixture
def kafka_env(kafka_bootstrap: str, keys_dir: Path, tmp_path: Path) -> KafkaEnv:
    """Fresh topics (own prefix) on the session broker, so tests never see each other."""
    return fresh_kafka_env(kafka_bootstrap, keys_dir, tmp_path / "state")


@pytest.fixture(scope="session")
def routing_table() -> RoutingTable:
    return load_routing_table(REPO / "config" / "routing.toml")


@pytest.fixture(scope="session")
def samples() -> Path:
    return REPO / "samples"
