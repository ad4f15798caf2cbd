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
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.status_events import StatusEvent, StatusKind
from gun_tools.clearance_stand_in import ReceivedDecision
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


@contextlib.asynccontextmanager
async def _sender(hub: Pipeline) -> AsyncIterator[Callable[[bytes, str, int], Awaitable[None]]]:
    """Sends a declaration, sealed anew (another producer's resend, not a replay), on a
    partition it names, as a clearance system's producer may."""
    producer = AIOKafkaProducer(bootstrap_servers=hub.kafka.bootstrap)
    await producer.start()

    async def send(xml: bytes, reference: str, partition: int) -> None:
        await producer.send_and_wait(
            hub.kafka.topics.declarations,
            hub.seal(xml),
            key=reference.encode(),
            partition=partition,
        )

    try:
        yield send
    finally:
        await producer.stop()


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
    async with _sender(hub) as send:
        await send(_quoting_a_certificate(RELEASED_ELSEWHERE, 1), RELEASED_ELSEWHERE, 0)
        [controlled] = await hub.decisions(1, settle_s=0.0)
        assert controlled.decision.outcome is Outcome.CONTROL_DOCUMENTARY
        await send(_quoting_a_certificate(STILL_CONTROLLED, 1), STILL_CONTROLLED, 0)
        released = _quoting_a_certificate(RELEASED_ELSEWHERE, 2, Stage.RELEASED_AFTER_CONTROL)
        await send(released, RELEASED_ELSEWHERE, 1)

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


DECIDED_TWICE = "26FRXPART00000016"  # version 1 released on one partition, controlled on another
WITNESS = "26FRXPART00000017"  # controlled after it, no result: reported, the witness


async def test_a_control_the_publisher_did_not_publish_holds_nothing_and_is_not_reported(
    controlling_hub: Pipeline,
) -> None:
    """A review of stop 58: version 1 read on partition 0 and released at once, then read
    again on partition 1 (sealed anew: another producer), where its case, asking a partner
    that does not answer, sends it to a documentary control at its deadline (the copy
    quotes a certificate where the first quoted an exempt document: it stands for a copy
    whose partner answer did not come in time). The lane publishes the release and drops
    the control; its case was never told, kept its reservations for a control nobody
    ordered and was reported CONTROL_RESULT_OVERDUE. Now the lane tells it (a notice on
    the hub's deadlines topic at partition 1, naming the release published) and the view
    (a status): it writes off what it reserved, as a release does, and holds nothing."""
    hub = controlling_hub
    async with _sender(hub) as send:
        await send(_exempt(DECIDED_TWICE, 1), DECIDED_TWICE, 0)
        [released] = await hub.decisions(1, settle_s=0.0)
        assert released.decision.outcome is Outcome.RELEASE
        await send(_quoting_a_certificate(DECIDED_TWICE, 1), DECIDED_TWICE, 1)
        await send(_quoting_a_certificate(WITNESS, 1), WITNESS, 1)

    statuses = await _statuses_of(
        hub,
        {
            (DECIDED_TWICE, 1, StatusKind.DECIDED, 1),
            (DECIDED_TWICE, 1, StatusKind.NOT_PUBLISHED_DECIDED_ELSEWHERE, None),
            (DECIDED_TWICE, 1, StatusKind.FOLLOW_UP_SENT, 1),
            (WITNESS, 1, StatusKind.CONTROL_RESULT_OVERDUE, None),
        },
    )
    # The clearance system received the release alone for version 1...
    decided = {
        (d.decision.reference, d.decision.version): d.decision.outcome
        for d in await hub.decisions(2, settle_s=0.0)
    }
    assert decided == {
        (DECIDED_TWICE, 1): Outcome.RELEASE,
        (WITNESS, 1): Outcome.CONTROL_DOCUMENTARY,
    }
    # ...partition 1's case decided a control, which the view is told was not published...
    [control] = [
        e
        for e, partition in statuses
        if (e.reference, e.kind, partition) == (DECIDED_TWICE, StatusKind.DECIDED, 1)
    ]
    assert control.outcome == Outcome.CONTROL_DOCUMENTARY.value
    [told] = [e for e, _ in statuses if e.kind is StatusKind.NOT_PUBLISHED_DECIDED_ELSEWHERE]
    assert (told.reference, told.version, told.outcome) == (
        DECIDED_TWICE,
        1,
        Outcome.CONTROL_DOCUMENTARY.value,
    )
    assert told.lodging == control.lodging
    # ...which writes off the certificate it reserved, as the release published has it...
    [followed] = [
        e
        for e, partition in statuses
        if (e.reference, e.kind, partition) == (DECIDED_TWICE, StatusKind.FOLLOW_UP_SENT, 1)
    ]
    assert followed.detail.startswith("WRITE_OFF of 1 document(s) as the RELEASE published")
    # ...and the control the clearance system never ordered is not reported overdue
    # (the witness, controlled after it, was: by then it would have been).
    overdue = sorted(
        (e.reference, e.version) for e, _ in statuses if e.kind is StatusKind.CONTROL_RESULT_OVERDUE
    )
    assert overdue == [(WITNESS, 1)]
    metrics = hub.metrics()
    assert 'gun_hub_decisions_not_published_total{reason="duplicate"} 1.0' in metrics
    assert "gun_hub_controls_overdue_total 1.0" in metrics


