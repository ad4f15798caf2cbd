"""The attacks of issue 11, item 3, on a real broker, seen by ``gun-hub audit verify``.

The trail is written to the audit topic as the hub writes it (its own audit key, its
checkpoint rules, its links' MACs, its resync from the topic's tail); the attacker has
write access to the topic (or, to cut its tail, the right to delete and re-create it) but
not the hub's audit key. The auditor's command runs as a separate process with a keys
folder that holds the public JWKS only.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from gun_contract.kafka.admin import (
    CommittedTail,
    RecordsRead,
    committed_records_since,
    committed_tails,
    last_records,
)
from gun_contract.kafka.client import ClientConfig
from gun_contract.security.keystore import PUBLIC_JWKS, AuditSigner
from gun_hub.runtime.audit_resync import LOOK_BACK_RECORDS, TAIL_RECORDS, resync_audit_heads
from gun_hub.security.audit import AuditTrail, record_hash
from tests.conftest import PARTITIONS, KafkaEnv

pytestmark = pytest.mark.broker

EVERY = 10


class HubTrail:
    """The hub's audit trail of partition 0, one decision a second from ``start``."""

    def __init__(self, keys_dir: Path, start: datetime) -> None:
        self.now = start
        self.heads: dict[bytes, bytes] = {}  # the worker's head table
        self.trail = AuditTrail(
            self.heads,
            AuditSigner.load(keys_dir),
            checkpoint_every=EVERY,
            checkpoint_within_s=60,
            clock=lambda: self.now,
        )
        self.records: list[bytes] = []

    def decide(self, count: int) -> None:
        for n in range(count):
            self.records += self.trail.append(0, {"kind": "DECISION", "reference": f"R{n}"})
            self.now += timedelta(seconds=1)

    def idle(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.records += self.trail.tick(0)

    def parsed(self) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.records]


async def publish(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, partition=0)
    finally:
        await producer.stop()


async def recreate(bootstrap: str, topic: str) -> None:
    """Delete ``topic`` and create it again, empty: the only way to cut a Kafka log's tail."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
        for _ in range(120):
            try:
                await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
            except TopicAlreadyExistsError:
                await asyncio.sleep(0.25)  # deletion still under way
            else:
                return
        raise AssertionError(f"{topic} could not be re-created")
    finally:
        await admin.close()


def forged_after(previous: dict[str, Any], outcome: str = "RELEASE") -> dict[str, Any]:
    record = {
        "kind": "DECISION",
        "reference": "26FR000690I0000099",
        "outcome": outcome,
        "partition": previous["partition"],
        "seq": previous["seq"] + 1,
        "prev": previous["hash"],
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    record["hash"] = record_hash(record)
    return record


def encoded(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


@pytest.fixture
def hub_keys(kafka_env: KafkaEnv, tmp_path: Path) -> Path:
    """The hub's keys, its audit key made a day ago (the trails below start in the past)."""
    folder = tmp_path / "hub-keys"
    shutil.copytree(kafka_env.keys_dir, folder)
    jwks = json.loads((folder / PUBLIC_JWKS).read_text())
    for entry in jwks["keys"]:
        if entry.get("purpose") == "audit":
            entry["not_before"] = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    (folder / PUBLIC_JWKS).write_text(json.dumps(jwks))
    return folder


@pytest.fixture
def auditor_env(kafka_env: KafkaEnv, hub_keys: Path, tmp_path: Path) -> dict[str, str]:
    """The auditor's environment: the public JWKS only, and no hub setting but the bound."""
    folder = tmp_path / "auditor-keys"
    folder.mkdir()
    shutil.copy(hub_keys / PUBLIC_JWKS, folder / PUBLIC_JWKS)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GUN_HUB_")}
    return {
        **clean,
        **kafka_env.env(),
        "GUN_HUB_SECURITY__KEYS_DIR": str(folder),
        "GUN_HUB_HUB__AUDIT_CHECKPOINT_EVERY": str(EVERY),
    }


