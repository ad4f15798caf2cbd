"""A decision publisher that cannot publish says so (issue 12: readiness reflects what the
worker really does; gun_hub/runtime/publisher.py, ``/readyz``).

The hub's agents can look healthy while no decision leaves: every transaction of the
publisher failing, or one never returning. The publisher then names the outbox partitions
whose fetched decisions have waited longer than the limit, and the hub's readiness lists
them; once the decisions go out again, it no longer does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from gun_contract.kafka.admin import ensure_topics
from gun_hub.runtime.publisher import DecisionPublisher
from tests.conftest import PARTITIONS, KafkaEnv
from tests.integration.publisher_fixtures import (
    announce,
    delete_topic,
    new_publisher,
    published,
    running,
    stop,
)
from tests.local_cluster import poll_until

pytestmark = pytest.mark.broker

STALL_S = 1.0


def _stalled_now(
    publisher: DecisionPublisher, longer_than_s: float
) -> Callable[[], Awaitable[bool]]:
    """The publisher's own word polled: nothing signals a transaction that keeps failing."""

    async def check() -> bool:
        return publisher.stalled(longer_than_s=longer_than_s) != []

    return check


async def test_a_publisher_that_cannot_publish_names_its_stalled_partitions_until_it_can(
    kafka_env: KafkaEnv,
) -> None:
    # The decisions topic is gone: nothing the publisher fetches can be published.
    await delete_topic(kafka_env.bootstrap, kafka_env.topics.decisions)
    publisher = new_publisher(kafka_env)
    task = await running(publisher)
    try:
        assert publisher.stalled(longer_than_s=0) == []  # nothing fetched yet: nothing waits
        await announce(kafka_env, range(2 * PARTITIONS))
        await poll_until("a stalled partition named", _stalled_now(publisher, STALL_S), 90)
        assert set(publisher.stalled(longer_than_s=STALL_S)) <= set(range(PARTITIONS))

        # The topic is back: the decisions go out, and no partition is stalled any more.
        await ensure_topics(kafka_env.bootstrap, kafka_env.topics, PARTITIONS, 1)
        seen = await published(kafka_env, 2 * PARTITIONS, publisher)
        assert sorted(seen.values()) == [1] * (2 * PARTITIONS)
        still = _stalled_now(publisher, 0)

        async def cleared() -> bool:  # the last batch's transaction returning
            return not await still()

        await poll_until("no partition stalled", cleared, timeout_s=30)
    finally:
        await stop(publisher, task)
