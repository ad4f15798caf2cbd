"""A hub worker whose decision publisher meets a decision sealed with a state key it does
not hold stops, naming the key, and publishes the decision once started with it (review
stop 40's open item; ADR 0022's addendum of stop 41).

Another worker ran ``gun-hub keys rotate hub --state`` and decided a declaration, sealing
its decision on the outbox with the new key; the outbox partition is this worker's to
publish. It dead-lettered the decision (OUTBOX_UNREADABLE) and committed past it, alive
and ready: a decision lost for the clearance system. Now the process exits non-zero after
its wait for the key (about 20 s), one line naming the key and what to do, no traceback,
nothing on gun.dlq; given the key file, it publishes the decision, once.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from gun_contract.model.decision import Decision
from gun_contract.model.verdicts import Outcome
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.security.state_cipher import StateCipher
from gun_contract.topics import reference_partition
from gun_hub.pipeline.decision_outbox import HEADER_VERSION, OUTBOX_STATE, outbox_record_key
from gun_hub.xml.decision_codec import encode_decision
from tests.conftest import PARTITIONS
from tests.e2e.conftest import Pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

REFERENCE = "26FRROTATED0000001"


async def decided_by_a_worker_with(keys_dir: Path, pipeline: Pipeline) -> None:
    """Version 1 of REFERENCE released, on the outbox as a hub worker holding ``keys_dir``
    writes it (hub_context.emit_decision): sealed with its newest state key, on the
    reference's outbox partition."""
    decision = Decision(
        reference=REFERENCE, version=1, outcome=Outcome.RELEASE, decided_at=datetime.now(UTC)
    )
    key = outbox_record_key(REFERENCE.encode(), b"1")
    sealed = StateCipher.load(keys_dir, HUB_PARTY).seal(
        OUTBOX_STATE, key, encode_decision(decision)
    )
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.kafka.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            pipeline.kafka.topics.decision_outbox,
            sealed,
            key=REFERENCE.encode(),
            partition=reference_partition(REFERENCE, PARTITIONS),
            headers=[(HEADER_VERSION, b"1")],
        )
    finally:
        await producer.stop()


async def test_a_worker_lacking_the_state_key_of_an_outbox_decision_stops_then_publishes_it(
    hub_only: Pipeline, tmp_path: Path
) -> None:
    rotated = tmp_path / "keys-rotated"
    shutil.copytree(hub_only.kafka.keys_dir, rotated)
    [kid] = KeystoreFolder(rotated).rotate(HUB_PARTY, state=True, use_from=datetime.now(UTC))
    hub = hub_only.group.children["hub"].process

    await decided_by_a_worker_with(rotated, hub_only)
    # Read again for about 20 s first (the key file may be on its way), then it stops.
    assert await asyncio.to_thread(hub.wait, 120) != 0
    log = hub_only.hub_log()
    assert f"deploy the state key {kid!r} to it" in log
    assert "Traceback" not in log  # an expected end, said in a sentence
    assert "OUTBOX_UNREADABLE" not in log
    assert await hub_only.records(hub_only.kafka.topics.dlq) == []
    assert await hub_only.records(hub_only.kafka.topics.decisions) == []

    # Every worker given the same key file, as docs/operations.md says; started again.
    hub_only.hub_env["GUN_HUB_SECURITY__KEYS_DIR"] = str(rotated)
    hub_only.start_hub()
    decided = await hub_only.decisions(1)
    assert [(d.decision.reference, d.decision.version) for d in decided] == [(REFERENCE, 1)]
    assert await hub_only.records(hub_only.kafka.topics.dlq) == []
