"""A replica that dies between a partner call and its next commit names nothing; the
partition's next owner asks every record its predecessor may have sent as a repeat.

Replica A reads a reservation past its last commit (a periodic one: ``answered:10``),
sends it, the partner holds the call (409 "being processed" to any repeat), and A dies
before committing again. Its commit names nothing. The next owner, B, reads the
reservation from that commit. It was asked as a first attempt, the partner's 409 was
read as a refusal (the key forgotten), and the refused declaration's DELETE then went
out unheld: answered ``02`` (nothing reserved yet), and the partner applied A's call
afterwards, 10 held for ever (review stop 39, P1, through a crash: the window
docs/adapters.md left open). Now a commit made on a clean hand-over says so, with the
group generation its replica owned the partition in (``handed-over:<generation>``),
believed in the next generation only; after any other, B takes every record below the
partition's log end at its assignment, from the commit on, for one its predecessor may
have sent: the
reservation's 409 is "still in progress", it is queued with its key, and the DELETE
waits behind it until the partner has applied it (``01``). A record appended after the
assignment was never sent: a 409 to it stays a refusal.

The runner's own listener and batch handling, a consumer standing in for the group's
commits and log ends, and the real partner client against the simulator over HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from adapters.base import load_adapter
from adapters.base.ownership import PartitionOwnership
from adapters.base.pending import PendingOperations
from adapters.base.runner import AdapterRunner, _Rebalance
from gun_contract.envelope import ContentType
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Verdict
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import AdapterSettings, SecuritySettings, Settings
from tests.adapter_fixtures import partner_request
from tests.conftest import envelope_of
from tests.partner_fixtures import WatchedPartner, set_faults, slow_partner_client, watched_partner
from tests.unit.test_adapter_pending_operations_outlive_the_request_log import (
    FakeConsumer,
    FakeProducer,
)
from tests.unit.test_state_pending_queue import TOPICS

REQUESTS = TOPICS.requests("dgal")
P0 = TopicPartition(REQUESTS, 0)
DOC = "CHEDP.FR.2026.0001234"
DECL = "26FR000690I0000801"
RESERVE = partner_request(Operation.RESERVE, reference=DECL, document=DOC, quantity="10")
DELETE = partner_request(Operation.DELETE, reference=DECL, document=DOC, quantity=None)
# Long past A's call (3 attempts of 0.3 s) and B's, on a loaded machine too.
HELD_S = 5.0
# A's call held through B's outage (three attempts with backoff) and its first replay.
HELD_LONG_S = 10.0


class GroupConsumer(FakeConsumer):
    """The group's commits as the broker keeps them, and the request partition's log end
    (the offset of the next record appended)."""

    def __init__(self, commits: dict[int, tuple[int, str]], log_end: int) -> None:
        super().__init__({0: 0}, commits, partitions={0})
        self.commits = commits
        self.log_ends = {0: log_end}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return {0} if topic == REQUESTS else None

    def assignment(self) -> set[TopicPartition]:
        return {P0}

    async def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        for tp, (offset, metadata) in offsets.items():
            self.commits[tp.partition] = (offset, metadata)


@pytest.fixture
async def partner(samples: Path, tmp_path: Path) -> AsyncIterator[WatchedPartner]:
    async with watched_partner(
        samples / "partners" / "dgal-documents.json",
        tmp_path / "ledger.db",
        lambda r: r.method == "PUT" and "/reservations/" in r.path,
    ) as running:
        yield running


@asynccontextmanager
async def replica(
    tmp_path: Path, partner: WatchedPartner, name: str, **client_settings: Any
) -> AsyncIterator[AdapterRunner]:
    """A DGAL adapter replica asking the simulator, its answers kept by a fake producer;
    ``client_settings``: its partner client's beyond :func:`slow_partner_client`'s."""
    keys = tmp_path / "keys"
    if not keys.exists():
        KeystoreFolder(keys).init(["hub", "dgal"])
    settings = Settings(
        security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / name),
        adapter=AdapterSettings(replica_id=name),
    )
    client = slow_partner_client(partner, **client_settings)
    runner = AdapterRunner(
        load_adapter("dgal"), settings, TOPICS, envelope_of("dgal", TOPICS, keys), client
    )
    runner._producer = FakeProducer()
    try:
        yield runner
    finally:
        await client.close()
        runner.pending.close()


def record(tmp_path: Path, request: AuthorityRequest, offset: int) -> ConsumerRecord[bytes, bytes]:
    """``request`` as the hub writes it at ``offset`` of partition 0."""
    sealed = envelope_of("hub", TOPICS, tmp_path / "keys").seal(
        request.model_dump_json().encode(),
        recipient="dgal",
        topic=REQUESTS,
        content_type=ContentType.JSON,
    )
    now_ms = int(time.time() * 1000)
    return ConsumerRecord(
        REQUESTS, 0, offset, now_ms, 0, DECL.encode(), sealed, None, 0, len(sealed), []
    )


async def handle(runner: AdapterRunner, consumer: GroupConsumer, *records: object) -> None:
    """One batch of partition 0, handled as the poll loop does (no commit)."""
    await runner._process({P0: list(records)}, runner._producer, consumer)


async def test_the_next_owner_after_a_crash_keeps_the_deletion_behind_the_reservation(
    partner: WatchedPartner, tmp_path: Path
) -> None:
    commits = {0: (10, "answered:10")}  # A's last periodic commit, before the reservation
    await set_faults(partner.url, in_progress_next=1, hang_s=HELD_S)
    async with replica(tmp_path, partner, "a") as first:
        consumer = GroupConsumer(commits, log_end=11)
        await _Rebalance(first, consumer).on_partitions_assigned({P0})
        await handle(first, consumer, record(tmp_path, RESERVE, 10))
        assert first.pending.has(DECL)  # A knows the partner is still at it...
    # ... and dies before its next commit: the group holds the periodic one.
    assert commits == {0: (10, "answered:10")}

    async with replica(tmp_path, partner, "b") as second:
        consumer = GroupConsumer(commits, log_end=11)  # the reservation, nothing after it
        await _Rebalance(second, consumer).on_partitions_assigned({P0})
        await handle(second, consumer, record(tmp_path, RESERVE, 10))
        assert second.pending.has(DECL), (
            "the reservation A may have sent was asked as a first attempt: the partner's 409 "
            "was read as a refusal, and nothing holds the deletion behind it"
        )
        # The refused declaration's DELETE, appended after B's assignment.
        await handle(second, consumer, record(tmp_path, DELETE, 11))
        assert partner.store.balances(DOC)[0].reserved == Decimal(0)
        assert len(second.pending) == 2  # queued behind the reservation
        # The reservation named in B's own commits: a third owner holds the DELETE (never
        # sent, so not named) behind it too.
        assert second.ownership.commit_metadata(0) == "answered:12;unsettled:0"

        await asyncio.wait_for(partner.answered.wait(), HELD_S + 10)
        assert partner.store.balances(DOC)[0].reserved == Decimal(10)  # A's call, applied
        await second._replayer.replay_all()
        assert len(second.pending) == 0
    line = partner.store.balances(DOC)[0]
    assert (line.reserved, line.written_off) == (Decimal(0), Decimal(0)), (
        "the DELETE overtook the crashed replica's reservation: held for ever"
    )


def amended(operation: Operation, version: int) -> AuthorityRequest:
    """The declaration's later life on DOC: released (v2 writes v1's 10 off), its
    release invalidated (v3 gives them back), lodged again (v4 reserves 10), refused
    (v4's deletion)."""
    quantity = "10" if operation is Operation.RESERVE else None
    return partner_request(
        operation, reference=DECL, version=version, document=DOC, quantity=quantity
    )


async def test_a_reservation_a_crashed_replica_may_have_sent_waits_queued_behind_what_holds_it(
    partner: WatchedPartner, tmp_path: Path
) -> None:
    """A answers v3's give-back, sends v4's reservation, which the partner holds, and
    dies. B reads both again from A's last commit while the partner is down: the
    give-back is queued, and the reservation, held back behind it (never sent ahead of a
    queued give-back, stop 36), was answered UNAVAILABLE and not queued: named in no
    commit, and the refused v4's deletion, queued behind the give-back only, went to the
    partner before A's call was applied: 10 held for ever (ledger review, stop 45,
    concern a). Now it is queued as one the partner may still apply: named in B's
    commits, asked again with its key after the give-back, and the deletion waits
    behind it."""
    history = slow_partner_client(partner)
    try:
        for earlier in (amended(Operation.RESERVE, 1), amended(Operation.WRITE_OFF, 2)):
            [answer] = await history.answer(earlier)
            assert answer.verdict is Verdict.VALID, answer.detail
    finally:
        await history.close()
    partner.answered.clear()
    give_back, reserve, delete = (
        amended(Operation.GIVE_BACK, 3),
        amended(Operation.RESERVE, 4),
        amended(Operation.DELETE, 4),
    )
    commits = {0: (10, "answered:10")}  # A's last periodic commit
    async with replica(tmp_path, partner, "a") as first:
        consumer = GroupConsumer(commits, log_end=12)
        await _Rebalance(first, consumer).on_partitions_assigned({P0})
        await handle(first, consumer, record(tmp_path, give_back, 10))
        await set_faults(partner.url, in_progress_next=1, hang_s=HELD_LONG_S)
        await handle(first, consumer, record(tmp_path, reserve, 11))
        assert first.pending.has(DECL)  # the partner still at the reservation; A dies
    assert commits == {0: (10, "answered:10")}

    # Its circuit kept closed through the outage: replayed as soon as the partner is back.
    async with replica(tmp_path, partner, "b", circuit_failure_threshold=100) as second:
        consumer = GroupConsumer(commits, log_end=12)
        await _Rebalance(second, consumer).on_partitions_assigned({P0})
        await set_faults(partner.url, in_progress_next=0, hang_s=HELD_LONG_S, outage=True)
        await handle(second, consumer, record(tmp_path, give_back, 10))
        await handle(second, consumer, record(tmp_path, reserve, 11))
        assert second.pending.holds(reserve), "the reservation A may have sent is kept"
        await handle(second, consumer, record(tmp_path, delete, 12))
        assert [r.operation for r, _ in second.pending.queued_at(DECL)] == [
            Operation.GIVE_BACK,
            Operation.RESERVE,
            Operation.DELETE,
        ]
        # The give-back (B's attempt a repeat of A's) and the reservation named: a third
        # owner would keep both, and the deletion behind them.
        assert second.ownership.commit_metadata(0) == "answered:13;unsettled:0,1"

        await set_faults(partner.url, hang_s=HELD_LONG_S, outage=False)
        assert not partner.answered.is_set(), "A's call must still be held for this test"
        await second._replayer.replay_all()
        # The give-back is answered (the partner's memory); the reservation meets 409,
        # still in progress: the deletion is not sent.
        assert [r.operation for r, _ in second.pending.queued_at(DECL)] == [
            Operation.RESERVE,
            Operation.DELETE,
        ]
        await asyncio.wait_for(partner.answered.wait(), HELD_LONG_S + 10)
        assert partner.store.balances(DOC)[0].reserved == Decimal(10)  # A's call, applied
        await second._replayer.replay_all()
        assert len(second.pending) == 0
    line = partner.store.balances(DOC)[0]
    assert (line.reserved, line.written_off, line.given_back) == (
        Decimal(0),
        Decimal(0),
        Decimal(10),
    ), "the deletion overtook the reservation A sent: held for ever"


def owner(tmp_path: Path, metadata: str, *, log_end: int) -> PartitionOwnership:
    """The partition's next owner, assigned it in group generation 5 from a commit at
    10 saying ``metadata``."""
    taking = PartitionOwnership(PendingOperations(tmp_path / "p.sqlite"))
    taking.assigned(
        {0},
        {0: metadata},
        committed={0: 10},
        log_starts={0: 0},
        log_ends={0: log_end},
        group_generation=5,
    )
    return taking


@pytest.mark.parametrize(
    "metadata",
    [
        "answered:10",  # a periodic commit (and every commit of the previous release)
        "answered:12",  # one made after answering 10 and 11, then a crash
        "answered:10;unsettled:0",
        # Handed over to a replica of generation 4, which read past it and died: the
        # marker is generation 3's, no hand-over to this owner.
        "answered:10;handed-over:3",
    ],
)
def test_after_a_crash_what_the_log_held_at_the_assignment_may_have_been_sent(
    tmp_path: Path, metadata: str
) -> None:
    taking = owner(tmp_path, metadata, log_end=13)
    assert [o for o in range(8, 16) if taking.sent_before(0, o)] == [10, 11, 12]


@pytest.mark.parametrize(
    ("metadata", "sent"),
    [
        ("answered:10;handed-over:4", []),
        ("answered:12;unsettled:1;handed-over:4", [11]),  # the one it names only
    ],
)
def test_after_a_hand_over_only_what_the_commit_names_was_sent(
    tmp_path: Path, metadata: str, sent: list[int]
) -> None:
    taking = owner(tmp_path, metadata, log_end=13)
    assert [o for o in range(8, 16) if taking.sent_before(0, o)] == sent
    assert taking.answered_before(0, 11) is metadata.startswith("answered:12")


def test_a_revocation_commit_says_it_hands_the_partition_over(tmp_path: Path) -> None:
    """A partition being revoked gets no further record handled, and what its calls
    under way left unsettled is named: its commit says so. A periodic commit does not."""
    pending = PendingOperations(tmp_path / "p.sqlite")
    try:
        taking = PartitionOwnership(pending)
        taking.assigned(
            {0}, {0: "answered:10"}, committed={0: 10}, log_starts={0: 0}, group_generation=4
        )
        taking.handled({0: 12}, taking.generation)
        assert taking.commit_metadata(0) == "answered:12"
        pending.add(RESERVE, 0, 11)
        assert taking.commit_metadata(0) == "answered:12;unsettled:0"

        asyncio.run(taking.leaving({0}))
        assert taking.commit_metadata(0) == "answered:12;unsettled:0;handed-over:4"
        assert taking.to_commit() == {0: 11}
    finally:
        pending.close()


@pytest.mark.parametrize(
    ("handled", "said"), [(11, "answered:11"), (13, "answered:13;handed-over:4")]
)
def test_a_hand_over_by_an_owner_that_has_not_read_what_it_inherited_is_no_hand_over(
    tmp_path: Path, handled: int, said: str
) -> None:
    """B took the partition after a crash (records 10 to 12 may have been sent) and is
    revoked: having handled only 10, 11 and 12 may still be calls of A's, and its commit
    does not say "handed over" (the next owner takes them as sent); having read them all,
    it does."""
    pending = PendingOperations(tmp_path / "p.sqlite")
    try:
        taking = PartitionOwnership(pending)
        taking.assigned(
            {0},
            {0: "answered:10"},
            committed={0: 10},
            log_starts={0: 0},
            log_ends={0: 13},
            group_generation=4,
        )
        taking.handled({0: handled}, taking.generation)
        asyncio.run(taking.leaving({0}))
        assert taking.commit_metadata(0) == said
    finally:
        pending.close()


def test_a_commit_of_the_previous_release_reads_as_no_hand_over(tmp_path: Path) -> None:
    taking = owner(tmp_path, "answered:10;unsettled:1", log_end=12)
    assert taking.unsettled_at(0, 11)
    assert taking.sent_before(0, 10)
    assert taking.sent_before(0, 11)
    assert not taking.sent_before(0, 12)


@pytest.mark.parametrize(("generation", "trusted"), [(2, True), (3, False)])
async def test_the_revocation_commit_hands_over_to_the_next_generation_only(
    partner: WatchedPartner, tmp_path: Path, generation: int, trusted: bool
) -> None:
    """The runner's listener: A, assigned in generation 1, answers the reservation (the
    partner answers it at once) and is revoked: its commit says it handed the partition
    over in generation 1. B, assigned in generation 2, takes only what it names for
    sent; assigned in generation 3, someone owned the partition in between and may have
    died past it: what the log holds is taken for sent."""
    commits = {0: (10, "answered:10")}
    async with replica(tmp_path, partner, "a") as first:
        consumer = GroupConsumer(commits, log_end=11)
        rebalance = _Rebalance(first, consumer)
        await rebalance.on_partitions_assigned({P0})
        await handle(first, consumer, record(tmp_path, RESERVE, 10))
        assert not first.pending.has(DECL)  # answered, settled
        await rebalance.on_partitions_revoked({P0})
    assert commits == {0: (11, "answered:11;handed-over:1")}

    async with replica(tmp_path, partner, "b") as second:
        consumer = GroupConsumer(commits, log_end=13)  # two records appended since
        consumer._coordinator.generation = generation
        await _Rebalance(second, consumer).on_partitions_assigned({P0})
        maybe_sent = [o for o in range(9, 15) if second.ownership.sent_before(0, o)]
    assert maybe_sent == ([] if trusted else [11, 12])
