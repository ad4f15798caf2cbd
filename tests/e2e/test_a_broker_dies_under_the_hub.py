"""A broker of three dies under the hub (issue 12): no decision lost or duplicated, and
the hub and the adapter carry on without a restart.

The hub, the DGAL adapter and the simulated TRACES run on the local three-node KRaft
cluster (``gun-hub kafka start --nodes 3``), every topic with three replicas and min
ISR 2. Declarations are submitted in three waves: before the kill, while one broker is
dead (SIGKILL, no controlled shutdown: its partitions lose their leader and its
coordinators move), and once it has started again (it must then rejoin every ISR). Each
declaration must get exactly one decision, the partner's ledger must be exact, and every
process must be the one started at the beginning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from gun_tools.clearance_stand_in import ReceivedDecision
from gun_tools.local_broker import ClusterNode, LocalCluster
from gun_tools.processes import wait_http_ok
from tests.conftest import PARTITIONS, REPO, KafkaEnv, fresh_kafka_env
from tests.e2e.conftest import Pipeline, start_pipeline
from tests.e2e.load_on_one_document import (
    assert_each_decided_once_and_ledger_exact,
    collect_all_then_duplicates,
    collect_until,
    declarations,
    submit_load,
)
from tests.local_cluster import (
    NODES,
    all_isr,
    open_admin,
    partitions_of,
    poll_until,
    running_cluster,
)

pytestmark = [pytest.mark.broker, pytest.mark.e2e, pytest.mark.chaos]

log = logging.getLogger(__name__)

BEFORE_KILL = 200  # submitted first; the broker dies once a quarter of them are decided
WHILE_DEAD = 100  # submitted while it is dead
AFTER_RESTART = 50  # submitted once it answers again
ALL_NODES = set(range(1, NODES + 1))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(
        tmp_path_factory.mktemp("cluster"), REPO / ".gun-hub" / "cache", PARTITIONS
    )


@pytest.fixture
def cluster_env(cluster: LocalCluster, keys_dir: Path, tmp_path: Path) -> KafkaEnv:
    """The project's topics on the cluster, three replicas each."""
    return fresh_kafka_env(
        cluster.bootstrap_servers, keys_dir, tmp_path / "state", cluster.replication_factor
    )


@pytest.fixture
def pipeline_on_cluster(cluster_env: KafkaEnv, samples: Path, tmp_path: Path) -> Iterator[Pipeline]:
    """Hub, DGAL adapter and simulated TRACES, every client given the three nodes."""
    yield from start_pipeline(cluster_env, tmp_path, samples, partners=("dgal",))


async def project_topics(admin: AIOKafkaAdminClient, prefix: str) -> list[str]:
    """The test's topics: the registry's and those the hub made (table changelogs)."""
    return sorted(name for name in await admin.list_topics() if name.startswith(prefix))


async def min_isr(admin: AIOKafkaAdminClient, topics: list[str]) -> set[str]:
    """The distinct min.insync.replicas of ``topics``."""
    described = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in topics]
    )
    return {
        {entry[0]: entry[1] for entry in entries}["min.insync.replicas"]
        for response in described
        for *_, entries in response.resources
    }


async def choose_victim(
    admin: AIOKafkaAdminClient, cluster: LocalCluster, hub_group: str, topics: list[str]
) -> tuple[ClusterNode, dict[str, list[int]]]:
    """The hub's group coordinator: killing it moves the group, and it leads partitions
    of the project's topics (asserted: a kill that moves no leader proves little)."""
    victim = cluster.node(await admin.find_coordinator(hub_group))
    led: dict[str, list[int]] = {}
    for partition in await partitions_of(admin, topics):
        if partition["leader"] == victim.node_id:
            led.setdefault(partition["topic"], []).append(partition["partition"])
    assert led, f"node {victim.node_id} leads no partition of the project's topics"
    return victim, led


