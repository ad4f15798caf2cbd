"""Several hub workers share the work (issue 12): one joins and another is killed under
load, and still every declaration gets exactly one decision and the partner's ledger is
exact.

Two ``gun-hub hub`` processes in one consumer group take the partitions of every hub
topic; each runs a decision publisher, and they share the outbox's partitions too
(publisher.py). The first worker is killed (SIGKILL) while declarations are in flight:
the second takes its partitions over, from the tables' changelogs and the committed
offsets.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from gun_tools.clearance_stand_in import ReceivedDecision
from gun_tools.processes import free_port, wait_http_ok
from tests.e2e.conftest import Pipeline
from tests.e2e.load_on_one_document import (
    assert_each_decided_once_and_ledger_exact,
    collect_all_then_duplicates,
    collect_until,
    submit_load,
)

pytestmark = [pytest.mark.broker, pytest.mark.e2e, pytest.mark.chaos]

COUNT = 600


def start_second_worker(pipeline: Pipeline) -> int:
    """A second hub worker: the same group, its own state folder and web port."""
    port = free_port()
    env = {
        **pipeline.hub_env,
        "GUN_HUB_HUB__DATA_DIR": pipeline.hub_env["GUN_HUB_HUB__DATA_DIR"] + "-2",
        "GUN_HUB_HUB__WEB_PORT": str(port),
        # One operations view is enough (it is fed from the topics, not the worker).
        "GUN_HUB_OPS__VIEW_ENABLED": "false",
        "GUN_HUB_OPS__LAG_MONITOR_ENABLED": "false",
    }
    pipeline.group.start("hub-2", ["hub"], env)
    wait_http_ok(f"http://127.0.0.1:{port}/livez", 60, pipeline.group)
    # Joined: partitions assigned, tables recovered, producers up (web.py). Without it the
    # test passed as a plain failover had the join never completed (tests' review, stop 48).
    wait_http_ok(f"http://127.0.0.1:{port}/readyz", 60, pipeline.group)
    return port


async def test_a_worker_joins_and_another_is_killed_under_load(pipeline: Pipeline) -> None:
    references = [f"26FRWORK{n:010d}" for n in range(COUNT)]
    reader = await submit_load(pipeline, references)
    received: list[ReceivedDecision] = []
    try:
        async with asyncio.timeout(120):
            await collect_until(reader, received, pipeline, COUNT // 6)
        second_port = start_second_worker(pipeline)  # joins under load
        async with asyncio.timeout(120):
            await collect_until(reader, received, pipeline, COUNT // 2)
        pipeline.group.stop("hub", sig=signal.SIGKILL)  # the first dies mid-batch
        await collect_all_then_duplicates(reader, received, pipeline, COUNT)
        # The survivor holds every partition and says it is ready.
        wait_http_ok(f"http://127.0.0.1:{second_port}/readyz", 60, pipeline.group)
    finally:
        await reader.stop()
    await assert_each_decided_once_and_ledger_exact(pipeline, received, references)
