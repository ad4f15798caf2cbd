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
from collections import Counter

import pytest

from gun_hub.clearance import DecisionReader, ReceivedDecision
from gun_hub.model.verdicts import Outcome
from gun_hub.processes import free_port, wait_http_ok
from tests.builders import declaration_xml, document, goods_item
from tests.e2e.conftest import Pipeline
from tests.e2e.test_kill_the_hub import DOCUMENT, QUANTITY, ledger, seed_document

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
    return port


async def _collect(
    reader: DecisionReader, received: list[ReceivedDecision], pipeline: Pipeline, until: int
) -> None:
    while len({r.decision.reference for r in received}) < until:
        pipeline.group.check_alive()
        received += await reader.collect(expected=COUNT, timeout_s=0.5)


async def test_a_worker_joins_and_another_is_killed_under_load(pipeline: Pipeline) -> None:
    await seed_document(pipeline)
    references = [f"26FRWORK{n:010d}" for n in range(COUNT)]
    reader = DecisionReader(
        pipeline.kafka.bootstrap,
        pipeline.kafka.topics.decisions,
        pipeline.kafka.envelope("clearance"),
    )
    await reader.start(from_beginning=True)
    received: list[ReceivedDecision] = []
    try:
        await pipeline.submit(
            [
                declaration_xml(
                    reference=reference,
                    items=(goods_item(1, (document("N853", DOCUMENT, 1, str(QUANTITY)),)),),
                )
                for reference in references
            ]
        )
        async with asyncio.timeout(120):
            await _collect(reader, received, pipeline, COUNT // 6)
        second_port = start_second_worker(pipeline)  # joins under load
        async with asyncio.timeout(120):
            await _collect(reader, received, pipeline, COUNT // 2)
        pipeline.group.stop("hub", sig=signal.SIGKILL)  # the first dies mid-batch
        try:
            async with asyncio.timeout(240):
                await _collect(reader, received, pipeline, COUNT)
        except TimeoutError:
            decided = len({r.decision.reference for r in received})
            raise AssertionError(f"only {decided} of {COUNT} declarations decided") from None
        received += await reader.collect(expected=COUNT, timeout_s=5)  # any duplicate
        # The survivor holds every partition and says it is ready.
        wait_http_ok(f"http://127.0.0.1:{second_port}/readyz", 60, pipeline.group)
    finally:
        await reader.stop()

    counts = Counter(r.decision.reference for r in received)
    assert set(counts) == set(references), "every declaration decided"
    duplicates = {ref: n for ref, n in counts.items() if n > 1}
    assert duplicates == {}, f"{len(duplicates)} declarations decided more than once"
    outcomes = Counter(r.decision.outcome for r in received)
    assert set(outcomes) <= {Outcome.RELEASE, Outcome.CONTROL_DOCUMENTARY}
    expected = (
        QUANTITY * outcomes[Outcome.CONTROL_DOCUMENTARY],
        QUANTITY * outcomes[Outcome.RELEASE],
    )
    async with asyncio.timeout(120):
        while await ledger(pipeline) != expected:  # noqa: ASYNC110 - polling a partner over HTTP
            await asyncio.sleep(0.5)
