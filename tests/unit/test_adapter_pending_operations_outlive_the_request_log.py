"""A write-off, deletion or give-back queued on a down partner is not lost when the
request topic's retention (7 days) deletes its request before the partner is back.

The request log is the durable copy of what a down partner has not taken (ADR 0014): a
replica losing or finding its partitions forgets their queued rows, and whoever owns them
next reads the requests again from the commit. Once retention has deleted a request, the
row is its only copy: it is kept, and replayed. Requests deleted before any replica
answered them (the adapter down, or not fetching at its pending limit, longer than the
retention) cannot be read from anywhere: each such gap is dead-lettered
(``REQUEST_AGED_OUT_OF_THE_LOG``), logged and counted, never stepped over in silence.

Found by review (these tests first): every assignment forgot every row, and the fetch
from a commit below the log start was reset to its earliest record, past the write-off:
it never reached the partner, and the hub's last word stayed FOLLOW_UP_PENDING.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import REGISTRY

from adapters.base.ownership import PartitionOwnership, deleted_unanswered
from adapters.base.pending import PendingOperations
from adapters.base.replay import Replayer
from adapters.base.runner import AdapterRunner, _Rebalance
from gun_contract.dead_letter import (
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    header_value,
)
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from gun_contract.model.verdicts import Verdict
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import SecuritySettings, Settings
from tests.adapter_fixtures import PartnerAnsweringByRule, adapter_runner
from tests.unit.test_adapter_pending_replay import R1, R2, down, op
from tests.unit.test_state_pending_queue import TOPICS

REQUESTS = TOPICS.requests("dga")
AGED_OUT = "REQUEST_AGED_OUT_OF_THE_LOG"


class FakeCoordinator:
    def __init__(self, commits: Mapping[int, tuple[int, str]]) -> None:
        self._commits = commits
        self.generation = 1  # the group's generation, as aiokafka's coordinator keeps it

    async def fetch_committed_offsets(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        return {
            tp: OffsetAndMetadata(*self._commits[tp.partition])
            for tp in partitions
            if tp.partition in self._commits
        }


class FakeConsumer:
    """The group's commits and each partition's log start, as the broker would tell
    them; ``unreachable``: reading the log starts fails; ``partitions``: the request
    topic's partitions (default: those with a log start), as its metadata says. Like
    aiokafka's, ``beginning_offsets`` never answers for a partition the topic does not
    have (it waits for a leader until its timeout)."""

    def __init__(
        self,
        log_starts: Mapping[int, int],
        commits: Mapping[int, tuple[int, str]] | None = None,
        *,
        unreachable: bool = False,
        partitions: set[int] | None = None,
    ) -> None:
        self.log_starts = dict(log_starts)
        self._coordinator = FakeCoordinator(commits or {})
        self.unreachable = unreachable
        self.partitions = set(self.log_starts) if partitions is None else partitions
        # Where each partition's log ends (default: at its start, nothing in it).
        self.log_ends: dict[int, int] = {}

    async def beginning_offsets(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        if self.unreachable:
            raise ConnectionError("broker unreachable")
        if any(tp.partition not in self.partitions for tp in partitions):
            raise TimeoutError("no leader for a partition the topic does not have")
        return {tp: self.log_starts.get(tp.partition, 0) for tp in partitions}

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.unreachable:
            raise ConnectionError("broker unreachable")
        return {
            tp: self.log_ends.get(tp.partition, self.log_starts.get(tp.partition, 0))
            for tp in partitions
        }

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(self.partitions) if topic == REQUESTS else None

    def assignment(self) -> set[TopicPartition]:
        return set()


class FakeProducer:
    """Takes every record at once; keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, topic: str, value: bytes, **kwargs: Any) -> Awaitable[None]:
        self.sent.append({"topic": topic, "value": value, **kwargs})

        async def delivered() -> None:
            return None

        return delivered()

    async def send_and_wait(self, topic: str, value: bytes, **kwargs: Any) -> None:
        await (await self.send(topic, value, **kwargs))


