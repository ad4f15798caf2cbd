"""A decision another hub worker sealed with a state key this worker does not hold is not
lost (review stop 40's open item; ADR 0022's addendum of stop 41), on the real broker.

Worker A ran ``gun-hub keys rotate hub --state`` and seals the outbox with the new key;
this worker's key file is the one before. Its publisher dead-lettered A's decision
(OUTBOX_UNREADABLE) and committed past it: never published. Now it aborts the partition's
transaction, waits for the key a while, then stops naming it, with nothing dead-lettered,
published or committed; started again with the key file deployed, it publishes the
decision, and the one after it on the same partition, once each.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.security.state_cipher import StateKeyMissing
from gun_hub.runtime.publisher import DecisionPublisher
from tests.conftest import PARTITIONS, KafkaEnv
from tests.integration.publisher_fixtures import announce, new_publisher, published, running, stop
from tests.integration.test_the_publisher_outlives_its_producers_failures import _committed
from tests.local_cluster import poll_until

pytestmark = pytest.mark.broker

PATIENCE_S = 2.0  # the key waited for (KEY_MISSING_PATIENCE_S in production, 20 s)


async def _everything_on(kafka_env: KafkaEnv, topic: str) -> list[bytes]:
    """The keys of every committed record of ``topic`` (read to its end)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_env.bootstrap, isolation_level="read_committed"
    )
    await consumer.start()
    found: list[bytes] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)

        async def read_to_the_end() -> bool:
            return all([await consumer.position(tp) >= end for tp, end in ends.items()])

        async with asyncio.timeout(30):
            while not await read_to_the_end():
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    found.extend(record.key or b"" for record in records)
    finally:
        await consumer.stop()
    return found


async def test_a_decision_under_a_state_key_this_worker_lacks_is_published_once_it_has_it(
    kafka_env: KafkaEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    group = f"{kafka_env.prefix}-hub-publisher"
    rotated, here = tmp_path / "keys-worker-a", tmp_path / "keys-this-worker"
    shutil.copytree(kafka_env.keys_dir, rotated)
    shutil.copytree(kafka_env.keys_dir, here)
    [kid] = KeystoreFolder(rotated).rotate(HUB_PARTY, state=True, use_from=datetime.now(UTC))
    worker_a = dataclasses.replace(kafka_env, keys_dir=rotated)
    this_worker = dataclasses.replace(kafka_env, keys_dir=here)

    # Outbox partition 0: worker A's decision (new key), then this worker's (old key).
    await announce(worker_a, [0])
    await announce(this_worker, [PARTITIONS])

    publisher: DecisionPublisher = new_publisher(this_worker, key_missing_patience_s=PATIENCE_S)
    task = await running(publisher)

    async def stopped_or_committed() -> bool:
        return task.done() or await _committed(kafka_env, group, 0) > 0

    await poll_until("the publisher stopped or committed", stopped_or_committed, 120)
    assert await _committed(kafka_env, group, 0) == 0, "committed past worker A's decision"
    await asyncio.wait({task}, timeout=60)
    assert task.done(), "the publisher did not stop"
    with pytest.raises(StateKeyMissing) as missing:
        await task
    assert missing.value.kid == kid
    assert await _everything_on(kafka_env, kafka_env.topics.dlq) == []
    assert await _everything_on(kafka_env, kafka_env.topics.decisions) == []
    [stops] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert f"deploy the state key {kid!r} to it" in stops.getMessage()

    # The key file deployed to this worker (as every worker must have it), started again.
    shutil.copy2(rotated / f"{HUB_PARTY}.jwk", here / f"{HUB_PARTY}.jwk")
    restarted: DecisionPublisher = new_publisher(this_worker)
    task = await running(restarted)
    try:
        seen = await published(kafka_env, 2, restarted)
        assert seen == {(b"26FRPUB00000000000", 0): 1, (f"26FRPUB{PARTITIONS:011d}".encode(), 0): 1}
        assert await _committed(kafka_env, group, 0) == 2
        assert await _everything_on(kafka_env, kafka_env.topics.dlq) == []
        assert not task.done()
    finally:
        with contextlib.suppress(StateKeyMissing):
            await stop(restarted, task)
