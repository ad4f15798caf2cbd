"""Review of stop 59's change (ADR 0028): the notice of a decision not published reaches
its case's partition after a later version of the reference was read there.

The lane writes the :class:`NotPublished` notice when it reads the duplicate, and the
deadlines agent of that partition handles it whenever it comes to it; the later versions
of the reference are read by another agent, on the declarations topic. Nothing orders
the two: the notice waits behind a lagging deadlines agent (a worker back from a stop
reads both backlogs at once), or the partition reads its versions late (behind on its
declarations: version 1 still undecided when version 2 comes, decided REFUSE,
SUPERSEDED, which the lane drops as a duplicate of the version published). Either way
the later version is read where the reference is not known split yet, so it tells
nobody; in the review's first version the notice then found the later version and did
nothing: the case on the other partition, whose decision was published, was never told
of the control's result or of the invalidation. Now the notice has the later version
tell the other partitions then (takeover.py ``_follow_the_published``), and the control
not published follows the outcome published (or keeps holding, reported, beside one it
does not know).

Driven without Kafka as tests/unit/test_a_version_decided_on_two_partitions_follows_the_
decision_published.py drives it: the same lane, the same handling of the deadlines topic.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Outcome
from gun_contract.security.state_cipher import StateUnreadable
from gun_hub.domain.case import Case
from gun_hub.domain.lifecycle import kept_for_control
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.pipeline.takeover import Takeover
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_a_version_decided_on_two_partitions_follows_the_decision_published import (
    Split,
)
from tests.unit.test_deadlines_and_lifecycle import REF
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import at, requests


class BothControlled(Split):
    """Version 1 read on partitions 0 and 1, DGAL silent on both: each case decides a
    documentary control at its deadline; the lane publishes partition 0's (``release``
    names the decision published, as in :class:`Split`)."""

    def __init__(self, routing_table: RoutingTable, keys_dir: Path) -> None:
        self.keys_dir = keys_dir
        self.released_on, self.controlled_on = (
            Hub(routing_table, keys_dir),
            Hub(routing_table, keys_dir),
        )
        decided = []
        for partition, hub in enumerate((self.released_on, self.controlled_on)):
            hub.intake.handle(declaration_xml(), at(0, partition=partition))
            hub.now += timedelta(seconds=31)
            ticked = hub.deadlines.handle(
                REF, 1, SourcePosition(hub.topics.deadlines, partition, 0)
            )
            assert hub.decisions(ticked) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
            [record] = ticked.to(hub.topics.decision_outbox)
            decided.append(record)
        self.release, self.control = decided


@pytest.fixture
def split(routing_table: RoutingTable, keys_dir: Path) -> Split:
    """Version 1 released on partition 0 (published), controlled on partition 1."""
    return Split(routing_table, keys_dir)


def _notices_to(hub: Hub, outbox: Effects, to: Hub, partition: int) -> Effects:
    """The takeover notices ``hub`` wrote at ``partition`` of the deadlines topic,
    handled by ``to``, the worker of that partition, as its deadlines agent does."""
    handle = to._delivered(Takeover(to.context, to.cases).handle)
    handled = Effects()
    for offset, record in enumerate(outbox.to(hub.topics.deadlines)):
        if record.partition == partition and record.key == REF.encode():
            source = SourcePosition(hub.topics.deadlines, partition, 100 + offset)
            handled.records.extend(handle(REF, record.value, source).records)
    return handled


class _DoesNotOpen(dict[bytes, bytes]):
    """A case table whose value of the reference does not open until it is written
    again (the worker's sealed store raises so: pipeline/unreadable_state.py)."""

    def get(self, key: bytes, default: Any = None) -> Any:
        if key == REF.encode() and key not in self:
            raise StateUnreadable("does not open", table="cases", key=key)
        return super().get(key, default)


async def _controlled_and_told(
    keys_dir: Path, published_on: Hub, published: Effects, controlled_on: Hub
) -> Effects:
    """Version 1 read on partition 1 too, its certificate reserved and controlled at the
    deadline; the lane publishes ``published`` (partition 0's decision) and reads the
    control: what partition 1 does with the lane's notice."""
    received = controlled_on.intake.handle(declaration_xml(), at(0, partition=1))
    assert [r.operation for r in requests(controlled_on, received)] == [Operation.RESERVE]
    controlled_on.now += timedelta(seconds=31)
    controlled = controlled_on.deadlines.handle(
        REF, 1, SourcePosition(controlled_on.topics.deadlines, 1, 0)
    )
    assert controlled_on.decisions(controlled) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    split = BothControlled.__new__(BothControlled)
    split.keys_dir = keys_dir
    split.released_on, split.controlled_on = published_on, controlled_on
    [split.release] = published.to(published_on.topics.decision_outbox)
    [split.control] = controlled.to(controlled_on.topics.decision_outbox)
    return split.told(await split.lane(published_from=0))


def _case(hub: Hub) -> Case:
    return Case.from_bytes(hub.cases[REF.encode()])


@pytest.mark.asyncio
async def test_the_offices_release_read_before_the_notice_still_ends_the_control_published(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """Both cases controlled, partition 0's published. The office's RELEASED_AFTER_CONTROL
    comes on partition 1 before partition 1's deadlines agent reads the lane's notice:
    partition 1 writes off and releases, and tells nobody (its control is not marked
    yet). The notice, read then, finds version 2, which tells partition 0 then: its
    control, the one the clearance system received and whose result this is, ends; not
    reported CONTROL_RESULT_OVERDUE (it was, in the review's first version)."""
    split = BothControlled(routing_table, keys_dir)
    published_on, other = split.released_on, split.controlled_on
    written = await split.lane(published_from=0)
    result = other.intake.handle(
        declaration_xml(version=2, stage=Stage.RELEASED_AFTER_CONTROL), at(1, partition=1)
    )
    told = _notices_to(other, result, published_on, 0)
    told.records.extend(_notices_to(other, split.told(written), published_on, 0).records)

    assert not kept_for_control(_case(published_on)), (
        "partition 0's published control is kept for a result read on partition 1"
    )
    published_on.now += timedelta(seconds=published_on.control_report_after_s + 60)
    ticked = published_on.deadlines.handle(
        REF, 1, SourcePosition(published_on.topics.deadlines, 0, 99)
    )
    assert StatusKind.CONTROL_RESULT_OVERDUE not in published_on.status_kinds(ticked)


@pytest.mark.asyncio
async def test_the_offices_release_read_where_the_control_was_published_ends_the_other(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """Both cases controlled, partition 0's published: partition 1's keeps holding (a
    control was ordered), and the office's RELEASED_AFTER_CONTROL read on partition 0
    after the notices tells partition 1 (the lane told partition 0 too that the reference
    is split), whose control then ends: not reported overdue either."""
    split = BothControlled(routing_table, keys_dir)
    published_on, other = split.released_on, split.controlled_on
    written = await split.lane(published_from=0)
    split.told(written, partition=0)
    assert split.told(written, partition=1).records == []
    assert kept_for_control(_case(other)), "a control was ordered: it holds until its result"
    result = published_on.intake.handle(
        declaration_xml(version=2, stage=Stage.RELEASED_AFTER_CONTROL), at(1, partition=0)
    )
    _notices_to(published_on, result, other, 1)

    assert not kept_for_control(_case(other))
    other.now += timedelta(seconds=other.control_report_after_s + 60)
    ticked = other.deadlines.handle(REF, 1, SourcePosition(other.topics.deadlines, 1, 99))
    assert StatusKind.CONTROL_RESULT_OVERDUE not in other.status_kinds(ticked)


@pytest.mark.asyncio
async def test_a_partition_behind_on_its_declarations_still_ends_the_control_published(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """Partition 0 read version 1, decided a control, published. Partition 1 is behind:
    it reads version 1 and the office's RELEASED_AFTER_CONTROL (version 2) one after the
    other, version 1 undecided (REFUSE, SUPERSEDED: a duplicate at the lane, which tells
    partition 1, now at version 2), which tells partition 0 its control ended."""
    split = BothControlled(routing_table, keys_dir)
    published_on = split.released_on
    behind = Hub(routing_table, keys_dir)
    behind.intake.handle(declaration_xml(), at(0, partition=1))
    result = behind.intake.handle(
        declaration_xml(version=2, stage=Stage.RELEASED_AFTER_CONTROL), at(1, partition=1)
    )
    assert behind.decisions(result)[:1] == [(REF, 1, Outcome.REFUSE)]
    [superseded, *_] = result.to(behind.topics.decision_outbox)
    split.controlled_on, split.control = behind, superseded
    written = await split.lane(published_from=0)
    _notices_to(behind, result, published_on, 0)
    _notices_to(behind, split.told(written), published_on, 0)

    assert not kept_for_control(_case(published_on)), (
        "partition 0's published control is kept for a result read on partition 1"
    )


@pytest.mark.asyncio
async def test_an_invalidation_read_before_the_notice_gives_back_what_the_release_wrote_off(
    split: Split,
) -> None:
    """Partition 0's release published (its write-off sent), partition 1's control not.
    The office invalidates the declaration; version 2 INVALIDATED is read on partition 1
    before its deadlines agent reads the lane's notice: partition 1 gives back nothing
    (it wrote nothing off) and tells nobody; the notice then finds version 2, which tells
    partition 0 then: it gives back what the release wrote off (the quantity was lost to
    the certificate's holder in the review's first version)."""
    published_on, other = split.released_on, split.controlled_on
    written_off = [
        r for r in requests(published_on, split.released) if r.operation is Operation.WRITE_OFF
    ]
    assert written_off, "the release wrote off its licence"
    written = await split.lane(published_from=0)
    invalidated = other.intake.handle(
        declaration_xml(version=2, stage=Stage.INVALIDATED), at(1, partition=1)
    )
    handled = _notices_to(other, invalidated, published_on, 0)
    handled.records.extend(_notices_to(other, split.told(written), published_on, 0).records)

    given_back = [r for r in requests(published_on, handled) if r.operation is Operation.GIVE_BACK]
    assert given_back, "what the published release wrote off is never given back"


@pytest.mark.asyncio
async def test_a_control_not_published_beside_a_refusal_reserving_nothing_is_not_dropped_silently(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """The review's first version took for granted that the decision published followed
    up the documents the control not published reserved. A decision that reserved
    nothing broke it: partition 0's stored case of the reference does not open, so
    version 1 is refused there over it (intake ``_refuse_over_unreadable``: nothing asked,
    nothing deleted), and the lane publishes that refusal first. Partition 1 reserved the
    licence and decided a control; told, it held nothing any more and nothing deleted its
    reservation. Now it follows the refusal published: it deletes what it holds (or, an
    outcome it does not know, keeps holding and is reported overdue)."""
    refused_on = Hub(routing_table, keys_dir, cases=_DoesNotOpen())
    controlled_on = Hub(routing_table, keys_dir)
    refused = refused_on.intake.handle(declaration_xml(), at(0, partition=0))
    assert refused_on.decisions(refused) == [(REF, 1, Outcome.REFUSE)]
    assert requests(refused_on, refused) == []  # nothing reserved, nothing deleted
    followed = await _controlled_and_told(keys_dir, refused_on, refused, controlled_on)

    deleted = [r for r in requests(controlled_on, followed) if r.operation is Operation.DELETE]
    controlled_on.now += timedelta(seconds=controlled_on.control_report_after_s + 60)
    ticked = controlled_on.deadlines.handle(
        REF, 1, SourcePosition(controlled_on.topics.deadlines, 1, 99)
    )
    assert deleted or StatusKind.CONTROL_RESULT_OVERDUE in controlled_on.status_kinds(ticked), (
        "the licence partition 1 reserved is held at the partner, and nothing says so"
    )


@pytest.mark.asyncio
async def test_a_control_not_published_beside_a_copy_quoting_other_documents_is_not_dropped(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """The e2e test of ADR 0028 stages it so (tests/e2e/test_a_reference_split_across_
    partitions.py ``test_a_control_the_publisher_did_not_publish_holds_nothing_and_is_not_
    reported``): version 1 released at once on partition 0 (an exempt document, nothing
    reserved), its copy on partition 1 quoting a certificate, reserved there and
    controlled at the deadline. The lane publishes the release; partition 1, told, held
    nothing in the review's first version: the certificate stayed reserved at DGAL for
    good, neither ended nor reported. Now it writes it off as the release published has
    it (or keeps holding, reported, beside an outcome it does not know)."""
    released_on, controlled_on = Hub(routing_table, keys_dir), Hub(routing_table, keys_dir)
    exempt = (goods_item(1, (document("Y900", "EX-1", None, None),)),)
    released = released_on.intake.handle(declaration_xml(items=exempt), at(0, partition=0))
    assert released_on.decisions(released) == [(REF, 1, Outcome.RELEASE)]
    followed = await _controlled_and_told(keys_dir, released_on, released, controlled_on)

    ended = [r for r in requests(controlled_on, followed) if r.operation is not Operation.RESERVE]
    controlled_on.now += timedelta(seconds=controlled_on.control_report_after_s + 60)
    ticked = controlled_on.deadlines.handle(
        REF, 1, SourcePosition(controlled_on.topics.deadlines, 1, 99)
    )
    assert ended or StatusKind.CONTROL_RESULT_OVERDUE in controlled_on.status_kinds(ticked), (
        "the certificate partition 1 reserved is held at DGAL, and nothing says so"
    )


@pytest.mark.asyncio
async def test_a_duplicate_of_the_outcome_published_is_told_to_the_cases_not_to_the_view(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """Both cases controlled: the lane tells both partitions (the reference is split) but
    writes no NOT_PUBLISHED_DECIDED_ELSEWHERE, which the view would read as the outcome
    published not being so (a review of stop 59: three partitions, two alike)."""
    split = BothControlled(routing_table, keys_dir)
    written = await split.lane(published_from=0)
    hub = split.controlled_on
    assert [r.partition for r in written if r.topic == hub.topics.deadlines] == [0, 1]
    assert [r for r in written if r.topic == hub.topics.status] == []