@pytest.fixture
async def runner(tmp_path: Path) -> AsyncIterator[AdapterRunner]:
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    settings = Settings(security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / "state"))
    adapter = adapter_runner("dga", settings, TOPICS)
    yield adapter
    adapter.pending.close()


def tps(*partitions: int) -> set[TopicPartition]:
    return {TopicPartition(REQUESTS, p) for p in partitions}


def queued(pending: PendingOperations) -> list[str]:
    return [r.request_id for ref in pending.references() for r in pending.queued(ref)]


WRITE_OFF = op(Operation.WRITE_OFF, R1)
DELETE = op(Operation.DELETE, R2)
GIVE_BACK = op(Operation.GIVE_BACK, R1, version=2)


# -- the only copy is kept --------------------------------------------------------------


async def test_a_restarted_replica_keeps_the_operations_the_log_no_longer_holds(
    runner: AdapterRunner,
) -> None:
    """The WRITE_OFF at 0/5 met a down partner for longer than the retention: the log of
    partition 0 starts at 8 now. The replica restarts (an assignment): its row is the only
    copy and stays queued; the rows the log still holds are read again, as before."""
    runner.pending.add(WRITE_OFF, partition=0, offset=5)
    runner.pending.add(GIVE_BACK, partition=0, offset=9)  # still in the log: read again
    runner.pending.add(DELETE, partition=1, offset=2)  # still in the log: read again
    consumer = FakeConsumer({0: 8, 1: 0}, {0: (5, "answered:12"), 1: (2, "answered:3")})

    await _Rebalance(runner, consumer).on_partitions_assigned(tps(0, 1))

    assert queued(runner.pending) == [WRITE_OFF.request_id]
    assert runner.pending.oldest_offsets() == {0: 5}


async def test_a_revoked_partition_keeps_the_operations_the_log_no_longer_holds(
    runner: AdapterRunner,
) -> None:
    runner.pending.add(WRITE_OFF, partition=0, offset=5)
    runner.pending.add(DELETE, partition=1, offset=2)
    consumer = FakeConsumer({0: 8, 1: 0}, {0: (5, "answered:12"), 1: (2, "answered:3")})
    rebalance = _Rebalance(runner, consumer)
    await rebalance.on_partitions_assigned(tps(0, 1))
    runner.pending.add(DELETE, partition=1, offset=2)  # met the outage again

    await rebalance.on_partitions_revoked(tps(0, 1))

    assert queued(runner.pending) == [WRITE_OFF.request_id]


async def test_a_kept_operation_is_replayed_once_the_partner_is_back(
    pending: PendingOperations,
) -> None:
    """Kept on an assignment, whether or not its partition came back to this replica: no
    one else can read it again. A later operation of its declaration waits behind it."""
    partner = PartnerAnsweringByRule()
    partner.rule = down
    answered: list[tuple[str, int | None]] = []

    async def publish(
        request: AuthorityRequest, answers: tuple[DocumentAnswer, ...], partition: int | None
    ) -> None:
        answered.append((request.request_id, partition))

    replayer = Replayer(pending, partner, publish)
    ownership = PartitionOwnership(pending)
    pending.add(WRITE_OFF, partition=3, offset=5)
    ownership.assigned({0}, log_starts={0: 0, 3: 8})  # partition 3 went to another replica

    # A later operation of the declaration, read while the partner is still down, is
    # queued behind the kept one, and each is answered on its own partition.
    await replayer.ask(GIVE_BACK, partition=0, offset=1)
    partner.rule = lambda request: Verdict.VALID
    await replayer.replay_all()

    assert answered == [(WRITE_OFF.request_id, 3), (GIVE_BACK.request_id, 0)]
    assert len(pending) == 0


