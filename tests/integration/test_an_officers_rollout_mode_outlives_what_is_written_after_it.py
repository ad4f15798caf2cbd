"""An officer's rollout mode outlives whatever is written after it under its scope's key,
for a worker that starts after the broker cleaned the topic (ADR 0023).

Suspected by review stop 40-F: ``hub.rollout`` was compacted. A worker reading it as it
comes ignores a record that does not open and keeps the mode, but the broker's cleaner
keeps only each key's newest record: garbage, a tombstone or an older hub-sealed setting
written again under a scope's key (any party that may write the topic: anyone on the
plaintext profile, whoever holds the hub's broker credentials on the secured one) erased
the officer's setting at the next cleaning, and every worker started after that decided
with the default mode, enforce, silently.

The topic is the registry's, as ``ensure_topics`` makes it, told to be cleaned as soon as
the broker can (``EAGER``: those settings only matter where the topic is compacted).
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from gun_contract.kafka.client import (
    client_options,
    consumer_options,
    from_settings,
    producer_options,
)
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import StateCipher
from gun_hub.domain.rollout import RolloutBoard, RolloutMode, RolloutSetting, seal_setting
from gun_hub.runtime.rollout_follower import RolloutFollower
from tests.conftest import KafkaEnv

pytestmark = pytest.mark.broker

# A segment rolls at the first record 100 ms after it opened, any dirty share is worth a
# cleaning, a record may be cleaned at once and a tombstone goes at the next cleaning.
EAGER = {
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "0",
}
# The broker's cleaner looks for work every 15 s (log.cleaner.backoff.ms).
CLEANED_WITHIN_S = 120.0


def setting(authority: str, office: str | None, mode: RolloutMode, at: datetime) -> RolloutSetting:
    return RolloutSetting(
        authority=authority, office=office, mode=mode, officer="amelie", reason="pilot", at=at
    )


async def offsets_held(bootstrap: str, topic: str) -> set[int]:
    """The offsets partition 0 of ``topic`` still holds (compaction leaves gaps)."""
    consumer = AIOKafkaConsumer(
        **consumer_options(bootstrap), enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        held: set[int] = set()
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                held.update(r.offset for r in records)
        return held
    finally:
        await consumer.stop()


async def test_a_worker_started_after_the_cleaning_reads_the_officers_modes(
    kafka_env: KafkaEnv,
) -> None:
    bootstrap, topics = kafka_env.bootstrap, kafka_env.topics
    [spec] = [s for s in topics.specs() if s.name == topics.rollout]
    # A compacted topic of the test's own beside it: that the cleaner did clean shows the
    # broker had its chance at the rollout topic too.
    probe = f"{kafka_env.prefix}.cleaner-probe"
    admin = AIOKafkaAdminClient(**client_options(bootstrap))
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(probe, 1, 1, topic_configs={"cleanup.policy": "compact", **EAGER})]
        )
        # AlterConfigs replaces every override: the registry's, then the eager ones.
        altered = await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, topics.rollout, {**spec.broker_config(), **EAGER}
                )
            ]
        )
        assert [code for answer in altered for code, *_ in answer.resources] == [0]
    finally:
        await admin.close()

    cipher = StateCipher.load(kafka_env.keys_dir, HUB_PARTY)
    earlier = datetime.now(UTC) - timedelta(days=2)
    dgal_shadow = setting("dgal", None, RolloutMode.SHADOW, earlier)
    dga_off = setting("dga", None, RolloutMode.OFF, earlier)
    le_havre_advice = setting("dga", "FR000690", RolloutMode.ADVICE, earlier)
    le_havre_enforce = setting("dga", "FR000690", RolloutMode.ENFORCE, earlier + timedelta(days=1))
    producer = AIOKafkaProducer(**producer_options(bootstrap), acks="all")
    await producer.start()
    try:

        async def write(topic: str, key: bytes, value: bytes | None) -> int:
            sent = await producer.send_and_wait(topic, value, key=key, partition=0)
            offset: int = sent.offset
            return offset

        written_over = [
            await write(topics.rollout, dgal_shadow.key, seal_setting(cipher, dgal_shadow)),
            await write(topics.rollout, dga_off.key, seal_setting(cipher, dga_off)),
        ]
        advice = seal_setting(cipher, le_havre_advice)
        enforce = seal_setting(cipher, le_havre_enforce)
        written_over += [
            await write(topics.rollout, le_havre_advice.key, advice),
            await write(topics.rollout, le_havre_enforce.key, enforce),
        ]
        # What a party that may write the topic sends after the officer's settings.
        await write(topics.rollout, dgal_shadow.key, os.urandom(64))  # garbage
        await write(topics.rollout, dga_off.key, None)  # a tombstone
        await write(topics.rollout, le_havre_advice.key, advice)  # the older setting again
        probe_written_over = await write(probe, b"scope", b"first")
        await write(probe, b"scope", b"second")

        async with asyncio.timeout(CLEANED_WITHIN_S):
            while True:
                # A record under a key of no scope (ignored by the followers) rolls each
                # topic's segment once it is older than segment.ms: the cleaner never
                # touches the segment being written. Nothing tells a client that the
                # cleaner ran: what each topic still holds is looked at every half second.
                await write(topics.rollout, b"segment-roll", b"")
                await write(probe, b"segment-roll", b"")
                probe_cleaned = probe_written_over not in await offsets_held(bootstrap, probe)
                held = await offsets_held(bootstrap, topics.rollout)
                rollout_cleaned = not spec.compacted or not held & set(written_over)
                if probe_cleaned and rollout_cleaned:
                    break
                await asyncio.sleep(0.5)
    finally:
        await producer.stop()

    follower = RolloutFollower(
        from_settings(kafka_env.settings().kafka), topics.rollout, cipher, RolloutBoard()
    )
    following = asyncio.create_task(follower.run())
    try:
        async with asyncio.timeout(60):
            await follower.caught_up.wait()
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
    board = follower.board
    assert board.mode_for("dgal", None) is RolloutMode.SHADOW  # not lost to garbage
    assert board.mode_for("dga", None) is RolloutMode.OFF  # nor to a tombstone
    assert board.mode_for("dga", "FR000690") is RolloutMode.ENFORCE  # nor to a copy
    assert board.settings() == [dga_off, le_havre_enforce, dgal_shadow]
