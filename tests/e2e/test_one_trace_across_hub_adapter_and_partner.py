"""Issue 13, item 6, on the real broker: one declaration version is followed by its trace id
through the records the hub and the adapter write, the adapter's log and the partner
simulator's log (hub, DGAL adapter and simulated TRACES as processes)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from gun_contract.model.verdicts import Outcome
from gun_contract.trace import TRACE_HEADER, trace_id_for
from gun_hub.domain.status_events import StatusEvent, StatusKind
from tests.builders import declaration_xml, document, goods_item
from tests.e2e.conftest import Pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

# Not drawn by the DGAL sampling of the shipped risk rules: a release, then a write-off.
REFERENCE = "26FRTRACE000000001"
OTHER = "26FRTRACE000000002"


def json_lines(pipeline: Pipeline, name: str) -> list[dict[str, Any]]:
    """The JSON log lines of a child process (its log is JSON: not a terminal)."""
    lines = []
    for line in (pipeline.group.log_dir / f"{name}.log").read_text(errors="replace").splitlines():
        # faust's worker writes terminal control codes (a cursor shown again) on the same
        # stream, before a line at times.
        try:
            entry = json.loads(line[line.find("{") :])
        except ValueError:
            continue  # a library printing on its own
        if isinstance(entry, dict):
            lines.append(entry)
    return lines


def traced(lines: list[dict[str, Any]], trace_id: str) -> list[str]:
    return [line["message"] for line in lines if line.get("trace_id") == trace_id]


async def written_off(pipeline: Pipeline, reference: str) -> None:
    """Wait for the write-off of ``reference`` to be confirmed (its last partner call)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pipeline.group.check_alive()
        statuses = [
            StatusEvent.model_validate_json(r.value or b"")
            for r in await pipeline.records(pipeline.kafka.topics.status)
        ]
        if any(s.reference == reference and s.kind is StatusKind.WRITTEN_OFF for s in statuses):
            return
        await asyncio.sleep(0.5)
    pytest.fail(f"{reference} was never written off")


async def test_one_trace_id_follows_a_declaration_across_records_and_logs(
    pipeline: Pipeline,
) -> None:
    salmon = (document("N853", "CHEDP.FR.2026.0001234", 1, "100", "KGM"),)
    await pipeline.submit(
        [
            declaration_xml(reference=REFERENCE, items=(goods_item(1, salmon),)),
            declaration_xml(reference=OTHER, items=(goods_item(1, salmon),)),
        ]
    )
    decided = {r.decision.reference: r for r in await pipeline.decisions(2)}
    assert decided[REFERENCE].decision.outcome is Outcome.RELEASE
    await written_off(pipeline, REFERENCE)
    trace_id = trace_id_for(REFERENCE, 1)
    assert trace_id != trace_id_for(OTHER, 1)

    # Every record about the version carries it: what the hub sent and what the adapter
    # answered, the decision the clearance system reads, status, facts and audit.
    topics = pipeline.kafka.topics
    for topic in (
        topics.requests("dgal"),
        topics.responses("dgal"),
        topics.decisions,
        topics.decision_outbox,
        topics.status,
        topics.facts,
    ):
        ours = [r for r in await pipeline.records(topic) if r.key == REFERENCE.encode()]
        assert ours, topic
        for record in ours:
            assert (TRACE_HEADER, trace_id.encode()) in list(record.headers), topic
    audit = [
        r
        for r in await pipeline.records(topics.audit)
        if json.loads(r.value or b"{}").get("reference") == REFERENCE
    ]
    assert audit
    assert all((TRACE_HEADER, trace_id.encode()) in list(r.headers) for r in audit)
    # Two operations asked of DGAL: the reservation and, after the release, the write-off.
    asked = await pipeline.records(topics.requests("dgal"))
    assert len([r for r in asked if r.key == REFERENCE.encode()]) == 2

    # The adapter's log: each request it answered, under the trace.
    adapter = traced(json_lines(pipeline, "adapter-dgal"), trace_id)
    assert any(m.startswith(f"answered RESERVE of {REFERENCE} version 1") for m in adapter)
    assert any(m.startswith(f"answered WRITE_OFF of {REFERENCE} version 1") for m in adapter)
    # The partner simulator's log: each call, under the trace the adapter sent it.
    partner = traced(json_lines(pipeline, "partner-sim-dgal"), trace_id)
    assert any(m.startswith(f"PUT reservation of declaration {REFERENCE}") for m in partner)
    assert any(m.startswith(f"POST write-off of declaration {REFERENCE}") for m in partner)
    assert all(REFERENCE in m for m in adapter + partner)  # nothing of the other one
    # The hub's log: its decision, under the same trace.
    hub = traced(json_lines(pipeline, "hub"), trace_id)
    assert any(m.startswith(f"decided {REFERENCE} version 1: RELEASE") for m in hub)