async def test_rows_are_kept_when_the_log_start_is_not_known(
    pending: PendingOperations,
) -> None:
    """Forgetting needs the log start: without it (a broker call that failed on a
    revocation) every row stays, since any of them may be the only copy."""
    ownership = PartitionOwnership(pending)
    ownership.assigned({0, 1}, log_starts={0: 0, 1: 0})
    pending.add(WRITE_OFF, partition=0, offset=5)
    pending.add(DELETE, partition=1, offset=2)
    await ownership.revoked({0, 1})  # no log start
    assert len(pending) == 2
    ownership.assigned({0, 1}, log_starts={1: 0})  # partition 0's not known
    assert queued(pending) == [WRITE_OFF.request_id]


async def test_a_revocation_that_cannot_read_the_log_start_forgets_nothing(
    runner: AdapterRunner,
) -> None:
    runner.pending.add(WRITE_OFF, partition=0, offset=5)
    consumer = FakeConsumer({0: 0}, {0: (5, "answered:12")})
    rebalance = _Rebalance(runner, consumer)
    await rebalance.on_partitions_assigned(tps(0))
    runner.pending.add(WRITE_OFF, partition=0, offset=5)
    consumer.unreachable = True

    await rebalance.on_partitions_revoked(tps(0))

    assert queued(runner.pending) == [WRITE_OFF.request_id]


