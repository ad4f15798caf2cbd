"""Topic administration: create every registry topic with its layout, idempotently."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    for_code,
)
from aiokafka.protocol.metadata import MetadataRequest

from gun_contract.kafka.client import Connect, client_config, client_options, consumer_options
from gun_contract.kafka.refusals import ClusterRefused, ConnectionFault, connection_fault, fault_of
from gun_contract.kafka.topic_settings import (
    Deviation,
    TopicAlignmentRefused,
    TopicSettingsRefused,
    aligned_overrides,
    deleted_after_ms,
    deviations,
    lengthening_apart,
    refusal_line,
)
from gun_contract.topics import TopicRegistry, TopicSpec

log = logging.getLogger(__name__)


# A handshake cut short this many times in a row is the protocol's fault, not a broker
# going down (refusals.py): the wait ends with it.
_CUT_SHORT_TIMES = 3


async def wait_for_cluster(connect: Connect, timeout_s: float = 30.0) -> None:
    """Return once the cluster answers a metadata request; raise TimeoutError otherwise,
    or :class:`ClusterRefused` at once when it answers with a refusal of this client (the
    credentials, the certificate, the protocol): no wait lets that client in."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | ConnectionFault | None = None
    cut_short = 0
    where = client_config(connect).bootstrap_servers
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(**client_options(connect), request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
        except (KafkaError, OSError) as err:
            fault = fault_of(err, connect)
            if fault is None and isinstance(err, KafkaConnectionError):
                # "Unable to bootstrap": aiokafka kept the broker's answer to itself
                fault = await connection_fault(connect)
            cut_short = cut_short + 1 if fault is not None and not fault.final else 0
            if fault is not None and (fault.final or cut_short >= _CUT_SHORT_TIMES):
                raise ClusterRefused(where, fault) from err
            last_error = fault or err
            await asyncio.sleep(0.25)
        else:
            return
        finally:
            await admin.close()
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
        await _align_configs(admin, [spec for spec in specs if spec.name in existing], connect)
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
    created the topics, this and :func:`check_topic_configs` are the start-up's topic
    checks)."""
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
        raise partition_refusal(wrong, partitions)


CHANGELOG_SUFFIX = "-changelog"


def partition_refusal(wrong: Mapping[str, int], partitions: int) -> PartitionCountMismatch:
    """The start-up's refusal: when only the hub's changelogs disagree, they are most
    likely another deployment's, named after the same ``GUN_HUB_HUB__APP_ID`` (a second
    deployment with a topic prefix of its own, the app id left at its default), not
    topics to re-count (review stop 39-O, O5)."""
    if all(name.endswith(CHANGELOG_SUFFIX) for name in wrong):
        return changelogs_of_another_count(wrong, partitions)
    return partition_count_mismatch(wrong, partitions)


def changelogs_of_another_count(
    wrong: Mapping[str, int], partitions: int
) -> PartitionCountMismatch:
    listed = "; ".join(f"{name} has {count} partitions" for name, count in sorted(wrong.items()))
    return PartitionCountMismatch(
        f"{listed}, but kafka.partitions is {partitions}, which no topic of the registry "
        "contradicts: these changelogs are named after the hub's application id "
        "(GUN_HUB_HUB__APP_ID), and may be another deployment's on this cluster. Give this "
        "deployment an app id of its own (GUN_HUB_HUB__APP_ID, beside its "
        "GUN_HUB_KAFKA__TOPIC_PREFIX), or, if they are this deployment's, its partition "
        "count (docs/deployment.md, 'Partitions')"
    )


def partition_count_mismatch(wrong: Mapping[str, int], partitions: int) -> PartitionCountMismatch:
    """The refusal naming each topic of ``wrong`` with its partition count, the count
    wanted, and what to do: the same words at start-up and when a running worker is handed
    partitions grown since (gun_hub/runtime/partition_counts.py)."""
    listed = "; ".join(f"{name} has {count} partitions" for name, count in sorted(wrong.items()))
    return PartitionCountMismatch(
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


# DescribeConfigs' config source of a setting made on the topic itself (KIP-226); the
# others are the broker's (dynamic or static) and the defaults.
_DYNAMIC_TOPIC_CONFIG = 1


@dataclass(frozen=True, slots=True)
class _Described:
    """Topics' configurations as the broker describes them."""

    values: dict[str, dict[str, str | None]]  # every setting, whatever its source
    overrides: dict[str, dict[str, str]]  # the topic-level ones only
    unauthorised: list[str]  # topics the principal may not DescribeConfigs


