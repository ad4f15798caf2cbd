"""The decision publisher is the one gate of a reference's versions (review stop 38, D1).

The contract lets the clearance system's producers split one reference across partitions
(section 2): each partition then has a case of its own, and both may decide. Their
decisions all reach the outbox partition of the reference (pipeline/hub_context.py), and
its publisher publishes none for a version at or below one it published (contract section
4: "Exactly one decision per (Reference, Version). A lower or equal version arriving
after a higher one is ignored and recorded"): the skipped one is recorded as a status
event of that version, in the publisher's transaction. The publisher taking the partition
over remembers it from the decisions partition.

The lane also keeps the declarant of a reference's first decision published, and
publishes none decided for another (review stop 38-s, S3): a version lodged in another
trader's name, decided on a partition where the reference has no case, is dead-lettered
as DECLARANT_CHANGED and withholds nothing; the next owner of the partition reads the
declarant back from the decisions' headers."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from gun_contract.dead_letter import HEADER_ERROR_KIND
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import StateCipher
from gun_contract.topics import reference_partition
from gun_hub.domain.status_events import StatusEvent, StatusKind
from gun_hub.pipeline.decision_outbox import (
    HEADER_DECLARANT,
    HEADER_VERSION,
    OUTBOX_STATE,
    declarant_tag,
    outbox_record_key,
)
from gun_hub.pipeline.intake import DECLARANT_CHANGED
from gun_hub.security.own_dead_letters import HEADER_VOUCHED
from tests.conftest import PARTITIONS, KafkaEnv
from tests.integration.publisher_fixtures import new_publisher, published, running, stop

pytestmark = pytest.mark.broker

SPLIT = "26FRXPART00000001"  # v2 decided first (one partition), then v1 (another)
RESENT = "26FRXPART00000002"  # v1 decided on two partitions
LATER = "26FRXPART00000003"  # only there to mark the end of what was announced
OWNED = "26FRXPART00000004"  # trader A's, with a version lodged in trader B's name


async def _announce(
    kafka_env: KafkaEnv, decisions: list[tuple[str, int]], declarant: str = ""
) -> None:
    """Decisions as the hub's agents write them: on the outbox partition of their
    reference, whatever partition their case lives on; decided for ``declarant``."""
    cipher = StateCipher.load(kafka_env.keys_dir, HUB_PARTY)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_env.bootstrap)
    await producer.start()
    try:
        for reference, version in decisions:
            key, number = reference.encode(), str(version).encode()
            sealed = cipher.seal(
                OUTBOX_STATE, outbox_record_key(key, number), f"<Decision v='{version}'/>".encode()
            )
            await producer.send_and_wait(
                kafka_env.topics.decision_outbox,
                sealed,
                key=key,
                partition=reference_partition(reference, PARTITIONS),
                headers=[(HEADER_VERSION, number)]
                + ([(HEADER_DECLARANT, declarant_tag(declarant))] if declarant else []),
            )
    finally:
        await producer.stop()


async def _versions_published(kafka_env: KafkaEnv) -> list[tuple[str, int]]:
    """(reference, version) of every committed decision, in the order of the topic."""
    consumer = AIOKafkaConsumer(
        kafka_env.topics.decisions,
        bootstrap_servers=kafka_env.bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    found: list[tuple[str, int]] = []
    try:
        while batches := await consumer.getmany(timeout_ms=1500):
            for records in batches.values():
                for record in records:
                    version = dict(record.headers)[HEADER_VERSION]
                    found.append(((record.key or b"").decode(), int(version)))
    finally:
        await consumer.stop()
    return found


async def _ignored(kafka_env: KafkaEnv, expected: int) -> list[StatusEvent]:
    """The publisher's status events (IGNORED_STALE_VERSION), once ``expected`` are in."""
    consumer = AIOKafkaConsumer(
        kafka_env.topics.status,
        bootstrap_servers=kafka_env.bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    found: list[StatusEvent] = []
    try:
        async with asyncio.timeout(60):
            while len(found) < expected:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found += [StatusEvent.model_validate_json(r.value or b"") for r in records]
        for records in (await consumer.getmany(timeout_ms=1000)).values():
            found += [StatusEvent.model_validate_json(r.value or b"") for r in records]
    finally:
        await consumer.stop()
    return found


async def test_a_lower_or_equal_version_after_a_published_one_is_ignored_and_recorded(
    kafka_env: KafkaEnv,
) -> None:
    publisher = new_publisher(kafka_env, status=kafka_env.topics.status)
    task = await running(publisher)
    try:
        await _announce(kafka_env, [(SPLIT, 2), (RESENT, 1), (SPLIT, 1), (RESENT, 1)])
        await _announce(kafka_env, [(LATER, 1)])
        await published(kafka_env, 3, publisher)
        assert sorted(await _versions_published(kafka_env)) == sorted(
            [
                (SPLIT, 2),
                (RESENT, 1),
                (LATER, 1),
            ]
        )
        ignored = await _ignored(kafka_env, 1)
        # The lower version is recorded as ignored; the repeat of a published version is
        # the publisher's ordinary duplicate (a crash's announcement again), not news.
        assert [(e.reference, e.version, e.kind) for e in ignored] == [
            (SPLIT, 1, StatusKind.IGNORED_STALE_VERSION)
        ]
        assert "version 2" in ignored[0].detail
    finally:
        await stop(publisher, task)

    # The next owner of the partition rebuilds what was published from the decisions
    # partition: v1 decided again on its partition is still below the published v2.
    again = new_publisher(kafka_env, status=kafka_env.topics.status)
    task = await running(again)
    try:
        await _announce(kafka_env, [(SPLIT, 1), (LATER, 2)])
        await published(kafka_env, 4, again)
        ignored = await _ignored(kafka_env, 2)  # v1 has been through the gate by then
        assert [(e.reference, e.version) for e in ignored] == [(SPLIT, 1), (SPLIT, 1)]
        assert sorted(await _versions_published(kafka_env)) == sorted(
            [
                (SPLIT, 2),
                (RESENT, 1),
                (LATER, 1),
                (LATER, 2),
            ]
        )
    finally:
        await stop(again, task)


async def _dead_letter_kinds(kafka_env: KafkaEnv, expected: int) -> list[str]:
    """The kinds of the dead letters, once ``expected`` are in; each vouched for as the
    hub's own (security/own_dead_letters.py: the audit chains it whatever a flood)."""
    consumer = AIOKafkaConsumer(
        kafka_env.topics.dlq,
        bootstrap_servers=kafka_env.bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    kinds: list[str] = []
    try:
        async with asyncio.timeout(60):
            while len(kinds) < expected:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    kinds += [(dict(r.headers)[HEADER_ERROR_KIND] or b"").decode() for r in records]
                    assert all(dict(r.headers).get(HEADER_VOUCHED) for r in records)
    finally:
        await consumer.stop()
    return kinds


async def test_a_decision_for_another_declarant_of_a_reference_is_not_published(
    kafka_env: KafkaEnv,
) -> None:
    publisher = new_publisher(kafka_env, status=kafka_env.topics.status)
    task = await running(publisher)
    try:
        await _announce(kafka_env, [(OWNED, 1)], declarant="FR12345678901234")
        await _announce(kafka_env, [(OWNED, 99)], declarant="DE999999999999999")
        await _announce(kafka_env, [(OWNED, 2)], declarant="FR12345678901234")
        await published(kafka_env, 2, publisher)
        assert await _dead_letter_kinds(kafka_env, 1) == [DECLARANT_CHANGED]
        assert sorted(await _versions_published(kafka_env)) == [(OWNED, 1), (OWNED, 2)]
    finally:
        await stop(publisher, task)

    # The next owner of the partition reads the declarant back from gun.decisions.
    again = new_publisher(kafka_env, status=kafka_env.topics.status)
    task = await running(again)
    try:
        await _announce(kafka_env, [(OWNED, 50)], declarant="DE999999999999999")
        await _announce(kafka_env, [(OWNED, 3)], declarant="FR12345678901234")
        await published(kafka_env, 3, again)
        assert await _dead_letter_kinds(kafka_env, 2) == [DECLARANT_CHANGED] * 2
        assert sorted(await _versions_published(kafka_env)) == [(OWNED, 1), (OWNED, 2), (OWNED, 3)]
    finally:
        await stop(again, task)
