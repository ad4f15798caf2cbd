"""A takeover notice the hub dead-lettered is redriven through ``gun-hub dlq`` and read
by the hub's deadlines agent as the original, on the real broker (carried defect
"takeover notices dead-lettered by a bug cannot be redriven").

The notice here is one the hub cannot read (a JSON object naming no version), as a notice
meets a handling bug: dead-lettered ``UNHANDLED_ERROR`` by ``hub.takeover``, listed as
redrivable. Redriven before its cause is fixed (here, for ever), it is read as the
original record read again (a ``REDRIVE`` audit record naming the original's position)
and dead-lettered again about that same original, as the intake's are: the hub's
deadlines agent honours a redrive (tests/unit/
test_a_takeover_notice_dead_lettered_by_a_bug_is_redriven_once_fixed.py shows a notice
redriven to its effect, once).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from gun_hub.security.web_auth import LocalAccess
from gun_tools.processes import free_port
from tests.conftest import KafkaEnv
from tests.e2e.conftest import Pipeline, officer_command, start_pipeline
from tests.e2e.test_dead_letters_can_be_repaired import audit_records, until

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

REFERENCE = "26FRTKOE2E00000001"
UNHANDLED = "UNHANDLED_ERROR"


@dataclass
class Desk:
    pipeline: Pipeline
    access: LocalAccess
    officer_url: str

    def dlq(self, *args: str) -> subprocess.CompletedProcess[str]:
        return officer_command(self.pipeline, self.access, self.officer_url, "dlq", *args)

    def listed(self) -> list[dict[str, Any]]:
        done = self.dlq("list", "--kind", UNHANDLED, "--json")
        assert done.returncode == 0, done.stderr
        rows: list[dict[str, Any]] = json.loads(done.stdout)["dead_letters"]
        return rows


@pytest.fixture
def desk(kafka_env: KafkaEnv, samples: Path, tmp_path: Path) -> Iterator[Desk]:
    access = LocalAccess.create(tmp_path / "access")
    trader_port, officer_port = free_port(), free_port()
    hub_env = {
        **access.env(trader_port, officer_port),
        "GUN_HUB_WEB__DEAD_LETTER_OPERATORS": access.officer,
    }
    for pipeline in start_pipeline(kafka_env, tmp_path, samples, partners=(), hub_env=hub_env):
        yield Desk(pipeline, access, f"http://127.0.0.1:{officer_port}")


async def test_a_dead_lettered_notice_is_redriven_and_read_as_the_original(desk: Desk) -> None:
    pipeline = desk.pipeline
    topics = pipeline.kafka.topics
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.kafka.bootstrap)
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            topics.deadlines, b'{"superseded_by": 0}', key=REFERENCE.encode(), partition=2
        )
    finally:
        await producer.stop()
    origin = f"{topics.deadlines}/2/{sent.offset}"

    def about_the_notice(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rows if r["source"] == origin]

    [row] = await until(
        "the notice is dead-lettered",
        lambda: asyncio.to_thread(lambda: about_the_notice(desk.listed())),
        pipeline,
    )
    assert row["component"] == "hub.takeover"
    assert (row["redrivable"], row["not_redrivable"]) == (True, None)

    redriven = desk.dlq("redrive", row["id"])
    assert redriven.returncode == 0, redriven.stderr

    async def dead_lettered_again() -> list[dict[str, Any]]:
        rows = about_the_notice(await asyncio.to_thread(desk.listed))
        return [r for r in rows if r["id"] != row["id"]]

    [again] = await until("the redrive is dead-lettered again", dead_lettered_again, pipeline)
    assert again["component"] == "hub.takeover"  # about the original, not the redrive

    async def redrive_read() -> list[dict[str, Any]]:
        records = await audit_records(pipeline)
        return [r for r in records if r.get("kind") == "REDRIVE" and r["origin"] == origin]

    [read] = await until("the hub reads the redrive as the original", redrive_read, pipeline)
    assert read["redrive"] != origin
    assert read["dead_letter"] == f"{topics.dlq}/{row['id'].replace(':', '/')}"
