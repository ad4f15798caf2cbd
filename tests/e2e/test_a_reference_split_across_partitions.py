"""One reference's versions on two partitions of ``gun.declarations`` (review stop 38, D1).

The contract lets the clearance system's producers choose partitions (section 2: Java's
murmur2, librdkafka's CRC32, or a partition named), so two producers of one clearance
system may split a reference. Each partition then keeps a case of its own and decides it;
the decision publisher is the one gate of the reference (ADR 0005's addendum of stop 38):
exactly one decision per (reference, version), and a lower version arriving after a
higher one is ignored and recorded (section 4): by the intake where the partition was
told of the higher version (pipeline/takeover.py), by the publisher's lane otherwise
(tests/integration/test_the_publisher_publishes_no_version_below_one_published.py). Here
the real hub on the real broker, the partitions named as a clearance system may name
them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.status_events import StatusEvent, StatusKind
from tests.builders import declaration_xml, document, goods_item
from tests.conftest import KafkaEnv
from tests.e2e.conftest import Pipeline, start_pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

RESENT = "26FRXPART00000011"  # version 1 sent again through another partition
STALE = "26FRXPART00000012"  # version 2 on one partition, then version 1 on another


def _exempt(reference: str, version: int) -> bytes:
    """A declaration the hub decides at once (an exempt document: nobody to ask)."""
    return declaration_xml(
        reference=reference,
        version=version,
        items=(goods_item(1, (document("Y900", "EX-1", None, None),)),),
    )


async def _statuses_of(
    hub: Pipeline, wanted: set[tuple[str, int, StatusKind, int | None]]
) -> list[tuple[StatusEvent, int]]:
    """Every status event with its partition, once each of ``wanted`` (reference,
    version, kind, partition or None: any) is among them."""
    async with asyncio.timeout(90):
        while True:
            found = [
                (StatusEvent.model_validate_json(r.value or b""), r.partition)
                for r in await hub.records(hub.kafka.topics.status)
            ]
            have = {(e.reference, e.version, e.kind, p) for e, p in found}
            have |= {(e.reference, e.version, e.kind, None) for e, _ in found}
            if wanted <= have:
                return found


async def test_versions_of_one_reference_on_two_partitions_get_one_decision_each_in_order(
    hub_only: Pipeline,
) -> None:
    topics = hub_only.kafka.topics
    producer = AIOKafkaProducer(bootstrap_servers=hub_only.kafka.bootstrap)
    await producer.start()
    try:

        async def send(reference: str, version: int, partition: int) -> None:
            # Sealed anew each time (a fresh jti): an application-level resend, not a replay.
            sealed = hub_only.seal(_exempt(reference, version))
            await producer.send_and_wait(
                topics.declarations, sealed, key=reference.encode(), partition=partition
            )

        await send(RESENT, 1, 0)
        await send(STALE, 2, 1)
        await hub_only.decisions(2, settle_s=0.5)  # both decided before the others arrive
        await send(RESENT, 1, 2)
        await send(STALE, 1, 3)
    finally:
        await producer.stop()

    # RESENT's partitions each decided version 1 (the hub cannot see across partitions);
    # STALE's version 1 arrived where version 2's notice had been read (takeover.py): it
    # is ignored and recorded there, never decided (contract section 4).
    statuses = await _statuses_of(
        hub_only,
        {
            (RESENT, 1, StatusKind.DECIDED, 2),
            (STALE, 1, StatusKind.IGNORED_STALE_VERSION, None),
        },
    )
    assert (STALE, 1) not in {
        (e.reference, e.version) for e, _ in statuses if e.kind is StatusKind.DECIDED
    }
    # ...and the clearance system received one decision per version, none below a higher
    # one: RESENT v1 once (the publisher's lane withheld the copy), STALE v2 alone.
    received = await hub_only.decisions(2, settle_s=3.0)
    assert sorted((d.decision.reference, d.decision.version) for d in received) == [
        (RESENT, 1),
        (STALE, 2),
    ]
    metrics = hub_only.metrics()
    assert 'gun_hub_decisions_not_published_total{reason="duplicate"} 1.0' in metrics
    # Nothing below a published version reached the lane: the intake ignored it first.
    assert 'gun_hub_decisions_not_published_total{reason="superseded"} 1.0' not in metrics


RELEASED_ELSEWHERE = "26FRXPART00000013"  # controlled on one partition, released on another
STILL_CONTROLLED = "26FRXPART00000014"  # controlled, no result: its report is the witness
REPORT_AFTER_S = 20  # long enough for the release to be read before the first report


@pytest.fixture
def controlling_hub(kafka_env: KafkaEnv, samples: Path, tmp_path: Path) -> Iterator[Pipeline]:
    """The hub alone (nobody answers: every lodged declaration ends in a documentary
    control at its 2-second deadline), reporting a control without result after 20 s."""
    yield from start_pipeline(
        kafka_env,
        tmp_path,
        samples,
        partners=(),
        hub_env={
            "GUN_HUB_HUB__REQUEST_DEADLINE_S": "2",
            "GUN_HUB_HUB__DEADLINE_SWEEP_S": "0.5",
            "GUN_HUB_HUB__CONTROL_REPORT_AFTER_S": str(REPORT_AFTER_S),
        },
    )


def _quoting_a_certificate(reference: str, version: int, stage: Stage = Stage.LODGED) -> bytes:
    return declaration_xml(reference=reference, version=version, stage=stage)


async def test_a_control_released_on_another_partition_is_not_reported_overdue(
    controlling_hub: Pipeline,
) -> None:
    """Outside audit of stop 50, F1: version 1 decided CONTROL_DOCUMENTARY on partition 0,
    its RELEASED_AFTER_CONTROL read on partition 1. Partition 0's case kept its
    reservations for a control that had ended, was reported CONTROL_RESULT_OVERDUE (to
    operations, falsely), and never retired. Now version 2 tells the other partitions,
    and partition 0's case is taken over by it. A control of the same partition with no
    result, decided after the first, is reported: by then the first would have been."""
    hub = controlling_hub
    topics = hub.kafka.topics
    producer = AIOKafkaProducer(bootstrap_servers=hub.kafka.bootstrap)
    await producer.start()
    try:

        async def send(xml: bytes, reference: str, partition: int) -> None:
            await producer.send_and_wait(
                topics.declarations, hub.seal(xml), key=reference.encode(), partition=partition
            )

        await send(_quoting_a_certificate(RELEASED_ELSEWHERE, 1), RELEASED_ELSEWHERE, 0)
        [controlled] = await hub.decisions(1, settle_s=0.0)
        assert controlled.decision.outcome is Outcome.CONTROL_DOCUMENTARY
        await send(_quoting_a_certificate(STILL_CONTROLLED, 1), STILL_CONTROLLED, 0)
        released = _quoting_a_certificate(RELEASED_ELSEWHERE, 2, Stage.RELEASED_AFTER_CONTROL)
        await send(released, RELEASED_ELSEWHERE, 1)
    finally:
        await producer.stop()

    # The release is decided (its write-off unanswered: released at its deadline), and
    # the control still waiting reported...
    statuses = await _statuses_of(
        hub,
        {
            (RELEASED_ELSEWHERE, 2, StatusKind.DECIDED, 1),
            (STILL_CONTROLLED, 1, StatusKind.CONTROL_RESULT_OVERDUE, None),
        },
    )
    decided = {
        (d.decision.reference, d.decision.version): d.decision.outcome
        for d in await hub.decisions(3, settle_s=0.0)
    }
    assert decided == {
        (RELEASED_ELSEWHERE, 1): Outcome.CONTROL_DOCUMENTARY,
        (STILL_CONTROLLED, 1): Outcome.CONTROL_DOCUMENTARY,
        (RELEASED_ELSEWHERE, 2): Outcome.RELEASE,
    }
    # ...and not the control the release ended: the release took it over.
    overdue = sorted(
        (e.reference, e.version) for e, _ in statuses if e.kind is StatusKind.CONTROL_RESULT_OVERDUE
    )
    assert overdue == [(STILL_CONTROLLED, 1)]
    taken_over = [e for e, _ in statuses if e.kind is StatusKind.TAKEN_OVER_BY_LATER_VERSION]
    assert [(e.reference, e.version) for e in taken_over] == [(RELEASED_ELSEWHERE, 1)]
    assert f"followed up by version 2, read at {topics.declarations}/1/" in taken_over[0].detail
    metrics = hub.metrics()
    assert "gun_hub_controls_overdue_total 1.0" in metrics
