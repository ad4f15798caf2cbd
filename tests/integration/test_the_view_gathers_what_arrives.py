"""The operations view's reader lets the broker gather records (``ops.view_gather_ms``).

At a moderate rate every component that reads the hub's status and facts topics fetched
once per burst of records: a declaration's statuses come in four or five bursts, each a
fetch naming every partition the view follows, and a SQLite transaction of one or two
records. Nobody needs a status the millisecond it is written, so the view's reader asks
the broker to hold each fetch for a moment: what arrived meanwhile comes in one fetch and
is applied in one transaction. Nothing is left out either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from gun_contract.kafka.client import from_settings, producer_options
from gun_hub.domain.status_events import StatusEvent, StatusKind
from gun_hub.ops.feed import OpsFeed
from gun_hub.ops.lag_metrics import OpsState
from gun_hub.ops.view import FeedRecord, FeedTopics, OpsView
from tests.conftest import KafkaEnv

pytestmark = pytest.mark.broker

STATUSES = 20
SPACING_S = 0.02  # the records' own pace: one every 20 ms, each on the broker before the next


class CountedView(OpsView):
    """The view, counting the records of each transaction it applies."""

    def __init__(self, path: Path, topics: FeedTopics) -> None:
        super().__init__(path, topics)
        self.batches: list[int] = []
        self.all_applied = asyncio.Event()

    def apply(self, records: Iterable[FeedRecord]) -> int:
        batch = list(records)
        self.batches.append(len(batch))
        applied = super().apply(batch)
        if sum(self.batches) >= STATUSES:
            self.all_applied.set()
        return applied


async def batches_applied(kafka_env: KafkaEnv, tmp_path: Path, gather_ms: int) -> list[int]:
    """The sizes of the transactions in which a running feed applied 20 statuses that
    arrived one every 20 ms."""
    topics = kafka_env.topics
    view = CountedView(
        tmp_path / f"view-{gather_ms}.sqlite3",
        FeedTopics(
            status=topics.status, facts=topics.facts, dlq=topics.dlq, health=topics.ops_health
        ),
    )
    feed = OpsFeed(from_settings(kafka_env.settings().kafka), view, OpsState(), gather_ms=gather_ms)
    producer = AIOKafkaProducer(**producer_options(kafka_env.bootstrap), acks="all")
    await producer.start()
    following = asyncio.create_task(feed.run())
    try:
        async with asyncio.timeout(60):
            await feed.caught_up.wait()  # the view follows its (empty) topics
            for n in range(STATUSES):
                event = StatusEvent(
                    reference=f"26FRGATHER{gather_ms:04d}{n:04d}",
                    version=1,
                    kind=StatusKind.RECEIVED,
                    at=datetime.now(UTC),
                )
                await producer.send_and_wait(topics.status, event.to_bytes(), partition=0)
                await asyncio.sleep(SPACING_S)
            await view.all_applied.wait()
        for n in range(STATUSES):
            assert view.history(f"26FRGATHER{gather_ms:04d}{n:04d}"), f"status {n} not applied"
        return view.batches
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await producer.stop()
        view.close()


async def test_records_that_arrive_within_the_gather_window_are_applied_together(
    kafka_env: KafkaEnv, tmp_path: Path
) -> None:
    batches = await batches_applied(kafka_env, tmp_path, gather_ms=500)
    assert sum(batches) == STATUSES
    assert len(batches) <= 4, f"{len(batches)} transactions for {STATUSES} statuses: {batches}"


async def test_without_a_gather_window_each_burst_is_a_fetch_and_a_transaction_of_its_own(
    kafka_env: KafkaEnv, tmp_path: Path
) -> None:
    """What the window saves: the same records, fetched as they arrive."""
    batches = await batches_applied(kafka_env, tmp_path, gather_ms=0)
    assert sum(batches) == STATUSES
    assert len(batches) >= STATUSES // 2, f"only {len(batches)} transactions: {batches}"
