"""A version whose deadline is ticked by two owners (two workers' sweeps around a
rebalance, a takeover by a later version read on another partition) is decided once, and
never in degraded mode after a decision on its answers.

The deadlines agent decides only an undecided case of the tick's version
(pipeline/deadlines.py); a decided case's tick announces again, unchanged, a decision the
broker may not have. A later version read on another partition decides an undecided
earlier one SUPERSEDED and removes its deadline (pipeline/takeover.py), and a case the
deadline decided is taken over as a control. A version read on two partitions is decided
by each partition's case (docs/decisions.md, "One reference on several partitions"): the
publisher's lane publishes the first and drops the other as a duplicate.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects, OutgoingRecord
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.decide import SUPERSEDED
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.pipeline.decision_outbox import HEADER_DECLARANT, HEADER_VERSION
from gun_hub.runtime.published_memory import DUPLICATE, PublishedMemory
from tests.builders import declaration_xml
from tests.unit.test_a_later_version_on_another_partition_takes_over_what_the_earlier_held import (
    notices_to,
    told,
)
from tests.unit.test_deadlines_and_lifecycle import REF, TWO_AUTHORITIES
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import at


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


def tick(hub: Hub, offset: int, partition: int = 0) -> Effects:
    return hub.deadlines.handle(REF, 1, SourcePosition(hub.topics.deadlines, partition, offset))


def test_two_ticks_of_one_version_decide_it_once(hub: Hub) -> None:
    """Each worker's sweep ticked it around a rebalance: both ticks reach the owner."""
    sent = hub.intake.handle(TWO_AUTHORITIES, at(0))
    hub.answer(sent, "dgal", Verdict.VALID)
    hub.now += timedelta(seconds=31)
    assert hub.decisions(tick(hub, 0)) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    again = tick(hub, 1)
    assert hub.decisions(again) == []
    assert StatusKind.DEADLINE_PASSED not in hub.status_kinds(again)


def test_a_version_decided_on_its_answers_is_not_decided_again_at_its_deadline(
    routing_table: RoutingTable, keys_dir: Path, hub: Hub
) -> None:
    """Released on its answers, the broker not having the decision yet, the partition
    moves to another worker (the same case store, restored; nothing in flight known):
    the old owner's tick, read there past the deadline, announces the release again,
    not a documentary control."""
    sent = hub.intake.handle(TWO_AUTHORITIES, at(0))
    hub.answer(sent, "dgal", Verdict.VALID)
    hub.broker_slow = True  # the release on its way when the partition moves
    [released] = hub.decision_objects(hub.answer(sent, "cites", Verdict.VALID))
    assert released.outcome is Outcome.RELEASE

    new_owner = Hub(routing_table, keys_dir, open_cases=hub.open_cases, cases=hub.cases)
    new_owner.now = hub.now + timedelta(seconds=31)
    ticked = tick(new_owner, 0)
    assert new_owner.decision_objects(ticked) == [released]  # the same decision, again
    assert StatusKind.DEADLINE_PASSED not in new_owner.status_kinds(ticked)
    assert tick(new_owner, 1).records == []


def test_a_tick_read_after_a_later_versions_notice_decides_nothing(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """Version 2 read on partition 1 takes undecided version 1 over on partition 0
    (REFUSE, SUPERSEDED); version 1's tick, sent before and read after, decides nothing
    (its deadline had passed: a degraded decision of it would be a second one)."""
    first, other = Hub(routing_table, keys_dir), Hub(routing_table, keys_dir)
    first.intake.handle(declaration_xml(version=1), at(0, partition=0))
    first.now += timedelta(seconds=31)
    lodged = other.intake.handle(declaration_xml(version=2), at(0, partition=1))
    taken = told(first, notices_to(other, lodged, 0))
    [superseded] = first.decision_objects(taken)
    assert (superseded.version, superseded.outcome) == (1, Outcome.REFUSE)
    assert [r.code for r in superseded.reasons] == [SUPERSEDED]
    ticked = tick(first, 1)
    assert first.decisions(ticked) == []
    assert StatusKind.DEADLINE_PASSED not in first.status_kinds(ticked)


def test_a_version_decided_at_its_deadline_then_taken_over_is_not_decided_again(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    first, other = Hub(routing_table, keys_dir), Hub(routing_table, keys_dir)
    first.intake.handle(declaration_xml(version=1), at(0, partition=0))
    first.now += timedelta(seconds=31)
    assert first.decisions(tick(first, 0)) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    lodged = other.intake.handle(declaration_xml(version=2), at(0, partition=1))
    taken = told(first, notices_to(other, lodged, 0))
    assert first.decisions(taken) == []
    assert first.status_kinds(taken) == [StatusKind.TAKEN_OVER_BY_LATER_VERSION]
    assert first.decisions(tick(first, 1)) == []


def test_a_version_read_on_two_partitions_is_published_as_decided_on_its_answers(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """Partition 0 releases it on DGAL's answer; partition 1, whose answer does not come,
    decides it at its deadline. The lane, which published the release, publishes no
    documentary control of the same version after it."""
    first, other = Hub(routing_table, keys_dir), Hub(routing_table, keys_dir)
    sent = first.intake.handle(declaration_xml(version=1), at(0, partition=0))
    other.intake.handle(declaration_xml(version=1), at(0, partition=1))
    released = first.answer(sent, "dgal", Verdict.VALID)
    assert first.decisions(released) == [(REF, 1, Outcome.RELEASE)]
    other.now += timedelta(seconds=31)
    controlled = tick(other, 0, partition=1)
    assert other.decisions(controlled) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    # Both go to the one lane of the reference, which publishes the first it reads.
    [release] = released.to(first.topics.decision_outbox)
    [control] = controlled.to(other.topics.decision_outbox)
    assert release.partition == control.partition
    lane = PublishedMemory(capacity=100)
    assert lane.refusal(*lane_identity(release)) is None
    lane.add(*lane_identity(release))
    assert lane.refusal(*lane_identity(control)) == DUPLICATE


def lane_identity(record: OutgoingRecord) -> tuple[tuple[bytes, bytes], bytes]:
    """What the lane judges an outbox record by: (reference, version) and declarant."""
    headers = dict(record.headers)
    return (record.key or b"", headers[HEADER_VERSION]), headers.get(HEADER_DECLARANT, b"")