async def _describe_configs(admin: AIOKafkaAdminClient, names: Sequence[str]) -> _Described:
    """Every setting of each topic of ``names``; a refusal other than authorisation raises."""
    described = _Described({}, {}, [])
    if not names:
        return described
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    for response in await admin.describe_configs(resources):
        for code, message, _type, name, entries in response.resources:
            if code == TopicAuthorizationFailedError.errno:
                described.unauthorised.append(name)
                continue
            if code:
                raise for_code(code)(f"could not describe the configuration of {name}: {message}")
            described.values[name] = {entry[0]: entry[1] for entry in entries}
            described.overrides[name] = {
                entry[0]: entry[1]
                for entry in entries
                if _is_topic_override(response.API_VERSION, entry) and entry[1] is not None
            }
    return described


def _is_topic_override(api_version: int, entry: Sequence[Any]) -> bool:
    # v0 answers ``is_default`` where v1+ answer the source.
    if api_version == 0:
        return not entry[3]
    return bool(entry[3] == _DYNAMIC_TOPIC_CONFIG)


async def topic_retentions(
    admin: AIOKafkaAdminClient, names: Sequence[str]
) -> dict[str, int | None]:
    """How long (ms) each topic of ``names`` keeps a record before retention may delete
    it, as the broker says now (an operator may have lengthened it for an outage); None:
    never by age. A topic the principal may not DescribeConfigs is left out."""
    described = await _describe_configs(admin, names)
    return {name: deleted_after_ms(values) for name, values in described.values.items()}


async def check_topic_configs(connect: Connect, specs: Sequence[TopicSpec]) -> None:
    """Raise :class:`TopicSettingsRefused` if an existing topic of ``specs`` has a setting
    that breaks the contract (topic_settings.py); change nothing.

    The secured start-up's check (the admin made the topics, review stop 37, K1): it needs
    the DescribeConfigs ACL on the topics only. A principal without it is not stopped for
    that: one warning names the ACL, and the start goes on unchecked. A retention shorter
    than the hub relies on is a warning too, with the command that lengthens it."""
    admin = AIOKafkaAdminClient(**client_options(connect))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        present = [spec for spec in specs if spec.name in existing]
        described = await _describe_configs(admin, [spec.name for spec in present])
    finally:
        await admin.close()
    config = client_config(connect)
    _warn_unchecked(config.username, described.unauthorised)
    refused, to_lengthen = lengthening_apart(_deviations(present, described))
    for topic, found in sorted(to_lengthen.items()):
        # Not a refusal: the hub runs on it, and loses only what is read later than the
        # topic keeps it (an upgrade from a release that made it shorter must not stop).
        log.warning(
            "topic %s keeps its records less long than the hub relies on; %s",
            topic,
            refusal_line(topic, found, config.bootstrap_servers),
        )
    if refused:
        raise TopicSettingsRefused(refused, config.bootstrap_servers)


def _warn_unchecked(principal: str | None, unauthorised: Sequence[str]) -> None:
    if unauthorised:
        log.warning(
            "the principal %s may not DescribeConfigs topics %s: their settings (timestamp "
            "type, size limit, cleanup policy, retention) were not checked; grant it the "
            "DescribeConfigs ACL on them (docs/deployment.md, 'Topic settings')",
            principal,
            ", ".join(sorted(unauthorised)),
        )


def _deviations(specs: Sequence[TopicSpec], described: _Described) -> dict[str, list[Deviation]]:
    """Each described topic's deviations, for those that have any (a topic not
    described, for want of the right, is not judged)."""
    return {
        spec.name: wrong
        for spec in specs
        if spec.name in described.values
        and (wrong := deviations(spec, described.values[spec.name]))
    }


async def _align_configs(
    admin: AIOKafkaAdminClient, specs: list[TopicSpec], connect: Connect
) -> None:
    """Bring existing topics' size limit and timestamp type in line with the contract (a
    topic made by an earlier release, or by hand); refuse, changing nothing, a topic
    whose cleanup policy or retention breaks it, as those are an operator's decisions.

    Every other topic-level override is kept, and nothing is shortened: only the two
    aligned keys change (review stop 37, K2: a lengthened retention was put back to 7
    days, a min.insync.replicas dropped), and a retention shorter than the hub relies on
    is lengthened (the deadlines topic made with 24 hours before stop 52)."""
    described = await _describe_configs(admin, [spec.name for spec in specs])
    config = client_config(connect)
    _warn_unchecked(config.username, described.unauthorised)
    found = _deviations(specs, described)
    refused = {
        name: [d for d in wrong if not d.alignable]
        for name, wrong in found.items()
        if any(not d.alignable for d in wrong)
    }
    if refused:
        raise TopicSettingsRefused(refused, config.bootstrap_servers)
    changes = [
        ConfigResource(
            ConfigResourceType.TOPIC,
            name,
            configs=aligned_overrides(described.overrides.get(name, {}), wrong),
        )
        for name, wrong in sorted(found.items())
    ]
    if not changes:
        return
    log.info("aligning the configuration of %s", ", ".join(c.name for c in changes))
    for response in await admin.alter_configs(changes):
        for code, message, _type, name in response.resources:
            if code:
                raise TopicAlignmentRefused(
                    f"the broker refused to align the settings of topic {name} "
                    f"({for_code(code).__name__}: {message}); set them as admin "
                    f"(docs/deployment.md, 'Topic settings')"
                )


