"""A version read on two partitions and decided differently by each follows the decision
the publisher's lane published: the case whose decision was not published waits for no
control, and what operations and the trader read is the decision published.

docs/decisions.md, "One reference on several partitions": a clearance system resending a
version through another partitioner has it decided by each partition's case; the
decisions go to the one outbox partition of the reference, whose lane publishes the first
it reads and drops the other as a duplicate (runtime/publisher.py). Here partition 0's
case releases version 1 on DGAL's answer, partition 1's, whose answer does not come in
time, decides a documentary control at its deadline, and the lane publishes the release.
Until a review of stop 58, nothing told partition 1's case that its control was not
published:

* it kept its reservations for a control the clearance system never ordered (it
  received a release): CONTROL_RESULT_OVERDUE a week later, operations chasing an office
  about goods it released, and the case never retired (``lifecycle.kept_for_control``;
  retention.py ``_finalised``);
* the operations view kept the first DECIDED it read (ops/view.py ``_decision``,
  ``current_state``), and the two cases' status events and facts are on the partitions
  of their cases (runtime/delivery.py ``pinned``), read in any order against the lane's:
  the trader and the officer could read the control while the clearance system received
  the release, and the statistics counted it.

Now the lane tells the case (a notice on the hub's deadlines topic at its partition:
pipeline/published_elsewhere.py) and the view (a NOT_PUBLISHED_DECIDED_ELSEWHERE status).

Driven without Kafka: the hub's steps, and the lane's transaction with a producer that
takes every record (tests/unit/test_publisher_memory_is_bounded.py); what the lane writes
on the hub's deadlines topic is handled by the worker of its partition as app.py's
deadlines agent handles it, and what it writes on the status topic is read by the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects, OutgoingRecord
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import StateCipher
from gun_hub.domain.case import Case
from gun_hub.domain.lifecycle import kept_for_control
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusEvent, StatusKind
from gun_hub.ops.view import FeedRecord, FeedTopics, OpsView
from gun_hub.pipeline.decision_outbox import lodging_of
from gun_hub.pipeline.published_elsewhere import NotPublished
from gun_hub.pipeline.takeover import NOTICE_STATE, Takeover, is_notice, tells_other_partitions
from gun_hub.runtime.published_memory import PublishedMemory
from gun_hub.runtime.publisher import DecisionPublisher, _PartitionPublisher
from gun_hub.web.redaction import trader_history, trader_status
from tests.builders import declaration_xml
from tests.unit.test_deadlines_and_lifecycle import REF
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import at, requests


class _Producer:
    """A transactional producer that takes every record, and says where each went."""

    def __init__(self) -> None:
        self.sent: list[OutgoingRecord] = []

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        **_: Any,
    ) -> asyncio.Future[object]:
        self.sent.append(OutgoingRecord(topic, key, value, list(headers or []), partition))
        delivered: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        delivered.set_result(SimpleNamespace(offset=len(self.sent) - 1))
        return delivered

    async def send_offsets_to_transaction(self, *_: Any) -> None:
        pass

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}


class Split:
    """Version 1 read on partitions 0 and 1: released on partition 0 on DGAL's answer,
    decided a documentary control at its deadline on partition 1."""

    def __init__(self, routing_table: RoutingTable, keys_dir: Path) -> None:
        self.keys_dir = keys_dir
        self.released_on, self.controlled_on = (
            Hub(routing_table, keys_dir),
            Hub(routing_table, keys_dir),
        )
        self.received_release = sent = self.released_on.intake.handle(
            declaration_xml(), at(0, partition=0)
        )
        self.received_control = self.controlled_on.intake.handle(
            declaration_xml(), at(0, partition=1)
        )
        self.released = self.released_on.answer(sent, "dgal", Verdict.VALID)
        assert self.released_on.decisions(self.released) == [(REF, 1, Outcome.RELEASE)]
        self.controlled_on.now += timedelta(seconds=31)
        self.controlled = self.controlled_on.deadlines.handle(
            REF, 1, SourcePosition(self.controlled_on.topics.deadlines, 1, 0)
        )
        assert self.controlled_on.decisions(self.controlled) == [
            (REF, 1, Outcome.CONTROL_DOCUMENTARY)
        ]
        [self.release] = self.released.to(self.released_on.topics.decision_outbox)
        [self.control] = self.controlled.to(self.controlled_on.topics.decision_outbox)
        assert self.release.partition == self.control.partition  # the reference's lane

    async def lane(self, *, published_from: int = 0) -> list[OutgoingRecord]:
        """The lane publishes the decision of partition ``published_from``'s case, then
        reads the other's: what it writes then."""
        hub = self.controlled_on
        lane_partition = self.control.partition
        assert lane_partition is not None
        first, then = (self.release, self.control)[:: 1 if published_from == 0 else -1]
        producer = _Producer()
        publisher = DecisionPublisher(
            connect=None,  # type: ignore[arg-type]
            outbox_topic=hub.topics.decision_outbox,
            decisions_topic=hub.topics.decisions,
            app_id="gun-hub",
            envelope=hub.envelope(HUB_PARTY),
            outbox_cipher=StateCipher.load(self.keys_dir, HUB_PARTY),
            status=hub.topics.status,
            dead_letters=hub.topics.dlq,
            deadlines=hub.topics.deadlines,
        )
        lane = _PartitionPublisher(lane_partition, producer, PublishedMemory(100))
        tp = TopicPartition(hub.topics.decision_outbox, lane_partition)
        written = 0
        for offset, record in enumerate((first, then)):
            written = len(producer.sent)
            read = SimpleNamespace(
                topic=hub.topics.decision_outbox,
                partition=lane_partition,
                offset=offset,
                key=record.key,
                value=record.value,
                headers=record.headers,
            )
            assert await publisher._publish_batch(lane, None, tp, [read])
        assert len([r for r in producer.sent if r.topic == hub.topics.decisions]) == 1
        return producer.sent[written:]

    def told(self, written: list[OutgoingRecord], partition: int = 1) -> Effects:
        """What the lane wrote on the hub's deadlines topic at ``partition``, handled by
        that partition's worker as its deadlines agent handles it (runtime/app.py)."""
        hub = (self.released_on, self.controlled_on)[partition]
        takeover = hub._delivered(Takeover(hub.context, hub.cases).handle)
        deadlines = hub._delivered(hub.deadlines.handle)
        outbox = Effects()
        for offset, record in enumerate(written, 1):
            if record.topic != hub.topics.deadlines or record.partition != partition:
                continue
            source = SourcePosition(hub.topics.deadlines, partition, offset)
            if is_notice(record.value):
                handled = takeover(REF, record.value, source)
            else:
                handled = deadlines(REF, int(record.value or b"0"), source)
            outbox.records.extend(handled.records)
        return outbox


