"""The publisher lane is the one gate of a reference's versions (59c5a28): it publishes
no version at or below one it published. The intake's DECLARANT_CHANGED check sees only
the case of the partition a version lands on, so a version of trader A's reference lodged
(through the clearance channel) in trader B's name, landing on another partition than A's
case (the contract lets the clearance producers split a reference, docs/decisions.md D1;
or another worker holds A's case), is a first version there and decided. The lane, which
sees every version of the reference, also keeps the declarant of its first decision
published, and publishes none for another: a security dead letter DECLARANT_CHANGED, and
the reference's highest version does not move (review stop 38-s, S3).

Two workers are modelled by two Hubs with their own case stores; the lane by its
``PublishedMemory`` (the unit model of the review), and by ``_publish_batch`` with a
producer that takes every record.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects, OutgoingRecord
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import StateCipher
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.decision_outbox import (
    HEADER_DECLARANT,
    HEADER_VERSION,
    declarant_of,
    declarant_tag,
)
from gun_hub.runtime.published_memory import PublishedMemory
from gun_hub.runtime.publisher import DecisionPublisher, _PartitionPublisher
from tests.builders import declaration_xml
from tests.unit.test_pipeline import Hub
from tests.unit.test_publisher_memory_is_bounded import _Producer

REF = "26FR000690I0000012"
OWNER = "FR12345678901234"  # tests.builders' default declarant
OTHER = "DE999999999999999"


def _strict(routing: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing, keys_dir).sealed_only()


def _publish(memory: PublishedMemory, out: list[OutgoingRecord]) -> list[str | None]:
    """The lane's judgement of each outbox record, as ``_publish_batch`` makes it."""
    verdicts: list[str | None] = []
    for record in out:
        version = next(v for k, v in record.headers if k == HEADER_VERSION)
        declarant = declarant_of(record.headers)
        refusal = memory.refusal((record.key or b"", version), declarant)
        verdicts.append(refusal)
        if refusal is None:
            memory.add((record.key or b"", version), declarant)
    return verdicts


def _lodge(hub: Hub, version: int, partition: int, declarant: str = OWNER) -> Effects:
    return hub.intake.handle(
        hub.sealed_by_clearance(
            declaration_xml(reference=REF, version=version, declarant=declarant)
        ),
        SourcePosition("gun.declarations", partition, version, REF.encode()),
    )


