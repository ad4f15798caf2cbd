"""The local three-node KRaft cluster in tests (issue 12): starting it, and reading its
partitions' leaders and in-sync replicas.

The integration test of the cluster itself (tests/integration/test_local_cluster.py) and
the end-to-end test of the hub on it (tests/e2e/test_a_broker_dies_under_the_hub.py)
share these. A cluster that cannot start fails the test that asked for it: never a skip.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from gun_contract.settings import BrokerSettings
from gun_tools.local_broker import BrokerError, LocalCluster
from gun_tools.processes import free_port

log = logging.getLogger(__name__)

NODES = 3


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports nobody listens on, none an outgoing connection may take
    (``free_port``)."""
    return [free_port() for _ in range(count)]


def running_cluster(home: Path, jars_cache: Path, partitions: int) -> Iterator[LocalCluster]:
    """A three-node cluster on free ports in ``home``, stopped when the caller is done
    (the body of a fixture); fails the test if it does not start."""
    ports = free_ports(2 * NODES)
    settings = BrokerSettings(
        home=home,
        jars_cache=jars_cache,
        cluster_ports=ports[:NODES],
        cluster_controller_ports=ports[NODES:],
        heap="512m",
        start_timeout_s=150,
    )
    local = LocalCluster(settings, partitions, nodes=NODES)
    began = time.monotonic()
    try:
        local.start()
    except BrokerError as err:
        pytest.fail(f"the three-node test cluster did not start: {err}", pytrace=False)
    log.info("cluster of %d nodes started in %.1fs", NODES, time.monotonic() - began)
    try:
        yield local
    finally:
        began = time.monotonic()
        local.stop()
        log.info("cluster stopped in %.1fs", time.monotonic() - began)


async def open_admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    return admin


async def partitions_of(
    admin: AIOKafkaAdminClient, topics: list[str] | None
) -> list[dict[str, Any]]:
    """Partitions of ``topics`` (None: every topic, the internal ones too), each with
    its topic name, leader, replicas and ISR."""
    found: list[dict[str, Any]] = []
    for described in await admin.describe_topics(topics):
        for partition in described["partitions"]:
            found.append({"topic": described["topic"], **partition})
    return found


async def all_isr(admin: AIOKafkaAdminClient, topics: list[str] | None, nodes: set[int]) -> bool:
    """Every partition of ``topics`` (None: all) has a leader and exactly ``nodes`` in sync."""
    try:
        partitions = await partitions_of(admin, topics)
    except (KafkaError, OSError, TimeoutError):
        return False
    return bool(partitions) and all(
        p["leader"] in nodes and set(p["isr"]) == nodes for p in partitions
    )


async def poll_until(what: str, check: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    """Poll a condition of the cluster (its metadata has no events to wait on)."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f}s: {what}")
        await asyncio.sleep(0.2)