@dataclass(frozen=True, slots=True)
class CommittedTail:
    """A partition's last committed records (values, oldest first) and the offset where
    they start (the partition's end when it holds none)."""

    values: list[bytes]
    start: int


@dataclass(frozen=True, slots=True)
class RecordsRead:
    """Committed records read from a partition; ``complete``: False when the bound on
    how many to read left the earliest of those asked for unread."""

    values: list[bytes]
    complete: bool


async def last_records(
    connect: Connect, topic: str, partitions: Sequence[int], count: int, timeout_s: float = 30.0
) -> dict[int, list[bytes]]:
    """The values of the last ``count`` committed records of each partition of ``topic``,
    oldest first (fewer where it holds fewer; none where it holds none): see
    :func:`committed_tails`."""
    tails = await committed_tails(connect, topic, partitions, count, timeout_s)
    return {partition: tail.values for partition, tail in tails.items()}


async def committed_tails(
    connect: Connect, topic: str, partitions: Sequence[int], count: int, timeout_s: float = 30.0
) -> dict[int, CommittedTail]:
    """The last ``count`` committed records of each partition of ``topic``, oldest first,
    with the offset where they start (where a read further back ends:
    :func:`committed_records_since`).

    Committed only: what an aborted transaction left is no record (the audit lanes write
    in transactions, runtime/audit_lanes.py). Aborted batches and transaction markers take
    offsets too, so where the last ``count`` offsets hold fewer records the read goes
    further back, up to the partition's start."""
    consumer = _committed_reader(connect)
    try:
        await consumer.start()  # a broker away: no half-started client left behind
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)  # the stable ends: nothing open after
        starts = await consumer.beginning_offsets(tps)
        found = {tp.partition: CommittedTail([], ends[tp]) for tp in tps}
        window = dict.fromkeys(tps, count)
        async with asyncio.timeout(timeout_s):
            wanted = {tp for tp in tps if ends[tp] > starts[tp]}
            while wanted:
                read = await _read_back(
                    consumer, {tp: (ends[tp] - window[tp], ends[tp]) for tp in wanted}, starts
                )
                for tp in list(wanted):
                    last = read[tp][-count:]
                    found[tp.partition] = CommittedTail(
                        [value for _, value in last], last[0][0] if last else ends[tp]
                    )
                    if len(read[tp]) >= count or ends[tp] - window[tp] <= starts[tp]:
                        wanted.discard(tp)
                    else:
                        window[tp] *= 4
        return found
    finally:
        await consumer.stop()


async def committed_records_since(
    connect: Connect,
    topic: str,
    partition: int,
    since: datetime,
    until: int,
    most: int,
    timeout_s: float = 30.0,
) -> RecordsRead:
    """The committed records of ``partition`` of ``topic`` from the first whose record
    time is ``since`` or later (the broker's time index, ``offsets_for_times``) up to
    offset ``until`` (excluded), oldest first; at most the ``most`` offsets just before
    ``until`` (then ``complete`` is False): whoever can write the topic decides how many
    records lie there."""
    consumer = _committed_reader(connect)
    try:
        await consumer.start()
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        async with asyncio.timeout(timeout_s):
            starts = await consumer.beginning_offsets([tp])
            at_ms = max(0, math.floor(since.timestamp() * 1000))
            found = (await consumer.offsets_for_times({tp: at_ms})).get(tp)
            # None: no record that recent, so none before ``until`` either.
            first = max(starts[tp], until if found is None else found.offset)
            complete = until - first <= most
            first = max(first, until - most)
            if first >= until:
                return RecordsRead([], complete)
            read = await _read_back(consumer, {tp: (first, until)}, starts)
        return RecordsRead([value for _, value in read[tp]], complete)
    finally:
        await consumer.stop()


def _committed_reader(connect: Connect) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **consumer_options(connect), enable_auto_commit=False, isolation_level="read_committed"
    )


async def _read_back(
    consumer: AIOKafkaConsumer,
    ranges: dict[TopicPartition, tuple[int, int]],
    starts: dict[TopicPartition, int],
) -> dict[TopicPartition, list[tuple[int, bytes]]]:
    """The offsets and values read in each partition's ``[from, to)`` offsets (from no
    earlier than its start); a partition is done once its position reaches ``to``
    (markers skipped too)."""
    read: dict[TopicPartition, list[tuple[int, bytes]]] = {tp: [] for tp in ranges}
    for tp, (first, _) in ranges.items():
        consumer.seek(tp, max(starts[tp], first))
        consumer.resume(tp)
    reading = dict(ranges)
    while reading:
        for tp, records in (await consumer.getmany(*reading, timeout_ms=500)).items():
            for record in records:
                if tp in reading and record.offset < reading[tp][1]:
                    read[tp].append((record.offset, record.value or b""))
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
