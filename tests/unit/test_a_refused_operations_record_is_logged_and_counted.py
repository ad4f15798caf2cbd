"""A lag snapshot or a heartbeat the broker refuses is logged (at most once a minute) and
counted, never lost without a word (gun_contract/kafka/watched_sends.py; review stop 37,
K4). Their senders do not wait for the broker; before this nothing looked at the delivery
at all: a ``gun.ops.lag`` made compacted by hand refused every snapshot in silence."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import CorruptRecordException, KafkaTimeoutError
from prometheus_client import REGISTRY

from gun_contract.kafka.watched_sends import WatchedSends
from gun_contract.settings import OpsSettings, SecuritySettings, Settings
from gun_contract.topics import topic_registry
from gun_hub.ops.lag import LagSnapshot
from gun_hub.ops.lag_monitor import snapshot_publisher
from tests.adapter_fixtures import adapter_runner

TOPICS = topic_registry("gun", ("dgal", "cites", "dga"))
SNAPSHOTS_UNSENT = "gun_hub_lag_snapshots_unsent_total"
HEARTBEATS_UNSENT = "gun_adapter_heartbeats_unsent_total"
LAG = TOPICS.ops_lag


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class RefusingProducer:
    """Queues every record, and the broker refuses each one (a compacted topic and a
    record without a key, say): what ``send`` hands back fails."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.sent: list[tuple[str, bytes]] = []
        self.delivered = asyncio.Event()  # set once a delivery has failed

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[Any]:
        self.sent.append((topic, value))
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        delivery.set_exception(self.error)
        delivery.add_done_callback(lambda _done: self.delivered.set())
        return delivery


def _snapshot() -> LagSnapshot:
    return LagSnapshot(at=datetime.now(UTC), groups=[], partitions=[])


async def _settled() -> None:
    """Done callbacks run at the loop's next turn: one turn for the producer's, one for
    the watcher's."""
    for _ in range(3):
        await asyncio.sleep(0)


def test_a_refused_snapshot_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    producer = RefusingProducer(CorruptRecordException("compacted topic: a key is required"))
    before = _sample(SNAPSHOTS_UNSENT)

    async def publish_one() -> None:
        publish = snapshot_publisher(lambda topic, value: producer.send(topic, value), LAG)
        await publish(_snapshot())
        await producer.delivered.wait()
        await _settled()

    with caplog.at_level(logging.WARNING):
        asyncio.run(publish_one())
    assert [topic for topic, _ in producer.sent] == [LAG]
    assert _sample(SNAPSHOTS_UNSENT) == before + 1
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "lag snapshot not sent: CorruptRecordException" in warning.getMessage()


def test_a_refused_heartbeat_is_logged_and_counted(
    tmp_path: Path, keys_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        security=SecuritySettings(keys_dir=keys_dir, state_dir=tmp_path / "state"),
        ops=OpsSettings(heartbeat_s=3600),  # one beat in the test
    )
    runner = adapter_runner("dga", settings, TOPICS)
    producer = RefusingProducer(KafkaTimeoutError("no acknowledgement"))
    before = _sample(HEARTBEATS_UNSENT, authority="dga")

    async def beat_once() -> None:
        beating = asyncio.ensure_future(runner._heartbeat(producer))
        try:
            await producer.delivered.wait()
            await _settled()
        finally:
            beating.cancel()

    try:
        with caplog.at_level(logging.WARNING):
            asyncio.run(beat_once())
    finally:
        runner.pending.close()
    assert [topic for topic, _ in producer.sent] == [TOPICS.ops_health]
    assert _sample(HEARTBEATS_UNSENT, authority="dga") == before + 1
    assert any(
        "heartbeat not sent: KafkaTimeoutError" in r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING
    )


def test_a_send_refused_before_it_is_queued_is_counted_too() -> None:
    counted: list[int] = []

    async def refuse() -> Any:
        raise CorruptRecordException("too large")

    asyncio.run(WatchedSends("heartbeat", lambda: counted.append(1)).send(refuse))
    assert counted == [1]


def test_failures_are_logged_at_most_once_a_minute_with_how_many_were_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    counted: list[int] = []
    watched = WatchedSends("heartbeat", lambda: counted.append(1), clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # a heartbeat every 10 s, each refused
            watched.failed(KafkaTimeoutError("no acknowledgement"))
            now[0] += 10
        now[0] += 60
        watched.failed(KafkaTimeoutError("no acknowledgement"))
    assert len(counted) == 4  # every one counted
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 2
    assert "more not sent" not in messages[0]
    assert "(2 more not sent since the last warning)" in messages[1]