@pytest.fixture
def split(routing_table: RoutingTable, keys_dir: Path) -> Split:
    return Split(routing_table, keys_dir)


@pytest.mark.asyncio
async def test_a_control_the_lane_did_not_publish_waits_for_no_control(split: Split) -> None:
    split.told(await split.lane())
    hub = split.controlled_on
    # Its reservations are the release's, written off from partition 0 under the same
    # idempotency keys: nothing is kept here for a control the office never ordered ...
    case = Case.from_bytes(hub.cases[REF.encode()])
    assert not kept_for_control(case), "kept for a control the clearance system never ordered"
    # ... nor reported overdue a week later.
    hub.now += timedelta(seconds=hub.control_report_after_s + 1)
    ticked = hub.deadlines.handle(REF, 1, SourcePosition(hub.topics.deadlines, 1, 99))
    assert StatusKind.CONTROL_RESULT_OVERDUE not in hub.status_kinds(ticked)


@pytest.mark.asyncio
async def test_the_lane_tells_the_partition_whose_decision_it_did_not_publish(
    split: Split,
) -> None:
    """One notice on the hub's deadlines topic at each partition (the control's, the
    release's), naming the partition whose decision was published and its outcome, and
    one status for the view naming the outcome not published and its receipt."""
    hub = split.controlled_on
    written = await split.lane()
    notices = [r for r in written if r.topic == hub.topics.deadlines]
    assert [r.partition for r in notices] == [0, 1]
    for notice in notices:
        opened = hub.context.outbox_cipher.open(NOTICE_STATE, REF, notice.value)
        assert NotPublished.from_fields(json.loads(opened)) == NotPublished(1, 0, Outcome.RELEASE)
    [status] = [
        StatusEvent.model_validate_json(r.value) for r in written if r.topic == hub.topics.status
    ]
    assert status.kind is StatusKind.NOT_PUBLISHED_DECIDED_ELSEWHERE
    assert (status.reference, status.version) == (REF, 1)
    assert status.outcome == Outcome.CONTROL_DOCUMENTARY.value
    assert status.lodging == lodging_of(split.control.headers)
    assert status.lodging != lodging_of(split.release.headers)


