"""Contract section 4, on the real broker: exactly one decision per (Reference, Version).
Versions sent back to back each get theirs, in version order on the reference's
partition of gun.decisions; one a higher version superseded before it was decided is
REFUSE, reason SUPERSEDED, with no document results (review stop 40, W4: v1..v25 sent
back to back got decisions for v1 and v25 only). The partner's ledger is what it was
before: the superseded versions' reservations are restated by the newer version, never
deleted for them.

The DGAL partner answers after a second, so that every version is read before the first
is answered: the race the reviewer ran, made certain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.status_events import StatusKind
from gun_tools.clearance_stand_in import ReceivedDecision
from tests.builders import declaration_xml, document, goods_item
from tests.conftest import KafkaEnv
from tests.e2e.conftest import Pipeline, start_pipeline
from tests.e2e.load_on_one_document import DOCUMENT, seed_document

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

AMENDED = "26FRW4A00000000001"
CANCELLED = "26FRW4C00000000001"
ANSWER_AFTER_MS = 1000


@pytest.fixture
def slow_partner(kafka_env: KafkaEnv, samples: Path, tmp_path: Path) -> Iterator[Pipeline]:
    """Hub, DGAL adapter and simulated TRACES answering after a second; no risk
    targeting (its sampling draws by reference: every outcome follows from the answers)."""
    rules = tmp_path / "no-targeting.toml"
    rules.write_text("# outcomes from the partners' answers only\n")
    yield from start_pipeline(
        kafka_env,
        tmp_path,
        samples,
        partners=("dgal",),
        hub_env={"GUN_HUB_HUB__RISK_RULES": str(rules)},
    )


def version(reference: str, number: int, quantity: int, stage: Stage = Stage.LODGED) -> bytes:
    return declaration_xml(
        reference=reference,
        version=number,
        stage=stage,
        items=(goods_item(1, (document("N853", DOCUMENT, 1, str(quantity)),)),),
    )


def held_by(pipeline: Pipeline, declaration: str) -> tuple[Decimal, Decimal]:
    """(reserved, written off) the partner holds for ``declaration`` on the document."""
    view = pipeline.partner_admin(f"documents/{DOCUMENT}")
    assert isinstance(view, dict)
    reserved = written = Decimal(0)
    for balance in view["balances"]:
        for position in balance.get("positions", ()):
            if position["declaration"] == declaration:
                reserved += Decimal(position["reserved"])
                written += Decimal(position["written_off"])
    return reserved, written


async def settled(pipeline: Pipeline, declaration: str, expected: tuple[Decimal, Decimal]) -> None:
    """Waits for the partner's follow-ups to land; fails with what it holds."""
    try:
        async with asyncio.timeout(60):
            while held_by(pipeline, declaration) != expected:  # noqa: ASYNC110 - HTTP polling
                await asyncio.sleep(0.5)
    except TimeoutError:
        held = held_by(pipeline, declaration)
        raise AssertionError(f"{declaration} holds {held}, expected {expected}") from None


async def operations_sent(pipeline: Pipeline, reference: str) -> list[tuple[int, Operation]]:
    topic = pipeline.kafka.topics.requests("dgal")
    opened = pipeline.kafka.envelope("dgal")
    return [
        (request.version, request.operation)
        for record in await pipeline.records(topic)
        if record.key == reference.encode()
        for request in [
            AuthorityRequest.model_validate_json(
                opened.open(record.value or b"", topic=topic).payload
            )
        ]
    ]


def of(received: list[ReceivedDecision], reference: str) -> list[ReceivedDecision]:
    """``reference``'s decisions in the order of the log."""
    return sorted(
        (r for r in received if r.decision.reference == reference),
        key=lambda r: (r.partition, r.offset),
    )


async def test_each_version_sent_back_to_back_gets_its_own_decision_in_order(
    slow_partner: Pipeline,
) -> None:
    pipeline = slow_partner
    await seed_document(pipeline)
    pipeline.partner_admin("faults", {"latency_ms": ANSWER_AFTER_MS})
    await pipeline.submit(
        [
            version(AMENDED, 1, 10),
            version(AMENDED, 2, 20),
            version(AMENDED, 3, 30),
            version(CANCELLED, 1, 5),
            version(CANCELLED, 2, 5, Stage.CANCELLED),
        ]
    )
    received = await pipeline.decisions(5)
    assert len(received) == 5, [(r.decision.reference, r.decision.version) for r in received]

    amended = of(received, AMENDED)
    assert len({r.partition for r in amended}) == 1
    assert [(r.decision.version, r.decision.outcome) for r in amended] == [
        (1, Outcome.REFUSE),
        (2, Outcome.REFUSE),
        (3, Outcome.RELEASE),
    ]
    for superseded, by in zip(amended[:2], (2, 3), strict=True):
        assert [(x.code, x.text) for x in superseded.decision.reasons] == [
            (
                "SUPERSEDED",
                f"superseded by version {by} before it was decided: "
                f"version {by}'s decision governs",
            )
        ]
        assert superseded.decision.documents == ()

    cancelled = of(received, CANCELLED)
    assert [(r.decision.version, r.decision.outcome) for r in cancelled] == [
        (1, Outcome.REFUSE),
        (2, Outcome.CANCELLED),
    ]
    assert [x.code for x in cancelled[0].decision.reasons] == ["SUPERSEDED"]

    # The ledger as before the fix: each RESERVE restates the one before (a PUT), the
    # last version is written off or deleted; nothing is deleted for a superseded one.
    await settled(pipeline, AMENDED, (Decimal(0), Decimal(30)))
    await settled(pipeline, CANCELLED, (Decimal(0), Decimal(0)))
    assert await operations_sent(pipeline, AMENDED) == [
        (1, Operation.RESERVE),
        (2, Operation.RESERVE),
        (3, Operation.RESERVE),
        (3, Operation.WRITE_OFF),
    ]
    assert await operations_sent(pipeline, CANCELLED) == [
        (1, Operation.RESERVE),
        (2, Operation.DELETE),
    ]

    # What the trader lookup reads: each superseded version said so, then refused.
    statuses = await pipeline.statuses()
    for reference, number in ((AMENDED, 1), (AMENDED, 2), (CANCELLED, 1)):
        told = [
            (s.kind, s.outcome, s.detail)
            for s in statuses
            if (s.reference, s.version) == (reference, number)
            and s.kind in (StatusKind.SUPERSEDED, StatusKind.DECIDED)
        ]
        assert told == [
            (StatusKind.SUPERSEDED, None, f"superseded by version {number + 1} before a decision"),
            (StatusKind.DECIDED, "REFUSE", "SUPERSEDED"),
        ]
