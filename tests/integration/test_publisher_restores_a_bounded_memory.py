"""A publisher taking an outbox partition over reads back only its last decisions, and
still skips one announced again after a crash (issue 12, bounded state: no re-reading of
a day, let alone 30, at start-up; gun_hub/runtime/publisher.py)."""

from __future__ import annotations

import pytest

from tests.conftest import PARTITIONS, KafkaEnv
from tests.integration.publisher_fixtures import (
    announce,
    new_publisher,
    published,
    running,
    stop,
)

pytestmark = pytest.mark.broker

DECISIONS = 60  # 15 per partition
MEMORY = 10  # decisions remembered per partition


async def test_a_restarted_publisher_remembers_the_latest_decisions_only_and_skips_a_repeat(
    kafka_env: KafkaEnv,
) -> None:
    first = new_publisher(kafka_env, memory=MEMORY)
    task = await running(first)
    await announce(kafka_env, range(DECISIONS))
    await published(kafka_env, DECISIONS, first)
    await stop(first, task)

    second = new_publisher(kafka_env, memory=MEMORY)
    task = await running(second)
    try:
        # The last five of each partition, announced again after a crash.
        await announce(kafka_env, range(DECISIONS - 5 * PARTITIONS, DECISIONS))
        seen = await published(kafka_env, DECISIONS, second)
        assert len(seen) == DECISIONS
        assert [key for key, times in seen.items() if times > 1] == []
        # 15 were published on each partition; the last 10 are remembered (a partition
        # the group is handing over again at this instant is not counted).
        remembered = second.remembered()
        assert remembered
        assert set(remembered.values()) == {MEMORY}
    finally:
        await stop(second, task)