@pytest.mark.asyncio
async def test_the_control_not_published_writes_off_what_it_held_as_the_release_did(
    split: Split,
) -> None:
    """Under version 1 and the same request id as partition 0's release: the partner
    takes the write-off once, whichever partition's call comes first."""
    hub = split.controlled_on
    [released_write_off] = requests(split.released_on, split.released)
    assert released_write_off.operation is Operation.WRITE_OFF
    [write_off] = requests(hub, split.told(await split.lane()))
    assert (write_off.operation, write_off.version, write_off.request_id) == (
        Operation.WRITE_OFF,
        1,
        released_write_off.request_id,
    )
    assert write_off.items == released_write_off.items


@pytest.mark.asyncio
async def test_the_notice_read_again_sends_the_same_write_offs_again(split: Split) -> None:
    """A crash before its offset was committed: the write-offs may be lost, sent again
    under the same request id; the case is as it was."""
    written = await split.lane()
    hub = split.controlled_on
    first = requests(hub, split.told(written))
    once = Case.from_bytes(hub.cases[REF.encode()])
    again = requests(hub, split.told(written))
    assert [(r.request_id, r.operation, r.items) for r in again] == [
        (r.request_id, r.operation, r.items) for r in first
    ]
    assert not kept_for_control(Case.from_bytes(hub.cases[REF.encode()]))
    assert Case.from_bytes(hub.cases[REF.encode()]).handed_over == once.handed_over


@pytest.mark.asyncio
async def test_a_repeat_from_the_partition_whose_decision_was_published_tells_nobody(
    split: Split,
) -> None:
    """The control published (partition 1's), the lane reads partition 1's control again
    (a crash's announcement again): a duplicate, nothing told."""
    hub = split.controlled_on
    split.release = split.control  # the lane reads the control again
    again = await split.lane(published_from=1)
    assert [r for r in again if r.topic in (hub.topics.deadlines, hub.topics.status)] == []


@pytest.mark.asyncio
async def test_a_release_not_published_beside_a_control_published_is_left_as_it_was(
    split: Split,
) -> None:
    """The other order: the control published, the release dropped. The release's case is
    told (partition 0) and, holding nothing, sends nothing: it only learns that the
    reference is split; the control published keeps its reservations for its result (what
    the release wrote off stays written off: the publisher does not hold a case's
    follow-ups, docs/decisions.md)."""
    written = await split.lane(published_from=1)
    released_before = Case.from_bytes(split.released_on.cases[REF.encode()])
    assert split.told(written, partition=0).records == []
    released_after = Case.from_bytes(split.released_on.cases[REF.encode()])
    assert released_after.told_others
    assert released_after.model_copy(update={"told_others": False}) == released_before
    assert split.told(written, partition=1).records == []
    assert kept_for_control(Case.from_bytes(split.controlled_on.cases[REF.encode()]))


@pytest.mark.asyncio
async def test_a_later_version_read_where_the_control_was_not_published_tells_the_others(
    split: Split,
) -> None:
    """The control's result read on partition 1: the case on partition 0 may hold for the
    control published from there, so partition 1 tells it (takeover.py)."""
    hub = split.controlled_on
    before = Case.from_bytes(hub.cases[REF.encode()])
    assert not tells_other_partitions(2, before, 1)
    split.told(await split.lane())
    assert tells_other_partitions(2, Case.from_bytes(hub.cases[REF.encode()]), 1)