def test_another_declarants_version_on_another_partition_does_not_withhold_the_real_decisions(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    worker_a, worker_b = _strict(routing_table, keys_dir), _strict(routing_table, keys_dir)
    lane = PublishedMemory(1000)

    # Trader A's version 1, on its partition (worker A), decided and published.
    first = worker_a.answer(_lodge(worker_a, 1, partition=0), "dgal", Verdict.VALID)
    assert _publish(lane, first.to(worker_a.topics.decision_outbox)) == [None]

    # Trader B's version 99 of A's reference in B's own name, correctly keyed, on another
    # partition (worker B): no case there, so no DECLARANT_CHANGED at the intake.
    forged = worker_b.answer(
        _lodge(worker_b, 99, partition=3, declarant=OTHER), "dgal", Verdict.VALID
    )
    assert worker_b.decisions(forged) == [(REF, 99, Outcome.RELEASE)]
    assert _publish(lane, forged.to(worker_b.topics.decision_outbox)) == ["declarant_changed"]
    assert lane.highest(REF.encode()) == 1  # the forged version moved nothing

    # Trader A's version 2: published, not withheld as superseded by version 99.
    second = worker_a.answer(_lodge(worker_a, 2, partition=0), "dgal", Verdict.VALID)
    assert worker_a.decisions(second) == [(REF, 2, Outcome.RELEASE)]
    assert _publish(lane, second.to(worker_a.topics.decision_outbox)) == [None], (
        "trader A's own decision withheld behind trader B's version 99"
    )


def test_whichever_declarant_is_published_first_is_the_one_the_lane_keeps(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """The limit of the gate (the review's own order): B's version decided and published
    before A's first decision makes B the reference's declarant at the lane, and A's
    decision is then withheld too, but as a security dead letter DECLARANT_CHANGED that
    operators see, never quietly as a superseded version (docs/decisions.md)."""
    worker_a, worker_b = _strict(routing_table, keys_dir), _strict(routing_table, keys_dir)
    lane = PublishedMemory(1000)
    real = _lodge(worker_a, 1, partition=0)
    forged = worker_b.answer(
        _lodge(worker_b, 99, partition=3, declarant=OTHER), "dgal", Verdict.VALID
    )
    assert _publish(lane, forged.to(worker_b.topics.decision_outbox)) == [None]

    real_decided = worker_a.answer(real, "dgal", Verdict.VALID)
    assert _publish(lane, real_decided.to(worker_a.topics.decision_outbox)) == ["declarant_changed"]


def test_the_outbox_record_names_its_declarant_by_a_hash_only(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = _strict(routing_table, keys_dir)
    decided = hub.answer(_lodge(hub, 1, partition=0), "dgal", Verdict.VALID)
    (record,) = decided.to(hub.topics.decision_outbox)
    assert declarant_of(record.headers) == declarant_tag(OWNER)
    assert len(declarant_tag(OWNER)) == 16
    assert all(OWNER.encode() not in (value or b"") for _, value in record.headers)


def test_a_decision_naming_no_declarant_is_judged_by_its_version_only() -> None:
    """A declaration refused unread names no declarant, nor do the decisions read back
    from before the header existed: the version alone decides, as before."""
    memory = PublishedMemory(10)
    memory.add((b"A", b"1"), b"owner")
    assert memory.refusal((b"A", b"2")) is None
    assert memory.refusal((b"A", b"1")) == "duplicate"
    assert memory.refusal((b"A", b"0")) == "superseded"
    memory.add((b"B", b"1"))  # published naming none: no declarant known for B
    assert memory.refusal((b"B", b"2"), b"anyone") is None
    memory.add((b"B", b"2"), b"anyone")  # the first to name one is kept
    assert memory.refusal((b"B", b"3"), b"another") == "declarant_changed"


def test_another_declarant_is_refused_whatever_its_version() -> None:
    memory = PublishedMemory(10)
    memory.add((b"A", b"2"), b"owner")
    for version in (b"1", b"2", b"3", b"99"):
        assert memory.refusal((b"A", version), b"other") == "declarant_changed"
    assert memory.refusal((b"A", b"3"), b"owner") is None
    assert memory.declarant(b"A") == b"owner"


def test_a_reference_forgotten_forgets_its_declarant() -> None:
    """Bounded as the versions are (ce505c9): forgetting only lets a decision through."""
    memory = PublishedMemory(1)
    memory.add((b"A", b"1"), b"owner")
    memory.add((b"B", b"1"), b"owner-b")
    assert memory.declarant(b"A") == b""
    assert memory.refusal((b"A", b"1"), b"other") is None


class _OutboxRecord:
    def __init__(self, version: bytes, offset: int, declarant: bytes) -> None:
        self.topic = "gun.hub.decision-outbox"
        self.partition = 0
        self.key = REF.encode()
        self.value = b"sealed"
        self.headers = [(HEADER_VERSION, version), (HEADER_DECLARANT, declarant)]
        self.offset = offset


def _not_published(reason: str) -> float:
    sample = REGISTRY.get_sample_value("gun_hub_decisions_not_published_total", {"reason": reason})
    return sample or 0.0


@pytest.mark.asyncio
async def test_the_lane_dead_letters_another_declarants_decision_in_its_transaction(
    caplog: pytest.LogCaptureFixture, keys_dir: Path
) -> None:
    publisher = DecisionPublisher(
        connect=None,  # type: ignore[arg-type]
        outbox_topic="gun.hub.decision-outbox",
        decisions_topic="gun.decisions",
        app_id="gun-hub",
        envelope=None,  # type: ignore[arg-type]
        # It vouches for its dead letters with the hub's state key (own_dead_letters.py).
        outbox_cipher=StateCipher.load(keys_dir, HUB_PARTY),
        status="gun.status",
        dead_letters="gun.dlq",
    )
    owner, other = declarant_tag(OWNER), declarant_tag(OTHER)
    memory = PublishedMemory(100)
    memory.add((REF.encode(), b"1"), owner)
    producer = _Producer()
    lane = _PartitionPublisher(0, producer, memory)
    changed = _not_published("declarant_changed")

    published = await publisher._publish_batch(
        lane,
        None,
        TopicPartition("gun.hub.decision-outbox", 0),
        [_OutboxRecord(b"99", 7, other)],
    )

    assert published
    # Nothing to gun.decisions: the dead letter, and the version's status for the view.
    assert [topic for topic, _ in producer.sent] == ["gun.dlq", "gun.status"]
    assert _not_published("declarant_changed") == changed + 1
    assert memory.highest(REF.encode()) == 1
    assert memory.refusal((REF.encode(), b"2"), owner) is None
    warnings = [r for r in caplog.records if "DECLARANT_CHANGED" in r.getMessage()]
    assert warnings
    assert warnings[0].levelname == "WARNING"
    assert not any(
        secret in r.getMessage()
        for r in caplog.records
        for secret in (OWNER, OTHER, owner.decode(), other.decode())
    )
