"""The operations view (and every worker's rollout follower, on the same reader) reads
only what transactions committed.

Found by review stop 40-F (F2): the reader that joins no group was left at aiokafka's
default, ``read_uncommitted``, while every other consumer of the project reads committed.
A status event or a dead letter in a transaction that was then aborted (the decision
publisher's, fenced or refused and retried; or a party's own, on ``gun.dlq``) entered the
trader's history and the dead-letter desk as if it had happened, and a retried batch
showed there twice.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from gun_contract.kafka.client import from_settings, producer_options
from gun_hub.domain.status_events import StatusEvent, StatusKind
from gun_hub.ops.feed import OpsFeed
from gun_hub.ops.lag_metrics import OpsState
from gun_hub.ops.view import FeedTopics, OpsView
from tests.conftest import KafkaEnv

pytestmark = pytest.mark.broker

ABORTED, COMMITTED = "26FRABORTED000001", "26FRCOMMITTED0001"


def received(reference: str) -> bytes:
    return StatusEvent(
        reference=reference, version=1, kind=StatusKind.RECEIVED, at=datetime.now(UTC)
    ).to_bytes()


async def test_a_status_event_of_an_aborted_transaction_never_reaches_the_view(
    kafka_env: KafkaEnv, tmp_path: Path
) -> None:
    topics = kafka_env.topics
    producer = AIOKafkaProducer(
        **producer_options(kafka_env.bootstrap), transactional_id="test-view-aborted"
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(topics.status, received(ABORTED), partition=0)
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topics.status, received(COMMITTED), partition=0)
    finally:
        await producer.stop()
    view = OpsView(
        tmp_path / "view.sqlite3",
        FeedTopics(topics.status, topics.facts, topics.dlq, topics.ops_health),
    )
    feed = OpsFeed(from_settings(kafka_env.settings().kafka), view, OpsState())
    following = asyncio.create_task(feed.run())
    try:
        async with asyncio.timeout(60):
            await feed.caught_up.wait()  # up to what the broker held at the start: both
        assert view.history(COMMITTED)
        assert not view.history(ABORTED)
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        view.close()
