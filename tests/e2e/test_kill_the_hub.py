"""SIGKILL the hub in the middle of a batch: every declaration still gets exactly one
decision, and the partner's ledger is exact."""

from __future__ import annotations

import asyncio
import signal

import pytest

from gun_tools.clearance_stand_in import ReceivedDecision
from tests.e2e.conftest import Pipeline
from tests.e2e.load_on_one_document import (
    assert_each_decided_once_and_ledger_exact,
    collect_all_then_duplicates,
    collect_until,
    submit_load,
)

# Part of ./tasks test (and of `pytest -m chaos`); the chaos suite is ./tasks chaos.
pytestmark = [pytest.mark.broker, pytest.mark.e2e, pytest.mark.chaos]

COUNT = 500


async def test_killing_the_hub_mid_batch_loses_and_duplicates_no_decision(
    pipeline: Pipeline,
) -> None:
    references = [f"26FRKILL{n:010d}" for n in range(COUNT)]
    reader = await submit_load(pipeline, references)
    received: list[ReceivedDecision] = []
    try:
        async with asyncio.timeout(120):
            await collect_until(reader, received, pipeline, COUNT // 5)
        pipeline.restart_hub(sig=signal.SIGKILL, wipe_local_state=False)
        await collect_all_then_duplicates(reader, received, pipeline, COUNT)
    finally:
        await reader.stop()
    await assert_each_decided_once_and_ledger_exact(pipeline, received, references)
