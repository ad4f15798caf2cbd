"""Topic administration: create every registry topic with its layout, idempotently."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    TopicAlreadyExistsError,
    for_code,
)
from aiokafka.protocol.metadata import MetadataRequest

from gun_contract.kafka.client import Connect, client_config, client_options, consumer_options
from gun_contract.topics import TopicRegistry, TopicSpec

log = logging.getLogger(__name__)


async def wait_for_cluster(connect: Connect, timeout_s: float = 30.0) -> None:
    """Return once the cluster answers a metadata request; raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(**client_options(connect), request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
        except (KafkaError, OSError) as err:
            last_error = err
            await asyncio.sleep(0.25)
        else:
            return
        finally:
            await admin.close()
    where = client_config(connect).bootstrap_servers
    raise TimeoutError(f"Kafka at {where} did not answer: {last_error}")


async def ensure_topics(
    connect: Connect,
    registry: TopicRegistry,
    partitions: int,
    replication_factor: int,
    extra: Sequence[TopicSpec] = (),
) -> list[str]:
    """Create the registry's topics that do not exist yet; return the names created.

    Topics are created explicitly, never auto-created by a producer: an auto-created topic
    would get the broker's default partition count and break the co-partitioning that the
    hub's tables rely on. ``extra``: topics outside the registry (the hub's table
    changelogs), created the same way before a worker needs them.
    """
    admin = AIOKafkaAdminClient(**client_options(connect))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        specs = [*registry.specs(), *extra]
        await _check_partition_counts(
            admin, [spec for spec in specs if spec.name in existing], partitions
        )
        await _align_configs(admin, [spec for spec in specs if spec.name in existing])
        wanted = [spec for spec in specs if spec.name not in existing]
        if not wanted:
            return []
        new_topics = [
            NewTopic(
                spec.name,
                num_partitions=partitions if spec.keyed else 1,
                replication_factor=replication_factor,
                topic_configs=spec.broker_config(),
            )
            for spec in wanted
        ]
        try:
            response = await admin.create_topics(new_topics)
        except TopicAlreadyExistsError:
            log.info("another process created some topics concurrently")
        else:
            _raise_topic_errors(response)
        await _wait_until_visible(admin, {spec.name for spec in wanted})
        return [spec.name for spec in wanted]
    finally:
        await admin.close()


class PartitionCountMismatch(RuntimeError):
    """Keyed topics whose partition count is not ``kafka.partitions``."""


async def check_partition_counts(
    connect: Connect, specs: Sequence[TopicSpec], partitions: int
) -> None:
    """Raise :class:`PartitionCountMismatch` if an existing keyed topic of ``specs`` has
    another partition count than ``partitions`` (on a secured cluster, where an admin
    created the topics, this is the whole of the start-up's topic check)."""
    admin = AIOKafkaAdminClient(**client_options(connect))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        await _check_partition_counts(
            admin, [spec for spec in specs if spec.name in existing], partitions
        )
    finally:
        await admin.close()


async def _check_partition_counts(
    admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec], partitions: int
) -> None:
    """The hub's tables, claims, requests and answers are co-partitioned with the
    declarations: a case lives on the partition its declaration arrived on, and its
    claim's verdict, requests and answers go back to that partition number on their own
    topics. A keyed topic with another count breaks that silently (a verdict for a
    claims partition that does not exist: the declaration held for good, its partition
    stopped; found by review in stop 35), so nothing starts on one."""
    keyed = sorted(spec.name for spec in specs if spec.keyed)
    if not keyed:
        return
    counts = {
        str(topic["topic"]): len(topic["partitions"])
        for topic in await admin.describe_topics(keyed)
        if not topic.get("error_code")
    }
    wrong = {name: count for name, count in counts.items() if count != partitions}
    if wrong:
        listed = "; ".join(
            f"{name} has {count} partitions" for name, count in sorted(wrong.items())
        )
        raise PartitionCountMismatch(
            f"{listed}, but kafka.partitions is {partitions}: every keyed topic (the hub's "
            "table changelogs too) must have the same count, the hub's co-partitioning "
            "(a case lives on its declaration's partition). Set GUN_HUB_KAFKA__PARTITIONS "
            "to the declarations topic's count, with every other keyed topic at that count "
            "(docs/deployment.md, 'Partitions')"
        )


def _raise_topic_errors(response: Any) -> None:
    """Raise the first refusal in a CreateTopics response: the broker answers each topic
    separately and aiokafka raises none of them (a replication factor larger than the
    brokers that are up, say, would otherwise surface as topics that never appear)."""
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        if code == TopicAlreadyExistsError.errno:
            log.info("topic %s was created concurrently by another process", name)
        elif code:
            detail = f": {entry[2]}" if len(entry) > 2 and entry[2] else ""
            raise for_code(code)(f"could not create topic {name}{detail}")


# Settings a topic must have for the contract to hold: a topic created by an earlier
# release, or by hand, is brought in line at start-up.
_ALIGNED = ("max.message.bytes", "message.timestamp.type")


