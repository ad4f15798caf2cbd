"""A publisher taking an outbox partition over reads back only its last decisions, and
still skips one announced again after a crash (issue 12, bounded state: no re-reading of
a day, let alone 30, at start-up; gun_hub/runtime/publisher.py)."""

from __future__ import annotations

import pytest

from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import StateCipher
from gun_hub.runtime.publisher import DecisionPublisher
from tests.conftest import PARTITIONS, KafkaEnv
from tests.integration.test_decision_publishers_share_the_outbox import (
    _announce,
    _published,
    _running,
    _stop,
)

pytestmark = pytest.mark.broker

DECISIONS = 60  # 15 per partition
MEMORY = 10  # decisions remembered per partition


def _publisher(kafka_env: KafkaEnv) -> DecisionPublisher:
    topics = kafka_env.topics
    return DecisionPublisher(
        kafka_env.bootstrap,
        topics.decision_outbox,
        topics.decisions,
        f"{kafka_env.prefix}-hub",
        kafka_env.envelope(HUB_PARTY),
        StateCipher.load(kafka_env.keys_dir, HUB_PARTY),
        memory=MEMORY,
    )


async def test_a_restarted_publisher_remembers_the_latest_decisions_only_and_skips_a_repeat(
    kafka_env: KafkaEnv,
) -> None:
    first = _publisher(kafka_env)
    task = await _running(first)
    await _announce(kafka_env, range(DECISIONS))
    await _published(kafka_env, DECISIONS, first)
    await _stop(first, task)

    second = _publisher(kafka_env)
    task = await _running(second)
    try:
        # The last five of each partition, announced again after a crash.
        await _announce(kafka_env, range(DECISIONS - 5 * PARTITIONS, DECISIONS))
        seen = await _published(kafka_env, DECISIONS, second)
        assert len(seen) == DECISIONS
        assert [key for key, times in seen.items() if times > 1] == []
        # 15 were published on each partition; the last 10 are remembered (a partition
        # the group is handing over again at this instant is not counted).
        remembered = second.remembered()
        assert remembered
        assert set(remembered.values()) == {MEMORY}
    finally:
        await _stop(second, task)
