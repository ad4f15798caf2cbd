"""An officer's action sealed with a hub state key this worker lacks stops the worker, and
is chained once it is given the key (review stop 41, R3; ADR 0022's addendum of stop 41).

On the real broker: the operator rotates the hub's state key for use at once (what a
rotation's use time reached before the rollout ended comes to) and another process's
officer listener seals an action with it onto ``hub.operator-actions``; this worker was
not given the new ``hub.jwk``. Its audit keeper wrote a security dead letter
OPERATOR_ACTION_UNVERIFIED (a forgery) and never chained the action. Now the worker stops,
exit non-zero, naming the key, with no dead letter and nothing chained; started again with
the key file, it chains the action once.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from gun_contract.dead_letter import HEADER_ERROR_KIND, header_value
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.security.state_cipher import StateCipher
from gun_hub.pipeline.audit_keeper import OPERATOR_ACTION_UNVERIFIED
from gun_hub.security.operator_actions import ActionKind, OperatorAction, seal_action
from tests.conftest import fresh_kafka_env
from tests.e2e.conftest import Pipeline, start_pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]


@pytest.fixture
def hub_with_own_keys(
    kafka_bootstrap: str, own_keys_dir: Path, samples: Path, tmp_path: Path
) -> Iterator[Pipeline]:
    """The hub alone, on a keys folder of this test's own (the worker's, to be replaced)."""
    kafka_env = fresh_kafka_env(kafka_bootstrap, own_keys_dir, tmp_path / "state")
    yield from start_pipeline(kafka_env, tmp_path / "run", samples, partners=())


def officers_action(dlq: str) -> OperatorAction:
    return OperatorAction(
        action=ActionKind.DLQ_PAYLOAD_READ,
        officer="alice",
        dead_letter=f"{dlq}/0/17",
        at=datetime.now(UTC),
    )


async def audited_actions(pipeline: Pipeline) -> list[dict[str, Any]]:
    records = await pipeline.records(pipeline.kafka.topics.audit)
    bodies = [json.loads(r.value or b"{}") for r in records]
    return [b for b in bodies if b.get("kind") == "OPERATOR_ACTION"]


async def test_an_action_under_a_state_key_not_deployed_stops_the_worker_then_is_chained(
    hub_with_own_keys: Pipeline, own_keys_dir: Path, tmp_path: Path
) -> None:
    pipeline = hub_with_own_keys
    topics = pipeline.kafka.topics
    operator = tmp_path / "operator"
    shutil.copytree(own_keys_dir, operator)
    [kid] = KeystoreFolder(operator).rotate(HUB_PARTY, state=True, use_from=datetime.now(UTC))
    key = f"{topics.dlq}/0/17".encode()
    sealed = seal_action(StateCipher.load(operator, HUB_PARTY), key, officers_action(topics.dlq))

    producer = AIOKafkaProducer(bootstrap_servers=pipeline.kafka.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topics.operator_actions, sealed, key=key, partition=0)
    finally:
        await producer.stop()

    hub = pipeline.group.children["hub"].process
    # Retried for about 20 s first (the key file may be on its way), then it stops.
    assert await asyncio.to_thread(hub.wait, 120) != 0
    log = pipeline.hub_log()
    assert f"deploy the state key {kid!r}" in log
    assert "agent operator-actions" in log
    dead = await pipeline.records(topics.dlq)
    kinds = [header_value(list(r.headers), HEADER_ERROR_KIND) for r in dead]
    assert OPERATOR_ACTION_UNVERIFIED not in kinds
    assert await audited_actions(pipeline) == []

    # The worker is given the rotated key file and started again: the same record, chained.
    shutil.copy(operator / "hub.jwk", own_keys_dir / "hub.jwk")
    pipeline.group.stop("hub", sig=signal.SIGTERM)
    pipeline.start_hub()
    async with asyncio.timeout(90):
        while not (chained := await audited_actions(pipeline)):
            pipeline.group.check_alive()
    assert [(a["action"], a["officer"]) for a in chained] == [("DLQ_PAYLOAD_READ", "alice")]
    assert [a["record"] for a in chained] == [f"{topics.operator_actions}/0/0"]
    dead = await pipeline.records(topics.dlq)
    assert OPERATOR_ACTION_UNVERIFIED not in [
        header_value(list(r.headers), HEADER_ERROR_KIND) for r in dead
    ]