async def _align_configs(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    """Set the contract's settings on existing topics where they differ."""
    if not specs:
        return
    resources = [ConfigResource(ConfigResourceType.TOPIC, spec.name) for spec in specs]
    described = await admin.describe_configs(resources)
    current: dict[str, dict[str, str]] = {}
    for response in described:
        for _code, _message, _type, name, entries in response.resources:
            current[name] = {entry[0]: entry[1] for entry in entries}
    changes = []
    for spec in specs:
        wanted = spec.broker_config()
        have = current.get(spec.name, {})
        if all(have.get(key) == wanted[key] for key in _ALIGNED if key in wanted):
            continue
        # alter_configs replaces a topic's overrides: send the whole wanted set.
        log.info("aligning the configuration of %s", spec.name)
        changes.append(ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=wanted))
    if changes:
        await admin.alter_configs(changes)


async def last_records(
    connect: Connect, topic: str, partitions: Sequence[int], count: int, timeout_s: float = 30.0
) -> dict[int, list[bytes]]:
    """The values of the last ``count`` committed records of each partition of ``topic``,
    oldest first (fewer where it holds fewer; none where it holds none).

    Committed only: what an aborted transaction left is no record (the audit lanes write
    in transactions, runtime/audit_lanes.py). Aborted batches and transaction markers take
    offsets too, so where the last ``count`` offsets hold fewer records the read goes
    further back, up to the partition's start."""
    consumer = AIOKafkaConsumer(
        **consumer_options(connect), enable_auto_commit=False, isolation_level="read_committed"
    )
    try:
        await consumer.start()  # a broker away: no half-started client left behind
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)  # the stable ends: nothing open after
        starts = await consumer.beginning_offsets(tps)
        found: dict[int, list[bytes]] = {tp.partition: [] for tp in tps}
        window = dict.fromkeys(tps, count)
        async with asyncio.timeout(timeout_s):
            wanted = {tp for tp in tps if ends[tp] > starts[tp]}
            while wanted:
                read = await _read_back(
                    consumer, {tp: (ends[tp] - window[tp], ends[tp]) for tp in wanted}, starts
                )
                for tp in list(wanted):
                    found[tp.partition] = read[tp][-count:]
                    if len(read[tp]) >= count or ends[tp] - window[tp] <= starts[tp]:
                        wanted.discard(tp)
                    else:
                        window[tp] *= 4
        return found
    finally:
        await consumer.stop()


async def _read_back(
    consumer: AIOKafkaConsumer,
    ranges: dict[TopicPartition, tuple[int, int]],
    starts: dict[TopicPartition, int],
) -> dict[TopicPartition, list[bytes]]:
    """The values read in each partition's ``[from, to)`` offsets (from no earlier than its
    start); a partition is done once its position reaches ``to`` (markers skipped too)."""
    read: dict[TopicPartition, list[bytes]] = {tp: [] for tp in ranges}
    for tp, (first, _) in ranges.items():
        consumer.seek(tp, max(starts[tp], first))
        consumer.resume(tp)
    reading = dict(ranges)
    while reading:
        for tp, records in (await consumer.getmany(*reading, timeout_ms=500)).items():
            for record in records:
                if tp in reading and record.offset < reading[tp][1]:
                    read[tp].append(record.value or b"")
        for tp in list(reading):
            if await consumer.position(tp) >= reading[tp][1]:
                del reading[tp]
                consumer.pause(tp)
    return read


async def topic_partitions(connect: Connect, topic: str) -> list[int]:
    """Partition numbers of an existing topic; ``LookupError`` if there is no such topic."""
    admin = AIOKafkaAdminClient(**client_options(connect))
    await admin.start()
    try:
        partitions = (await partitions_of(admin, [topic])).get(topic)
    finally:
        await admin.close()
    if not partitions:
        raise LookupError(f"topic {topic} does not exist")
    return partitions


async def partitions_of(admin: AIOKafkaAdminClient, topics: Iterable[str]) -> dict[str, list[int]]:
    """Partition numbers of each existing topic among ``topics`` (absent ones left out).

    Asked of the cluster each time: a client's metadata cache only knows the topics it
    has subscribed to or produced to.
    """
    described = await admin.describe_topics(sorted(set(topics)))
    return {
        d["topic"]: sorted(p["partition"] for p in d["partitions"])
        for d in described
        if d.get("partitions")
    }


async def _wait_until_visible(
    admin: AIOKafkaAdminClient, names: set[str], timeout_s: float = 30.0
) -> None:
    """Until every live broker knows each topic and a leader for each of its partitions.

    On a cluster, new topics reach the brokers' metadata one by one: a client that asked a
    late broker would not find them yet. aiokafka's admin asks a random broker, so each
    broker is asked here in turn (through the admin's request method, by node id).
    """
    wanted = sorted(names)
    deadline = time.monotonic() + timeout_s
    while True:
        missing: dict[int, list[str]] = {}
        for broker in (await admin.describe_cluster())["brokers"]:
            node_id = broker["node_id"]
            request = MetadataRequest(wanted, allow_auto_topic_creation=False)
            try:
                response = (await admin._send_request(request, node_id)).to_object()
            except KafkaError as err:  # a node going down: asked again until the deadline
                missing[node_id] = [f"unreachable: {err}"]
                continue
            ready = {
                topic["topic"]
                for topic in response["topics"]
                if topic["error_code"] == 0
                and topic["partitions"]
                and all(partition["leader"] >= 0 for partition in topic["partitions"])
            }
            if names - ready:
                missing[node_id] = sorted(names - ready)
        if not missing:
            return
        if time.monotonic() > deadline:
            raise KafkaConnectionError(f"topics not visible after creation (by node): {missing}")
        await asyncio.sleep(0.1)