async def test_a_broker_killed_under_the_hub_loses_and_duplicates_no_decision(
    cluster: LocalCluster, pipeline_on_cluster: Pipeline
) -> None:
    began = time.monotonic()
    pipeline = pipeline_on_cluster
    prefix = pipeline.kafka.prefix
    group = pipeline.group
    admin = await open_admin(cluster.bootstrap_servers)
    waves = [
        [f"26FRNODE{wave}{n:09d}" for n in range(size)]
        for wave, size in enumerate((BEFORE_KILL, WHILE_DEAD, AFTER_RESTART))
    ]
    references = [reference for wave in waves for reference in wave]
    received: list[ReceivedDecision] = []
    try:
        topics = await project_topics(admin, prefix)
        # Every topic the pipeline uses, changelogs included, is replicated on all three
        # nodes and refuses a write that fewer than two of them hold.
        assert any("changelog" in name for name in topics), topics
        for partition in await partitions_of(admin, topics):
            assert set(partition["replicas"]) == ALL_NODES, partition
        assert await min_isr(admin, topics) == {"2"}
        pids = {name: child.process.pid for name, child in group.children.items()}
        assert set(pids) == {"partner-sim-dgal", "adapter-dgal", "hub"}

        reader = await submit_load(pipeline, waves[0])
        try:
            async with asyncio.timeout(120):
                await collect_until(reader, received, pipeline, BEFORE_KILL // 4)
            victim, led = await choose_victim(admin, cluster, f"{prefix}-hub", topics)
            decided_at_kill = len({r.decision.reference for r in received})
            killed_at = time.monotonic()
            assert await asyncio.to_thread(victim.kill)
            log.info(
                "killed node %d (the hub's group coordinator) with %d of %d declarations "
                "decided; it led %s",
                victim.node_id,
                decided_at_kill,
                BEFORE_KILL,
                {topic.removeprefix(prefix): parts for topic, parts in led.items()},
            )
            survivors = ALL_NODES - {victim.node_id}

            # Clearance goes on submitting while the node is dead (acks=all, two of
            # three in sync satisfy min ISR 2), and the hub goes on deciding: the first
            # wave, most of it still in flight at the kill, is decided without the node.
            await pipeline.submit(declarations(waves[1]))
            await poll_until(
                f"node {victim.node_id} out of every ISR of the project's topics",
                lambda: all_isr(admin, topics, survivors),
                60,
            )
            fenced_after = time.monotonic() - killed_at
            async with asyncio.timeout(180):
                await collect_until(reader, received, pipeline, BEFORE_KILL)
            assert victim.running_pid() is None
            first_wave_after = time.monotonic() - killed_at

            # The node starts again from its folder while the second wave is decided,
            # and the third is submitted once it answers; it must catch up every replica.
            await asyncio.to_thread(cluster.start)
            restarted_after = time.monotonic() - killed_at
            await pipeline.submit(declarations(waves[2]))
            await collect_all_then_duplicates(reader, received, pipeline, len(references))
            await poll_until(
                f"node {victim.node_id} back in every ISR",
                lambda: all_isr(admin, None, ALL_NODES),
                90,
            )
            rejoined_after = time.monotonic() - killed_at
        finally:
            await reader.stop()
        await assert_each_decided_once_and_ledger_exact(pipeline, received, references)

        # Nothing was restarted: the processes of the start, all alive, the hub ready.
        group.check_alive()
        assert {name: child.process.pid for name, child in group.children.items()} == pids
        wait_http_ok(f"http://127.0.0.1:{pipeline.hub_port}/readyz", 30, group)
        log.info(
            "%d declarations, %d decisions, 0 duplicated; node %d out of the ISRs after "
            "%.1fs, the first wave decided without it after %.1fs, node answering again "
            "after %.1fs and back in every ISR after %.1fs; test %.1fs",
            len(references),
            len(received),
            victim.node_id,
            fenced_after,
            first_wave_after,
            restarted_after,
            rejoined_after,
            time.monotonic() - began,
        )
    finally:
        await admin.close()
