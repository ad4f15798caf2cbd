"""Dead letters can be repaired (issue 13, item 5; ADR 0010), on the real broker.

The cause: the clearance system rotated its signing key for use at once (`keys rotate
--use-now`, skipping the grace that publishes a new key before it signs: ADR 0020) and
signed a declaration with the new key before the hub had its public half. The hub dead-letters it
(ENVELOPE_UNKNOWN_KID), as it must: it cannot tell who signed it. A redrive before the
cause is fixed is dead-lettered again. The operator imports the clearance system's new
public key (`keys import-public`; the test restarts the hub so as not to wait for the
keystore's next look at its files), redrives, and the decision arrives. Redriving again
decides nothing: the hub reads each redrive as the original record read again.

Everything an operator does goes through `gun-hub dlq`, as a subprocess, with officer
credentials made at test time; the keys are the session's, copied and rotated here.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from gun_contract.kafka.admin import topic_partitions
from gun_contract.model.verdicts import Outcome
from gun_contract.security.entitlements import CLEARANCE_PARTY
from gun_contract.security.keystore import KeystoreFolder
from gun_hub.domain.status_events import StatusEvent, StatusKind
from gun_hub.security.web_auth import LocalAccess
from gun_tools.clearance_stand_in import DecisionReader, ReceivedDecision, submit_declarations
from gun_tools.processes import free_port
from tests.builders import declaration_xml
from tests.conftest import KafkaEnv, envelope_of
from tests.e2e.conftest import Pipeline, officer_command, start_pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

REFERENCE = "26FRDLQE2E00000001"
UNKNOWN_KID = "ENVELOPE_UNKNOWN_KID"


@dataclass
class Repairable:
    """A pipeline whose hub does not know the clearance system's newest signing key."""

    pipeline: Pipeline
    access: LocalAccess
    officer_url: str
    hub_keys: Path
    clearance_keys: Path

    def dlq(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``gun-hub dlq ...`` as the operator runs it."""
        return officer_command(self.pipeline, self.access, self.officer_url, "dlq", *args)

    def listed(self, kind: str) -> list[dict[str, Any]]:
        done = self.dlq("list", "--kind", kind, "--json")
        assert done.returncode == 0, done.stderr
        rows: list[dict[str, Any]] = json.loads(done.stdout)["dead_letters"]
        return rows

    async def submit_as_clearance(self, xml: bytes) -> None:
        """Sealed by the clearance system with its newest keys."""
        kafka = self.pipeline.kafka
        await submit_declarations(
            kafka.bootstrap,
            kafka.topics.declarations,
            [xml],
            envelope_of(CLEARANCE_PARTY, kafka.topics, self.clearance_keys),
        )

    def fix_the_cause(self) -> None:
        """The hub's operator imports the clearance system's public keys, as exported by it
        (`gun-hub keys export-public` / `import-public --party clearance`)."""
        exported = KeystoreFolder(self.clearance_keys).export_public(CLEARANCE_PARTY)
        report = KeystoreFolder(self.hub_keys).import_public(
            exported, party=CLEARANCE_PARTY, source="clearance"
        )
        assert report.added, "the new clearance keys were not imported"

    async def decisions(self, expected: int, settle_s: float = 3.0) -> list[ReceivedDecision]:
        """Every decision on the topic once ``expected`` are there, and any that follow
        within ``settle_s``, read with the clearance system's own (rotated) keys."""
        kafka = self.pipeline.kafka
        reader = DecisionReader(
            kafka.bootstrap,
            kafka.topics.decisions,
            envelope_of(CLEARANCE_PARTY, kafka.topics, self.clearance_keys),
        )
        await reader.start(from_beginning=True)
        received: list[ReceivedDecision] = []
        try:
            async with asyncio.timeout(120):
                while len(received) < expected:
                    self.pipeline.group.check_alive()
                    received += await reader.collect(expected=expected - len(received), timeout_s=1)
            received += await reader.collect(expected=1, timeout_s=settle_s)
        finally:
            await reader.stop()
        return received


def keys_apart(kafka_env: KafkaEnv, work: Path) -> tuple[Path, Path]:
    """The hub's folder (its own private keys, everyone's public ones) and the clearance
    system's, whose signing key is rotated there and nowhere else."""
    hub_keys = work / "hub-keys"
    shutil.copytree(kafka_env.keys_dir, hub_keys)
    for private in hub_keys.glob("*.jwk"):
        if not private.name.startswith("hub"):
            private.unlink()
    clearance_keys = work / "clearance-keys"
    shutil.copytree(kafka_env.keys_dir, clearance_keys)
    KeystoreFolder(clearance_keys).rotate(CLEARANCE_PARTY, use_from=datetime.now(UTC))
    return hub_keys, clearance_keys


@pytest.fixture
def repairable(kafka_env: KafkaEnv, samples: Path, tmp_path: Path) -> Iterator[Repairable]:
    hub_keys, clearance_keys = keys_apart(kafka_env, tmp_path)
    access = LocalAccess.create(tmp_path / "access")
    trader_port, officer_port = free_port(), free_port()
    hub_env = {
        **access.env(trader_port, officer_port),
        "GUN_HUB_WEB__DEAD_LETTER_OPERATORS": access.officer,
        "GUN_HUB_SECURITY__KEYS_DIR": str(hub_keys),
    }
    for pipeline in start_pipeline(
        kafka_env, tmp_path, samples, partners=("dgal",), hub_env=hub_env
    ):
        yield Repairable(
            pipeline, access, f"http://127.0.0.1:{officer_port}", hub_keys, clearance_keys
        )


async def until(
    what: str, check: Callable[[], Awaitable[Any]], pipeline: Pipeline, within_s: float = 60
) -> Any:
    """``check()``'s answer once it is truthy (the view and the audit are read from the
    broker: eventually there); fails with ``what`` after ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        pipeline.group.check_alive()
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.5)
    pytest.fail(f"never: {what}")


async def read_all(pipeline: Pipeline, topic: str) -> list[bytes]:
    """Every committed value on ``topic`` now (up to its stable end offsets): the audit
    trail is written in transactions, and an aborted batch is no record of it."""
    bootstrap = pipeline.kafka.bootstrap
    numbers = await topic_partitions(bootstrap, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, number) for number in numbers]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        values: list[bytes] = []
        async with asyncio.timeout(60):
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    values += [r.value or b"" for r in records]
        return values
    finally:
        await consumer.stop()


async def audit_records(pipeline: Pipeline) -> list[dict[str, Any]]:
    return [json.loads(v) for v in await read_all(pipeline, pipeline.kafka.topics.audit)]


async def test_a_dead_letter_whose_cause_is_fixed_is_redriven_and_decided_once(
    repairable: Repairable,
) -> None:
    pipeline = repairable.pipeline
    topics = pipeline.kafka.topics
    await repairable.submit_as_clearance(declaration_xml(reference=REFERENCE))

    # Dead-lettered: the hub cannot tell who signed it.
    [row] = await until(
        "the dead letter is listed",
        lambda: asyncio.to_thread(repairable.listed, UNKNOWN_KID),
        pipeline,
    )
    assert row["reference"] == REFERENCE  # from its key: it was never read
    assert row["redrivable"] is True
    origin = row["source"]
    assert origin.startswith(f"{topics.declarations}/")
    shown = repairable.dlq("show", row["id"])
    assert shown.returncode == 0, shown.stderr
    assert UNKNOWN_KID in shown.stdout
    assert "sealed to hub" in shown.stdout
    assert "is not registered" in shown.stdout  # the whole reason
    assert "unknown key id (not in jwks.json as last read at" in shown.stdout
    sealed = repairable.dlq("show", row["id"], "--payload")
    assert sealed.returncode == 2  # sealed to the hub: never opened for display
    assert "not opened for display" in sealed.stderr

    # Redriven before the cause is fixed: dead-lettered again, about the same original.
    early = repairable.dlq("redrive", row["id"])
    assert early.returncode == 0, early.stderr

    async def dead_lettered_again() -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(repairable.listed, UNKNOWN_KID)
        return [r for r in rows if r["id"] != row["id"]]

    again = await until("the early redrive is dead-lettered again", dead_lettered_again, pipeline)
    assert [r["source"] for r in again] == [origin]

    # The cause fixed, every dead letter of the kind redriven: each original once.
    repairable.fix_the_cause()
    pipeline.restart_hub(sig=signal.SIGTERM, wipe_local_state=False)
    repaired = repairable.dlq("redrive", "--kind", UNKNOWN_KID)
    assert repaired.returncode == 0, repaired.stderr
    assert "1 redriven, 0 cannot be redriven, 0 refused" in repaired.stderr
    [decision] = await repairable.decisions(1)
    assert (decision.decision.reference, decision.decision.version) == (REFERENCE, 1)
    assert decision.decision.outcome is Outcome.RELEASE

    # Redriven once more: read as the original read again, decided nothing.
    twice = repairable.dlq("redrive", row["id"])
    assert twice.returncode == 0, twice.stderr

    async def redrives_read() -> list[dict[str, Any]]:
        records = await audit_records(pipeline)
        read = [r for r in records if r.get("kind") == "REDRIVE" and r["origin"] == origin]
        return records if len(read) == 3 else []

    audited = await until("the hub has read all three redrives", redrives_read, pipeline)
    assert len(await repairable.decisions(1)) == 1
    decided = [
        r for r in audited if r.get("kind") == "DECISION" and r.get("reference") == REFERENCE
    ]
    assert len(decided) == 1
    statuses = [StatusEvent.model_validate_json(v) for v in await read_all(pipeline, topics.status)]
    assert [s.kind for s in statuses if s.reference == REFERENCE].count(StatusKind.DECIDED) == 1
    # Each redrive is on the audit trail twice over: who asked (the officer the listener
    # authenticated) and what the hub read.
    actions = [r for r in audited if r.get("kind") == "OPERATOR_ACTION"]
    assert [(a["action"], a["officer"], a["origin"]) for a in actions] == [
        ("DLQ_REDRIVE", repairable.access.officer, origin)
    ] * 3