@pytest.mark.parametrize(
    "notice",
    [
        b'{"not_published":0,"published_from":0}',
        b'{"not_published":1,"published_from":"0"}',
        b'{"not_published":true,"published_from":0}',
        b'{"not_published":1}',
    ],
)
def test_a_notice_of_a_decision_not_published_that_names_no_version_is_refused(
    split: Split, notice: bytes
) -> None:
    """Refused with the reason (the deadlines agent dead-letters it), the case untouched."""
    hub = split.controlled_on
    before = hub.cases[REF.encode()]
    sealed = hub.context.outbox_cipher.seal(NOTICE_STATE, REF, notice)
    with pytest.raises(ValueError, match="not published must name its version"):
        Takeover(hub.context, hub.cases).handle(
            REF, sealed, SourcePosition(hub.topics.deadlines, 1, 7)
        )
    assert hub.cases[REF.encode()] == before


def _as_read(topics: FeedTopics, *written: tuple[int, list[OutgoingRecord]]) -> list[FeedRecord]:
    """The status and facts records of each (partition, records), in that order, as the
    view reads them (a record naming its partition is read there)."""
    offsets: dict[tuple[str, int], int] = {}
    read = []
    for partition, records in written:
        for r in records:
            if r.topic not in (topics.status, topics.facts):
                continue
            where = (r.topic, partition if r.partition is None else r.partition)
            offsets[where] = offset = offsets.get(where, -1) + 1
            read.append(FeedRecord(r.topic, where[1], offset, 0, r.value, r.headers, r.key))
    return read


@pytest.mark.asyncio
async def test_the_view_reads_the_decision_the_lane_published(split: Split, tmp_path: Path) -> None:
    """Partition 1's status and facts read first (its worker's records reached their
    partitions first; the lane read partition 0's decision first)."""
    hub = split.controlled_on
    topics = FeedTopics(hub.topics.status, hub.topics.facts, hub.topics.dlq, "health")
    view = OpsView(tmp_path / "view.sqlite3", topics)
    view.apply(
        _as_read(
            topics,
            (1, [*split.received_control.records, *split.controlled.records]),
            (0, [*split.received_release.records, *split.released.records]),
            (0, await split.lane()),
        )
    )
    officer = view.declaration(REF)
    assert officer is not None
    assert officer["outcome"] == Outcome.RELEASE.value, "the officer reads the control"
    declarants = view._db.execute(
        "SELECT DISTINCT declarant FROM lodgings WHERE reference = ?", (REF,)
    ).fetchall()
    [(declarant,)] = declarants
    history = view.history_of_declarant(REF, declarant)
    assert history is not None
    seen = trader_status(REF, history, confidential=())
    assert seen["outcome"] == Outcome.RELEASE.value, "the trader reads the control"
    # Nor any event of the case whose decision was not published: a deadline passed on a
    # version released on its answer (a review of stop 59).
    kinds = [e["kind"] for e in trader_history(history, confidential=())]
    assert StatusKind.DEADLINE_PASSED.value not in kinds
    assert kinds.count(StatusKind.RECEIVED.value) == 1
    assert view.statistics()["decisions"]["by_outcome"] == {Outcome.RELEASE.value: 1}


def test_a_notice_of_a_decision_not_published_in_clear_is_refused(split: Split) -> None:
    """Every lane seals it (no worker ever wrote one in clear, unlike the takeover
    notices of before stop 56): one in clear is refused with the reason, the case
    untouched."""
    hub = split.controlled_on
    before = hub.cases[REF.encode()]
    clear = NotPublished(1, 0, Outcome.RELEASE).to_bytes()
    with pytest.raises(ValueError, match="not published that is not sealed"):
        Takeover(hub.context, hub.cases).handle(
            REF, clear, SourcePosition(hub.topics.deadlines, 1, 7)
        )
    assert hub.cases[REF.encode()] == before