INVALIDATED_ACROSS = "26FRXPART00000015"  # controlled, released elsewhere, invalidated there
CERTIFICATE_A = "CHEDP.FR.2026.SPLIT0A"
CERTIFICATE_B = "CHEDP.FR.2026.SPLIT0B"
HOLDER = "FR12345678901234"  # the builders' declarant


@pytest.fixture
def controlling_partner(kafka_env: KafkaEnv, samples: Path, tmp_path: Path) -> Iterator[Pipeline]:
    """Hub, DGAL adapter and simulated TRACES; every lodged salmon (commodity 0302) is
    sent to a documentary control by a risk rule, whatever TRACES answers."""
    rules = tmp_path / "salmon-controlled.toml"
    rules.write_text(
        '[[rules]]\nid = "SALMON"\ndescription = "every salmon controlled"\n'
        'commodity_prefix = ["0302"]\naction = "CONTROL_DOCUMENTARY"\n'
    )
    yield from start_pipeline(
        kafka_env,
        tmp_path,
        samples,
        partners=("dgal",),
        hub_env={"GUN_HUB_HUB__RISK_RULES": str(rules)},
    )


def _held(pipeline: Pipeline) -> dict[str, tuple[Decimal, Decimal]]:
    """(reserved, written off) the partner holds for the declaration on each certificate."""
    held = {}
    for certificate in (CERTIFICATE_A, CERTIFICATE_B):
        reserved = written = Decimal(0)
        for balance in pipeline.partner_admin(f"documents/{certificate}")["balances"]:
            for position in balance.get("positions", ()):
                if position["declaration"] == INVALIDATED_ACROSS:
                    reserved += Decimal(position["reserved"])
                    written += Decimal(position["written_off"])
        held[certificate] = (reserved, written)
    return held


async def _partner_holds(pipeline: Pipeline, expected: dict[str, tuple[Decimal, Decimal]]) -> None:
    try:
        async with asyncio.timeout(60):
            while _held(pipeline) != expected:  # noqa: ASYNC110 - HTTP polling
                await asyncio.sleep(0.5)
    except TimeoutError:
        raise AssertionError(f"the partner holds {_held(pipeline)}, not {expected}") from None


def _quoting(version: int, stage: Stage, *certificates: str) -> bytes:
    return declaration_xml(
        reference=INVALIDATED_ACROSS,
        version=version,
        stage=stage,
        items=tuple(
            goods_item(number, (document("N853", certificate, 1, "100"),))
            for number, certificate in enumerate(certificates, start=1)
        ),
    )


async def test_an_invalidation_of_a_reference_split_across_partitions_gives_everything_back(
    controlling_partner: Pipeline,
) -> None:
    """Stop 51's open item, on the real partner's ledger: version 1 quoting certificates A
    and B controlled on partition 0; its release after control quoting only A on
    partition 1 (A written off from there, B from partition 0, told); then version 3
    INVALIDATED on partition 1. It gave back A only: B's 100 kg stayed written off at
    TRACES, lost to the certificate's holder. Now each partition gives back what it
    wrote off, and the ledger is as before the declaration."""
    hub = controlling_partner
    documents = [
        {
            "reference": certificate,
            "type": "N853",
            "status": "VALIDATED",
            "holder": HOLDER,
            "country_of_destination": "FR",
            "lines": [{"line": 1, "commodity_code": "0302", "quantity": "1000", "unit": "KGM"}],
        }
        for certificate in (CERTIFICATE_A, CERTIFICATE_B)
    ]
    hub.partner_admin("documents", {"documents": documents})
    nothing, hundred = Decimal(0), Decimal(100)

    async def send(xml: bytes, partition: int) -> None:
        topics = hub.kafka.topics
        producer = AIOKafkaProducer(bootstrap_servers=hub.kafka.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(
                topics.declarations,
                hub.seal(xml),
                key=INVALIDATED_ACROSS.encode(),
                partition=partition,
            )
        finally:
            await producer.stop()

    def outcomes(received: list[ReceivedDecision]) -> dict[int, Outcome]:
        return {r.decision.version: r.decision.outcome for r in received}

    await send(_quoting(1, Stage.LODGED, CERTIFICATE_A, CERTIFICATE_B), 0)
    assert outcomes(await hub.decisions(1, settle_s=0.0)) == {1: Outcome.CONTROL_DOCUMENTARY}
    await _partner_holds(
        hub, {CERTIFICATE_A: (hundred, nothing), CERTIFICATE_B: (hundred, nothing)}
    )

    await send(_quoting(2, Stage.RELEASED_AFTER_CONTROL, CERTIFICATE_A), 1)
    assert outcomes(await hub.decisions(2, settle_s=0.0))[2] is Outcome.RELEASE
    await _partner_holds(
        hub, {CERTIFICATE_A: (nothing, hundred), CERTIFICATE_B: (nothing, hundred)}
    )

    await send(_quoting(3, Stage.INVALIDATED, CERTIFICATE_A), 1)
    assert outcomes(await hub.decisions(3, settle_s=0.0))[3] is Outcome.CANCELLED
    await _partner_holds(
        hub, {CERTIFICATE_A: (nothing, nothing), CERTIFICATE_B: (nothing, nothing)}
    )
    decided = await hub.decisions(3)
    assert sorted(r.decision.version for r in decided) == [1, 2, 3]  # one each, none twice