async def test_an_assignment_that_cannot_read_the_log_start_stops_the_replica(
    runner: AdapterRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As when the commits' metadata cannot be read: a replica that took its partitions
    in without knowing what the log still holds would forget an only copy, or replay
    what the partitions' owners replay too. It stops; its supervisor starts it again."""
    monkeypatch.setattr("adapters.base.runner.asyncio.sleep", _no_wait)
    runner.pending.add(WRITE_OFF, partition=0, offset=5)
    consumer = FakeConsumer({0: 8}, {0: (5, "answered:12")}, unreachable=True)

    with pytest.raises(ConnectionError):
        await _Rebalance(runner, consumer).on_partitions_assigned(tps(0))

    assert runner._stopping.is_set()
    assert not runner.ownership.is_settled
    assert queued(runner.pending) == [WRITE_OFF.request_id]


async def _no_wait(_: float) -> None:
    return None


async def test_an_operation_of_a_partition_the_topic_no_longer_has_is_kept_and_the_replica_goes_on(
    runner: AdapterRunner, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The request topic was recreated with fewer partitions while a write-off of its old
    partition 3 waited for a down partner. That partition has no log start to read: the
    replica takes its partitions in all the same (before, every assignment failed and
    the replica restarted for ever), keeps the row (its only copy: replayed), and says
    so once per assignment."""
    monkeypatch.setattr("adapters.base.runner.asyncio.sleep", _no_wait)
    runner.pending.add(WRITE_OFF, partition=3, offset=5)
    runner.pending.add(DELETE, partition=0, offset=2)  # still in the log: read again
    consumer = FakeConsumer({0: 0, 1: 0}, {0: (2, "answered:3"), 1: (0, "")})

    with caplog.at_level(logging.ERROR, logger="adapters.base.runner"):
        await _Rebalance(runner, consumer).on_partitions_assigned(tps(0, 1))

    assert not runner._stopping.is_set()
    assert runner.ownership.is_settled
    assert queued(runner.pending) == [WRITE_OFF.request_id]
    (said,) = [r.getMessage() for r in caplog.records if "no longer has" in r.getMessage()]
    assert "partition 3" in said
    assert REQUESTS in said


# -- what no one can read again is said ------------------------------------------------


def test_the_requests_deleted_before_any_replica_answered_them_are_found(
    pending: PendingOperations,
) -> None:
    # Committed at 5 (an operation pending there), answered up to 7, the log starts at 10:
    # 5 and 6 were answered (the operation at 5 is its queuing replica's to keep), 7 to 9
    # were never read by anyone.
    assert deleted_unanswered(5, "answered:7", 10) == [range(7, 10)]
    assert deleted_unanswered(5, "", 10) == [range(5, 10)]  # no mark: nothing known answered
    assert deleted_unanswered(3, "answered:3", 0) == []  # nothing deleted
    assert deleted_unanswered(8, "answered:12", 10) == []  # all of it answered
    assert deleted_unanswered(-1, "", 40) == []  # never committed: nothing expected

    ownership = PartitionOwnership(pending)
    ownership.assigned(
        {0, 1, 2},
        {0: "answered:7", 1: "answered:3"},
        committed={0: 5, 1: 3},
        log_starts={0: 10, 1: 0, 2: 0},
    )
    # What the log lost before the commits is said as the partitions are assigned: the
    # batch that begins at the log start skips nothing more.
    assert ownership.next_offset(0) == 10
    assert ownership.unread(0, first=10, log_start=10) == []
    assert ownership.unread(1, first=3, log_start=0) == []  # no gap
    assert ownership.unread(2, first=40, log_start=40) == []  # nothing known before

    # Fetching paused at the pending limit: partition 1 was handled up to 4, and records
    # 4 to 8 left the log before they were fetched.
    ownership.handled({1: 4}, ownership.generation)
    assert ownership.unread(1, first=9, log_start=9) == [range(4, 9)]
    # A gap the log start does not explain (none expected on a request topic) is not
    # taken for retention.
    assert ownership.unread(1, first=9, log_start=4) == []


def test_the_records_a_commit_names_answered_past_its_mark_are_not_counted_lost(
    pending: PendingOperations,
) -> None:
    """Stop 54's open item: a commit that went back to a record its batch left names
    the records answered past it (``answered-also:``); their answers were sent. When
    retention deletes them unread by the next owner, they are not among the requests
    "no replica answered": the dead letters and their count said more was lost than
    was."""
    # Committed at 5, answered up to 7, and 9 and 10 answered past the left record 7:
    # the log starts at 14 now.
    metadata = "answered:7;answered-also:2,3"
    assert deleted_unanswered(5, metadata, 14) == [range(7, 9), range(11, 14)]
    assert deleted_unanswered(5, metadata, 10) == [range(7, 9)]  # 9 answered too

    ownership = PartitionOwnership(pending)
    ownership.assigned({0}, {0: metadata}, committed={0: 5}, log_starts={0: 5})
    assert ownership.unread(0, first=14, log_start=14) == [range(7, 9), range(11, 14)]


@pytest.fixture
async def pending(tmp_path: Path) -> AsyncIterator[PendingOperations]:
    queue = PendingOperations(tmp_path / "pending.sqlite")
    yield queue
    queue.close()


def record(partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    value = b"\x00not an envelope"
    return ConsumerRecord(REQUESTS, partition, offset, 0, 0, b"key", value, None, 3, len(value), [])


def aged_out_count() -> float:
    sample = REGISTRY.get_sample_value("gun_adapter_requests_aged_out_total", {"authority": "dga"})
    return sample or 0.0


def aged_out(producer: FakeProducer) -> list[dict[str, Any]]:
    return [s for s in producer.sent if header_value(s["headers"], HEADER_ERROR_KIND) == AGED_OUT]


async def test_requests_deleted_before_a_restart_are_dead_lettered_as_it_begins(
    runner: AdapterRunner,
) -> None:
    """The adapter was down longer than the retention: partition 0 was committed at 4,
    answered up to 4, and its log starts at 12 now. aiokafka would reset the fetch to 12;
    the eight requests before are dead-lettered as one gap, counted and logged, before
    any record is handled, so operations can find the declarations whose follow-ups
    never reached the partner."""
    consumer = FakeConsumer({0: 12}, {0: (4, "answered:4")})
    runner._producer = producer = FakeProducer()
    before = aged_out_count()

    await _Rebalance(runner, consumer).on_partitions_assigned(tps(0))

    [letter] = aged_out(producer)
    assert letter["topic"] == TOPICS.dlq
    assert header_value(letter["headers"], HEADER_SOURCE_PARTITION) == "0"
    assert header_value(letter["headers"], HEADER_SOURCE_OFFSET) == "4"
    assert "4 to 11" in str(header_value(letter["headers"], HEADER_ERROR_REASON))
    assert letter["value"] == b""
    assert aged_out_count() - before == 8
    # Said once: the partition is committed past the gap, new records or not, so the
    # next rebalance does not say it again.
    assert runner.ownership.to_commit() == {0: 12}
    assert runner.ownership.commit_metadata(0) == "answered:12"

    # The first batch begins at the log start: nothing more is said.
    await runner._process(
        {TopicPartition(REQUESTS, 0): [record(0, 12)]},
        producer,
        consumer,
    )
    assert len(aged_out(producer)) == 1


async def test_requests_answered_past_a_left_record_are_not_dead_lettered_as_lost(
    runner: AdapterRunner,
) -> None:
    """The last commit went back to a record its batch left (7) and named 9 and 10
    answered past it: of the requests retention deleted before the restart (5 to 13),
    5 and 6 were answered before the mark, 9 and 10 past it; two gaps are lost (7 to 8,
    11 to 13), five requests."""
    consumer = FakeConsumer({0: 14}, {0: (5, "answered:7;answered-also:2,3")})
    runner._producer = producer = FakeProducer()
    before = aged_out_count()

    await _Rebalance(runner, consumer).on_partitions_assigned(tps(0))

    letters = aged_out(producer)
    said = [
        (
            header_value(letter["headers"], HEADER_SOURCE_OFFSET),
            str(header_value(letter["headers"], HEADER_ERROR_REASON)),
        )
        for letter in letters
    ]
    assert [offset for offset, _ in said] == ["7", "11"], said
    assert "7 to 8" in said[0][1]
    assert "11 to 13" in said[1][1]
    assert aged_out_count() - before == 5


async def test_requests_deleted_while_fetching_was_paused_are_dead_lettered(
    runner: AdapterRunner,
) -> None:
    """Fetching paused at the pending limit while the partner stays down: records not yet
    fetched leave the log. The batch after the resume begins at the log start, past
    them."""
    consumer = FakeConsumer({0: 4}, {0: (4, "answered:4")})
    runner._producer = producer = FakeProducer()
    await _Rebalance(runner, consumer).on_partitions_assigned(tps(0))
    batch = {TopicPartition(REQUESTS, 0): [record(0, 4), record(0, 5)]}
    await runner._process(batch, producer, consumer)
    assert aged_out(producer) == []

    consumer.log_starts[0] = 14
    batch = {TopicPartition(REQUESTS, 0): [record(0, 14)]}
    await runner._process(batch, producer, consumer)

    [letter] = aged_out(producer)
    assert header_value(letter["headers"], HEADER_SOURCE_OFFSET) == "6"
    assert "6 to 13" in str(header_value(letter["headers"], HEADER_ERROR_REASON))


# -- how close the oldest pending operation is to the retention --------------------------


def test_the_oldest_pending_operations_broker_time_is_kept(
    pending: PendingOperations,
) -> None:
    now = time.time()
    assert pending.oldest_logged_at() is None
    pending.add(DELETE, partition=1, offset=2, logged_at=now - 2 * DAY)
    pending.add(WRITE_OFF, partition=0, offset=5, logged_at=now - 6 * DAY)
    pending.add(GIVE_BACK, partition=0)  # kept before timestamps were: not known
    assert pending.oldest_logged_at() == now - 6 * DAY


def test_the_age_gauge_says_how_old_the_oldest_pending_operation_is(
    runner: AdapterRunner,
) -> None:
    """What to alert on before retention deletes a pending operation's request
    (docs/operations.md): the age of the oldest, by its record's timestamp."""
    runner.pending.add(WRITE_OFF, partition=0, offset=5, logged_at=time.time() - 5 * DAY)
    runner.report_pending()
    age = gauge("gun_adapter_oldest_pending_age_seconds")
    assert 5 * DAY <= age < 5 * DAY + 60
    assert gauge("gun_adapter_pending_operations") == 1
    runner.pending.done(WRITE_OFF)
    runner.report_pending()
    assert gauge("gun_adapter_oldest_pending_age_seconds") == 0
    assert gauge("gun_adapter_pending_operations") == 0


DAY = 86400.0


def gauge(name: str) -> float:
    value = REGISTRY.get_sample_value(name, {"authority": "dga"})
    assert value is not None
    return value
