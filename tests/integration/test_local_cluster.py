"""The local three-node KRaft cluster (``gun-hub kafka start --nodes 3``, issue 12).

The module starts its own cluster from the project's jars, on free ports in a temporary
folder, and stops it at the end. A cluster that cannot start fails these tests, locally
and in CI alike: never a skip.

(a) every node answers, the project's topics get three replicas and min ISR 2;
(b) one broker is killed (SIGKILL) while an idempotent ``acks=all`` producer sends
    numbered records and a consumer group reads them: a ``read_committed`` reader of the
    topic finds every number once, the same producer and consumer carry on, and the
    killed node starts again and rejoins every ISR.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from gun_contract.kafka.admin import ensure_topics
from gun_contract.topics import topic_registry
from gun_tools.local_broker import LocalCluster
from tests.conftest import REPO
from tests.local_cluster import (
    NODES,
    all_isr,
    open_admin,
    partitions_of,
    poll_until,
    running_cluster,
)

pytestmark = pytest.mark.broker

log = logging.getLogger(__name__)

PARTITIONS = 4
BATCH = 10  # records the producer sends, then awaits, at a time
PACE_S = 0.02  # between two batches (at most 500 records/s): the stream spans the failure
BEFORE_KILL = 300  # records the group has read when the broker is killed
AFTER_KILL = 500  # records produced and read after the kill, before the restart
AFTER_REJOIN = 300  # and after the killed node is back in every ISR


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(
        tmp_path_factory.mktemp("cluster"), REPO / ".gun-hub" / "cache", PARTITIONS
    )


# ---- (a) -------------------------------------------------------------------------------


async def test_every_node_answers_and_topics_get_three_replicas_and_min_isr_2(
    cluster: LocalCluster,
) -> None:
    status = cluster.status()
    assert status.running
    assert len({node.pid for node in status.nodes}) == NODES

    # Each node answers on its own address and counts the three of them. A node's view
    # of its peers follows the controller's by a moment, and a broker whose heartbeat is
    # late on a busy machine is fenced until the next one (seen once in CI: node 2
    # counting two brokers right after start): each must count three within 30 s.
    for node in cluster.nodes:
        seen: set[int] = set()
        deadline = time.monotonic() + 30
        while seen != {1, 2, 3} and time.monotonic() < deadline:
            admin = await open_admin(node.bootstrap_servers)
            try:
                seen = {broker["node_id"] for broker in (await admin.describe_cluster())["brokers"]}
            finally:
                await admin.close()
            if seen != {1, 2, 3}:
                await asyncio.sleep(0.5)
        assert seen == {1, 2, 3}, node.node_id

    admin = await open_admin(cluster.bootstrap_servers)
    try:
        broker_config = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.BROKER, "1")]
        )
        settings = {
            entry[0]: entry[1]
            for response in broker_config
            for *_, entries in response.resources
            for entry in entries
        }
        assert settings["default.replication.factor"] == "3"
        assert settings["min.insync.replicas"] == "2"
        assert settings["offsets.topic.replication.factor"] == "3"
        assert settings["transaction.state.log.replication.factor"] == "3"
        assert settings["transaction.state.log.min.isr"] == "2"
        assert settings["unclean.leader.election.enable"] == "false"

        # The project's own topic creation, with the replication factor of the cluster.
        topics = topic_registry(f"c{uuid.uuid4().hex[:8]}", ("dgal", "cites", "dga"))
        created = await ensure_topics(
            cluster.bootstrap_servers, topics, PARTITIONS, cluster.replication_factor
        )
        assert sorted(created) == sorted(spec.name for spec in topics.specs())
        partitions = await partitions_of(admin, created)
        assert len(partitions) >= len(created)
        for partition in partitions:
            assert sorted(partition["replicas"]) == [1, 2, 3], partition
            assert sorted(partition["isr"]) == [1, 2, 3], partition
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in created]
        )
        min_isr = {
            name: {entry[0]: entry[1] for entry in entries}["min.insync.replicas"]
            for response in described
            for _code, _message, _type, name, entries in response.resources
        }
        assert min_isr == dict.fromkeys(created, "2")
    finally:
        await admin.close()


def test_the_cli_reports_every_node(cluster: LocalCluster) -> None:
    env = {
        **os.environ,
        "GUN_HUB_BROKER__HOME": str(cluster.home.parent),
        "GUN_HUB_BROKER__NODES": str(NODES),
        "GUN_HUB_BROKER__CLUSTER_PORTS": json.dumps([n.port for n in cluster.nodes]),
        "GUN_HUB_BROKER__CLUSTER_CONTROLLER_PORTS": json.dumps(
            [n.controller_port for n in cluster.nodes]
        ),
        "GUN_HUB_BROKER__JARS_CACHE": str(REPO / ".gun-hub" / "cache"),
    }
    status = subprocess.run(
        [sys.executable, "-m", "gun_hub", "kafka", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"running ({NODES} nodes) on {cluster.bootstrap_servers}" in status.stdout
    for node in cluster.nodes:
        assert f"node {node.node_id}: running (pid {node.running_pid()})" in status.stdout


# ---- (b) -------------------------------------------------------------------------------


class Progress:
    """What the producer had acknowledged and the group has read; waited on, never polled."""

    def __init__(self) -> None:
        self.acked = 0  # numbers 0 .. acked-1 were acknowledged (acks=all)
        self.read: list[int] = []  # every number the group received, in arrival order
        self.read_set: set[int] = set()
        self.prefix = 0  # every number below it was read
        self.commits = 0
        self.commit_errors: list[str] = []
        self._changed = asyncio.Condition()

    async def changed(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def add_read(self, number: int) -> None:
        self.read.append(number)
        self.read_set.add(number)
        while self.prefix in self.read_set:
            self.prefix += 1

    def has_read_all_below(self, bound: int) -> bool:
        return self.prefix >= bound

    async def until(self, what: str, predicate: Callable[[], bool], timeout_s: float) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(predicate), timeout_s)
            except TimeoutError:
                raise AssertionError(
                    f"not within {timeout_s:.0f}s: {what} (acked {self.acked}, read "
                    f"{len(self.read_set)} distinct)"
                ) from None


async def _produce(
    producer: AIOKafkaProducer, topic: str, progress: Progress, stop: asyncio.Event
) -> int:
    """Numbered records until ``stop``; every one must be acknowledged. Returns how many."""
    sent = 0
    while not stop.is_set():
        numbers = range(sent, sent + BATCH)
        futures = [
            await producer.send(topic, str(n).encode(), key=f"k{n % 97}".encode()) for n in numbers
        ]
        await asyncio.gather(*futures)  # raises if one was not acknowledged
        sent += BATCH
        progress.acked = sent
        await progress.changed()
        await asyncio.sleep(PACE_S)  # pacing the stream, not waiting for anything
    return sent


async def _consume(consumer: AIOKafkaConsumer, progress: Progress) -> None:
    """The group member: read, then commit what was read (a failed commit is retried by
    the next one: the same consumer carries on)."""
    while True:
        batches = await consumer.getmany(timeout_ms=200)
        for records in batches.values():
            for record in records:
                progress.add_read(int(record.value or b"-1"))
        if batches:
            try:
                await consumer.commit()
                progress.commits += 1
            except KafkaError as err:
                progress.commit_errors.append(repr(err))
        await progress.changed()


async def _read_committed(bootstrap: str, topic: str) -> list[int]:
    """Every number in the topic, as a read_committed reader outside any group finds it."""
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await reader.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        ends = await reader.end_offsets(tps)
        numbers: list[int] = []
        async with asyncio.timeout(60):
            while [tp for tp in tps if await reader.position(tp) < ends[tp]]:
                for records in (await reader.getmany(timeout_ms=500)).values():
                    numbers.extend(int(record.value or b"-1") for record in records)
        return numbers
    finally:
        await reader.stop()


async def test_a_broker_killed_under_load_loses_and_duplicates_nothing_and_rejoins(
    cluster: LocalCluster,
) -> None:
    began = time.monotonic()
    topic = f"numbers-{uuid.uuid4().hex[:8]}"
    group = f"readers-{uuid.uuid4().hex[:8]}"
    bootstrap = cluster.bootstrap_servers
    admin = await open_admin(bootstrap)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        client_id="numbers-producer",
    )
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        client_id="numbers-reader",
    )
    progress = Progress()
    stop_producing = asyncio.Event()
    tasks: list[asyncio.Task[object]] = []
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, cluster.replication_factor)])
        await poll_until(
            f"{topic} led and replicated three times",
            lambda: all_isr(admin, [topic], {1, 2, 3}),
            60,
        )
        await producer.start()
        await consumer.start()
        tasks = [
            asyncio.create_task(_produce(producer, topic, progress, stop_producing)),
            asyncio.create_task(_consume(consumer, progress)),
        ]
        watching = [*tasks]

        async def until(what: str, predicate: Callable[[], bool], timeout_s: float) -> None:
            waiting = asyncio.create_task(progress.until(what, predicate, timeout_s))
            done, _ = await asyncio.wait([waiting, *watching], return_when=asyncio.FIRST_COMPLETED)
            if waiting not in done:  # the producer or the consumer failed: say how
                waiting.cancel()
                for task in done:
                    task.result()
                raise AssertionError(f"a client stopped while waiting for: {what}")
            waiting.result()

        await until(
            f"the group read {BEFORE_KILL} records and committed",
            lambda: progress.has_read_all_below(BEFORE_KILL) and progress.commits > 0,
            60,
        )

        # The victim: the group's coordinator, which also leads partitions of the topic.
        victim = cluster.node(await admin.find_coordinator(group))
        led = [
            p["partition"]
            for p in await partitions_of(admin, [topic])
            if p["leader"] == victim.node_id
        ]
        assert led, f"node {victim.node_id} leads no partition of {topic}"
        others = {node.node_id for node in cluster.nodes} - {victim.node_id}
        acked_at_kill = progress.acked
        killed_at = time.monotonic()
        assert await asyncio.to_thread(victim.kill)
        log.info(
            "killed node %d (group coordinator, leader of %s) at %d acknowledged records",
            victim.node_id,
            led,
            acked_at_kill,
        )

        await poll_until(
            f"node {victim.node_id} fenced and out of every ISR",
            lambda: all_isr(admin, [topic], others),
            60,
        )
        fenced_after = time.monotonic() - killed_at
        await until(
            f"{AFTER_KILL} more records acknowledged and read without node {victim.node_id}",
            lambda: progress.has_read_all_below(acked_at_kill + AFTER_KILL),
            90,
        )
        carried_on_after = time.monotonic() - killed_at

        # The same node starts again from its folder and rejoins: every ISR of the
        # cluster (the topic, the consumer offsets, the earlier test's topics) has 3.
        await asyncio.to_thread(cluster.start)
        assert cluster.status().running
        await poll_until(
            f"node {victim.node_id} back in every ISR",
            lambda: all_isr(admin, None, {1, 2, 3}),
            90,
        )
        rejoined_after = time.monotonic() - killed_at
        acked_at_rejoin = progress.acked
        await until(
            f"{AFTER_REJOIN} more records after the rejoin",
            lambda: progress.has_read_all_below(acked_at_rejoin + AFTER_REJOIN),
            60,
        )

        stop_producing.set()
        total = await tasks[0]
        assert isinstance(total, int)
        watching.remove(tasks[0])
        await until(
            f"the group read all {total} records", lambda: progress.has_read_all_below(total), 60
        )
        tasks[1].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[1]
        await consumer.commit()

        # The group's committed offsets are the ends of the log: nothing left unread.
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        assert {tp: await consumer.committed(tp) for tp in tps} == ends
        # The topic as a read_committed reader sees it: every number exactly once.
        numbers = await _read_committed(bootstrap, topic)
        doubled = sorted(n for n, times in Counter(numbers).items() if times > 1)
        assert doubled == [], f"{len(doubled)} numbers twice in the topic: {doubled[:20]}"
        assert set(numbers) == set(range(total)), (
            f"lost: {sorted(set(range(total)) - set(numbers))[:20]}"
        )
        assert len(numbers) == total
        assert progress.read_set == set(range(total))
        log.info(
            "%d records, none lost or doubled; node %d fenced after %.1fs, %d records read "
            "past the kill after %.1fs, rejoined after %.1fs; group redeliveries %d, failed "
            "commits %d; test %.1fs",
            total,
            victim.node_id,
            fenced_after,
            AFTER_KILL,
            carried_on_after,
            rejoined_after,
            len(progress.read) - len(progress.read_set),
            len(progress.commit_errors),
            time.monotonic() - began,
        )
    finally:
        stop_producing.set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await consumer.stop()
        await producer.stop()
        await admin.close()
