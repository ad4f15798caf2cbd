"""A decision announced again by a declaration partition that was stuck for long is not
published a second time, however many decisions of the other partitions its outbox lane
published meanwhile (ADR 0025's addendum of stop 47).

The repeat comes from the records a crash left uncommitted on its declaration partition
(the origin), so the publisher keeps each origin's latest decisions apart from the lane's
count: a partition every worker stopped on for an hour, while the others' decisions went
on through the same lane, comes back to a lane that still knows what it published last,
whether the lane stayed with its publisher or was taken over meanwhile (the window is read
back from where the lane's last commit says it lies)."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import StateCipher
from gun_hub.pipeline.decision_outbox import (
    HEADER_ORIGIN,
    HEADER_VERSION,
    OUTBOX_STATE,
    outbox_record_key,
)
from tests.conftest import KafkaEnv
from tests.integration.publisher_fixtures import (
    new_publisher,
    outbox_read_to_its_end,
    published,
    running,
    stop,
)

pytestmark = pytest.mark.broker

MEMORY = 10  # decisions the lane remembers, all origins together
LANE = 0  # the outbox partition of every decision here
STUCK = 1  # the declaration partition every worker stopped on
FLOWING = 0  # the one whose decisions went on meanwhile
OTHERS = 6 * MEMORY  # far more than the lane's count
REPEATED = b"26FRSTUCK0000000001"


async def announce(kafka_env: KafkaEnv, decisions: list[tuple[bytes, int]]) -> None:
    """``(reference, origin)`` decisions as the hub's agents write them, version 1, all on
    the outbox partition ``LANE`` (the lane of their references' hash, say)."""
    cipher = StateCipher.load(kafka_env.keys_dir, HUB_PARTY)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_env.bootstrap, linger_ms=5)
    await producer.start()
    try:
        for reference, origin in decisions:
            sealed = cipher.seal(OUTBOX_STATE, outbox_record_key(reference, b"1"), b"<Decision/>")
            await producer.send(
                kafka_env.topics.decision_outbox,
                sealed,
                key=reference,
                partition=LANE,
                headers=[(HEADER_VERSION, b"1"), (HEADER_ORIGIN, str(origin).encode())],
            )
        await producer.flush()
    finally:
        await producer.stop()


def the_others(start: int) -> list[tuple[bytes, int]]:
    return [(f"26FRFLOW{n:011d}".encode(), FLOWING) for n in range(start, start + OTHERS)]


async def test_a_publisher_that_kept_its_lane_withholds_the_repeat(kafka_env: KafkaEnv) -> None:
    publisher = new_publisher(kafka_env, memory=MEMORY)
    task = await running(publisher)
    try:
        await announce(kafka_env, [(REPEATED, STUCK), *the_others(0)])
        await published(kafka_env, 1 + OTHERS, publisher)
        # The stuck partition handled again: its last decision announced once more.
        await announce(kafka_env, [(REPEATED, STUCK), *the_others(OTHERS)])
        await outbox_read_to_its_end(kafka_env)
        seen = await published(kafka_env, 1 + 2 * OTHERS, publisher)
        assert seen[(REPEATED, LANE)] == 1
        assert [key for key, times in seen.items() if times > 1] == []
    finally:
        await stop(publisher, task)


async def test_a_publisher_taking_the_lane_over_withholds_the_repeat(kafka_env: KafkaEnv) -> None:
    first = new_publisher(kafka_env, memory=MEMORY)
    task = await running(first)
    await announce(kafka_env, [(REPEATED, STUCK), *the_others(0)])
    await published(kafka_env, 1 + OTHERS, first)
    await stop(first, task)

    second = new_publisher(kafka_env, memory=MEMORY)
    task = await running(second)
    try:
        await announce(kafka_env, [*the_others(OTHERS), (REPEATED, STUCK)])
        await outbox_read_to_its_end(kafka_env)
        seen = await published(kafka_env, 1 + 2 * OTHERS, second)
        assert seen[(REPEATED, LANE)] == 1
        assert [key for key, times in seen.items() if times > 1] == []
    finally:
        await stop(second, task)
