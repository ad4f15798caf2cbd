"""End to end on the real broker: partner system, adapter and hub as real processes.

Declarations go in on the declarations topic as a clearance system would send them; the
decisions are read back from the decisions topic and checked against the contract.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from gun_hub.clearance import DecisionReader, ReceivedDecision, submit_declarations
from gun_hub.dead_letter import HEADER_ERROR_KIND, HEADER_REFERENCE, header_value
from gun_hub.demo import with_reference
from gun_hub.envelope import PlainEnvelope
from gun_hub.model.verdicts import Outcome, Verdict
from gun_hub.pipeline.context import CLEARANCE_PARTY
from gun_hub.processes import ProcessGroup, free_port, wait_http_ok
from gun_hub.status_events import StatusEvent, StatusKind
from tests.conftest import KafkaEnv

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

# Sample file -> (outcome, verdict of its document or None when it quotes none that counts)
EXPECTED = {
    "01-release-salmon.xml": (Outcome.RELEASE, Verdict.VALID),
    "02-refuse-unknown-ched.xml": (Outcome.REFUSE, Verdict.NOT_FOUND),
    "03-refuse-quantity.xml": (Outcome.REFUSE, Verdict.QUANTITY_INSUFFICIENT),
    "04-refuse-cancelled-ched.xml": (Outcome.REFUSE, Verdict.INVALID_STATUS),
    "05-advice-prelodged.xml": (Outcome.ADVICE, Verdict.VALID),
    "06-release-exempt.xml": (Outcome.RELEASE, Verdict.EXEMPT),
    "07-control-unrouted.xml": (Outcome.CONTROL_DOCUMENTARY, Verdict.UNROUTED),
    "08-refuse-negative-quantity.xml": (Outcome.REFUSE, None),
}


@pytest.fixture
def pipeline(kafka_env: KafkaEnv, samples: Path, tmp_path: Path) -> Iterator[ProcessGroup]:
    partner_port = free_port()
    with ProcessGroup(tmp_path / "logs", kafka_env.env()) as group:
        group.start(
            "partner-sim-dgal",
            [
                "partner-sim",
                "dgal",
                "--documents",
                str(samples / "partners" / "dgal-documents.json"),
                "--port",
                str(partner_port),
                "--db",
                str(tmp_path / "ledger.sqlite"),
            ],
        )
        wait_http_ok(f"http://127.0.0.1:{partner_port}/health", 30, group)
        group.start(
            "adapter-dgal",
            ["adapter", "dgal"],
            {"GUN_HUB_ADAPTER__PARTNER_URL": f"http://127.0.0.1:{partner_port}"},
        )
        group.start(
            "hub",
            ["hub"],
            {
                "GUN_HUB_HUB__DATA_DIR": str(tmp_path / "hub"),
                "GUN_HUB_HUB__WEB_PORT": str(free_port()),
            },
        )
        yield group


async def exchange(
    kafka_env: KafkaEnv, group: ProcessGroup, declarations: list[bytes]
) -> list[ReceivedDecision]:
    reader = DecisionReader(
        kafka_env.bootstrap, kafka_env.topics.decisions, PlainEnvelope(CLEARANCE_PARTY)
    )
    await reader.start(from_beginning=True)
    try:
        await submit_declarations(kafka_env.bootstrap, kafka_env.topics.declarations, declarations)
        received: list[ReceivedDecision] = []
        async with asyncio.timeout(120):
            while len(received) < len(declarations):
                group.check_alive()
                received += await reader.collect(
                    expected=len(declarations) - len(received), timeout_s=1
                )
        # Anything more within a short while would be a duplicate decision.
        received += await reader.collect(expected=1, timeout_s=2)
        return received
    finally:
        await reader.stop()


async def read_all(kafka_env: KafkaEnv, topic: str) -> list[tuple[bytes, list[tuple[str, bytes]]]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_env.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[tuple[bytes, list[tuple[str, bytes]]]] = []
    try:
        while batches := await consumer.getmany(timeout_ms=1000):
            for records in batches.values():
                found += [(r.value or b"", list(r.headers)) for r in records]
    finally:
        await consumer.stop()
    return found


async def test_sample_declarations_get_exactly_one_decision_each(
    kafka_env: KafkaEnv, pipeline: ProcessGroup, samples: Path
) -> None:
    files = sorted((samples / "declarations").glob("*.xml"))
    assert [f.name for f in files] == sorted(EXPECTED)
    by_reference = {f"26FRE2E{index:011d}": f.name for index, f in enumerate(files, start=1)}
    declarations = [
        with_reference(f.read_bytes(), reference)
        for reference, f in zip(by_reference, files, strict=True)
    ]

    received = await exchange(kafka_env, pipeline, declarations)

    decided = [r.decision for r in received]
    assert sorted(d.reference for d in decided) == sorted(by_reference), "one decision each"
    for decision in decided:
        outcome, verdict = EXPECTED[by_reference[decision.reference]]
        assert decision.outcome is outcome, by_reference[decision.reference]
        assert decision.version == 1
        if verdict is None:
            assert decision.documents == ()
        else:
            assert [d.verdict for d in decision.documents] == [verdict]
    for r in received:
        assert r.envelope.sender == "hub"

    dead = await read_all(kafka_env, kafka_env.topics.dlq)
    [(value, headers)] = dead
    assert header_value(headers, HEADER_ERROR_KIND) == "XML_SCHEMA"
    assert b'<Quantity unit="KGM">-10</Quantity>' in value
    assert header_value(headers, HEADER_REFERENCE) in by_reference

    statuses = [
        StatusEvent.model_validate_json(v)
        for v, _ in await read_all(kafka_env, kafka_env.topics.status)
    ]
    decided_events = [s for s in statuses if s.kind is StatusKind.DECIDED]
    assert sorted(s.reference for s in decided_events) == sorted(by_reference)