def audit_verify(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gun_hub", "audit", "verify", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def broken(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "AUDIT TRAIL BROKEN" in result.stdout
    return result.stdout


async def test_attack_a_the_tail_cut_past_a_signed_checkpoint(
    kafka_env: KafkaEnv, hub_keys: Path, auditor_env: dict[str, str], tmp_path: Path
) -> None:
    topic = kafka_env.topics.audit
    hub = HubTrail(hub_keys, datetime.now(UTC) - timedelta(hours=1))
    hub.decide(25)
    hub.idle(60)  # the hub signs what waited
    await publish(kafka_env.bootstrap, topic, hub.records)
    witness = tmp_path / "witness.json"
    intact = audit_verify(auditor_env, "--witness", str(witness))
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "audit trail intact" in intact.stdout

    # The attacker re-creates the topic with the trail up to seq 15: checkpoint 22 and the
    # one after it are gone.
    await recreate(kafka_env.bootstrap, topic)
    await publish(kafka_env.bootstrap, topic, [encoded(r) for r in hub.parsed()[:15]])
    output = broken(audit_verify(auditor_env))
    assert "seq 12" in output
    assert "unsigned" in output

    # Cut exactly at a checkpoint, nothing unsigned is left; the auditor's witness knows.
    await recreate(kafka_env.bootstrap, topic)
    await publish(kafka_env.bootstrap, topic, [encoded(r) for r in hub.parsed()[:11]])
    output = broken(audit_verify(auditor_env, "--witness", str(witness)))
    assert f"seq {hub.parsed()[-1]['seq']}" in output
    assert "cut" in output


async def test_attack_b_forged_records_appended(
    kafka_env: KafkaEnv, hub_keys: Path, auditor_env: dict[str, str]
) -> None:
    topic = kafka_env.topics.audit
    hub = HubTrail(hub_keys, datetime.now(UTC) - timedelta(minutes=1))
    hub.decide(12)
    await publish(kafka_env.bootstrap, topic, hub.records)
    assert audit_verify(auditor_env).returncode == 0

    previous = hub.parsed()[-1]
    forged = []
    for _ in range(EVERY):
        previous = forged_after(previous)
        forged.append(encoded(previous))
    await publish(kafka_env.bootstrap, topic, forged)
    output = broken(audit_verify(auditor_env))
    assert f"at most {EVERY}" in output
    assert "checkpoint" in output


async def test_attack_c_a_forged_branch_hides_real_records(
    kafka_env: KafkaEnv, hub_keys: Path, auditor_env: dict[str, str]
) -> None:
    topic = kafka_env.topics.audit
    hub = HubTrail(hub_keys, datetime.now(UTC) - timedelta(seconds=30))
    hub.decide(15)  # seq 12..16 not signed yet: the last one a REFUSE
    await publish(kafka_env.bootstrap, topic, hub.records)
    previous = hub.parsed()[-2]  # the branch replaces the hub's last record, and goes on
    forged = []
    for _ in range(3):
        previous = forged_after(previous)
        forged.append(encoded(previous))
    await publish(kafka_env.bootstrap, topic, forged)
    output = broken(audit_verify(auditor_env))
    assert "seq 16" in output
    assert "forks" in output


async def test_attack_d_forged_records_appended_then_the_partition_changes_hands(
    kafka_env: KafkaEnv, hub_keys: Path, auditor_env: dict[str, str]
) -> None:
    """Records appended at the head, then a worker takes the partition over (a rebalance,
    a restart) before the hub signed them: it reads the tail from the topic as the hub
    does, goes on from the hub's last link, and its checkpoint signs its own branch. The
    attacker's records stay off the chain (open since stop 32, closed in stop 34)."""
    topic = kafka_env.topics.audit
    hub = HubTrail(hub_keys, datetime.now(UTC) - timedelta(seconds=30))
    hub.decide(5)
    await publish(kafka_env.bootstrap, topic, hub.records)
    previous = genuine = hub.parsed()[-1]
    forged = []
    for _ in range(3):
        previous = forged_after(previous)
        forged.append(encoded(previous))
    await publish(kafka_env.bootstrap, topic, forged)

    successor = next_owner(hub, hub_keys)
    tails = await last_records(ClientConfig(kafka_env.bootstrap), topic, [0], TAIL_RECORDS)
    successor.resync(0, tails[0])
    links = successor.append(0, {"kind": "DECISION", "reference": "26FR000690I0000006"})
    await publish(kafka_env.bootstrap, topic, links)

    chained = [json.loads(link) for link in links]
    assert [r["kind"] for r in chained] == ["FOREIGN_RECORDS", "DECISION", "CHECKPOINT"]
    assert (chained[0]["seq"], chained[0]["prev"]) == (genuine["seq"] + 1, genuine["hash"])
    verified = audit_verify(auditor_env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "3 intact record(s) off the signed chain" in verified.stdout
    # The auditor learns of them from the hub's signed entry, not only as orphans.
    first, last = genuine["seq"] + 1, genuine["seq"] + 3
    assert f"partition 0: 3 record(s) from seq {first} to {last}" in verified.stdout


def next_owner(hub: HubTrail, hub_keys: Path) -> AuditTrail:
    """The worker that takes the partition over, with the hub's head table and keys."""
    return AuditTrail(
        hub.heads,
        AuditSigner.load(hub_keys),
        checkpoint_every=EVERY,
        checkpoint_within_s=60,
        checkpoint_on_start=True,
    )


async def publish_many(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """``values`` on partition 0, in order, sent together (one acknowledgement wait)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        sent = [await producer.send(topic, value, partition=0) for value in values]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def test_attack_e_copies_of_an_old_link_push_the_head_out_of_the_tail(
    kafka_env: KafkaEnv, hub_keys: Path, auditor_env: dict[str, str]
) -> None:
    """Exact copies of a genuine link from the past (MAC and all), as many as a resync
    reads, appended after the real head: the next owner read only them, went on from that
    old link and forked the chain; once its branch passed the real head, the auditor
    called the genuine links above the copied one orphans (found by review). Now the
    worker reads further back (security/audit.py ``look_back_from``) and finds the head."""
    topic = kafka_env.topics.audit
    hub = HubTrail(hub_keys, datetime.now(UTC) - timedelta(seconds=30))
    hub.decide(20)
    await publish(kafka_env.bootstrap, topic, hub.records)
    real_head = hub.parsed()[-1]
    await publish_many(kafka_env.bootstrap, topic, [hub.records[2]] * TAIL_RECORDS)

    successor = next_owner(hub, hub_keys)
    connect = ClientConfig(kafka_env.bootstrap)

    async def tails(partitions: list[int]) -> dict[int, CommittedTail]:
        return await committed_tails(connect, topic, partitions, TAIL_RECORDS)

    async def earlier(partition: int, since: datetime, until: int) -> RecordsRead:
        return await committed_records_since(
            connect, topic, partition, since, until, LOOK_BACK_RECORDS
        )

    await resync_audit_heads(tails, successor, [0], read_earlier=earlier)
    links = successor.append(0, {"kind": "DECISION", "reference": "26FR000690I0000021"})
    await publish(kafka_env.bootstrap, topic, links)

    chained = [json.loads(link) for link in links]
    assert (chained[0]["seq"], chained[0]["prev"]) == (real_head["seq"] + 1, real_head["hash"])
    verified = audit_verify(auditor_env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "off the signed chain" not in verified.stdout
