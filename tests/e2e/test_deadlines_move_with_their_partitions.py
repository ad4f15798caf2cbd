"""A worker that leaves hands its waiting cases over, deadlines included.

Two hub workers, nobody answering. Cases open on both workers' partitions; the first
stops (cleanly: its declarations are committed, so nothing is read again and the cases
reach the second worker through the open-cases changelog only). Every case must still be
decided when its deadline passes, by the survivor: its deadline timer keeps the due times
it wrote itself in memory, and must read the table again once the rebalance has brought
the other partitions' entries (pipeline/deadlines.py, ``DeadlineIndex``).
"""

from __future__ import annotations

import signal

import pytest

from gun_contract.model.verdicts import Outcome
from tests.builders import declaration_xml
from tests.e2e.conftest import Pipeline
from tests.e2e.test_several_hub_workers import start_second_worker

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

COUNT = 12  # over four partitions: both workers hold some (1 in 2**12 that one holds none)
# The fixture's deadline (20 s) leaves the first worker time to stop before any is due.


async def test_the_cases_of_a_worker_that_left_are_decided_at_their_deadline(
    silent_hub: Pipeline,
) -> None:
    pipeline = silent_hub
    start_second_worker(pipeline)  # once ready
    references = [f"26FRMOVE{n:010d}" for n in range(COUNT)]
    await pipeline.submit([declaration_xml(reference=reference) for reference in references])
    await pipeline.records(pipeline.kafka.topics.requests("dgal"), expected=COUNT)

    pipeline.group.stop("hub", sig=signal.SIGTERM)

    received = await pipeline.decisions(COUNT)
    assert sorted(r.decision.reference for r in received) == references  # each once
    for r in received:
        assert r.decision.outcome is Outcome.CONTROL_DOCUMENTARY
        assert [reason.code for reason in r.decision.reasons if reason.code == "DEADLINE"]
