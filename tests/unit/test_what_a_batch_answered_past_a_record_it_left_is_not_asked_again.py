"""Found by the review of stop 54:
a batch committed back to the first record it left (``left``) is read
again by the next owner from there, answered records of *other* declarations of the same
partition included, and the hand-over's ``answered:`` mark says only ``left``.

Partition 0 holds B's reservation (offset 0, a slow partner call during which the group
revokes the partition), B's deletion (offset 1, left: never asked), then A's reservation
(offset 2, answered UNAVAILABLE: the partner was down, not taken) and A's deletion
(offset 3, answered ``02`` "nothing to delete": VALID). Both of A's answers were sent
before the revocation. The hand-over commit goes back to offset 1 (right: B's deletion
was not asked), but its mark says "answered:1", so the next owner asks A's reservation
again as a first attempt: the partner, back, applies it, and A's deletion, asked again
under its key, gets the partner's remembered ``02``: held for a refused declaration for
ever (the shape of stop 45, brought back by ``left``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka.structs import ConsumerRecord

from adapters.base import load_adapter
from adapters.base.ownership import PartitionOwnership, _answered_also, _unsettled_offsets
from adapters.base.pending import PendingOperations
from adapters.base.runner import AdapterRunner, _Rebalance
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from gun_contract.model.verdicts import Verdict
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import SecuritySettings, Settings
from tests.adapter_fixtures import PartnerAnsweringByRule
from tests.conftest import envelope_of
from tests.unit.test_a_record_left_by_a_revocation_is_not_committed_past import request_read
from tests.unit.test_adapter_pending_operations_outlive_the_request_log import FakeCoordinator
from tests.unit.test_an_answer_leaves_as_soon_as_it_is_sealed import (
    P0,
    REQUESTS,
    Clock,
    GroupConsumer,
    StampingProducer,
)
from tests.unit.test_state_pending_queue import TOPICS, dga

A = "26FRREVIEWR1000002"
B = "26FRREVIEWR1000001"


def b_then_a(keys: Path) -> list[ConsumerRecord[bytes, bytes]]:
    """B's reservation and deletion, then A's, at offsets 0 to 3 of partition 0."""
    return [
        request_read(keys, dga(Operation.RESERVE, reference=B, version=1), 0),
        request_read(keys, dga(Operation.DELETE, reference=B, version=1), 1),
        request_read(keys, dga(Operation.RESERVE, reference=A, version=1), 2),
        request_read(keys, dga(Operation.DELETE, reference=A, version=1), 3),
    ]


def next_owner(tmp_path: Path, at: int, metadata: str, log_end: int = 4) -> PartitionOwnership:
    """Partition 0's owner of the next generation, assigned from the commit at ``at``."""
    pending = PendingOperations(tmp_path / "next.sqlite")
    try:
        owner = PartitionOwnership(pending)
        owner.assigned(
            {0},
            {0: metadata},
            committed={0: at},
            log_starts={0: 0},
            log_ends={0: log_end},
            group_generation=2,
        )
    finally:
        pending.close()
    return owner


class FirstOwnerPartner(PartnerAnsweringByRule):
    """Down for A's reservation (UNAVAILABLE, not taken); B's reservation is slow: the
    group revokes partition 0 while it runs, once A's two requests were answered."""

    def __init__(self) -> None:
        super().__init__(
            lambda r: (
                Verdict.UNAVAILABLE
                if (r.reference, r.operation) == (A, Operation.RESERVE)
                else Verdict.VALID
            )
        )
        self.runner: AdapterRunner | None = None
        self.a_answered = asyncio.Event()
        self.revocation: asyncio.Future[bool] | None = None

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        if (request.reference, request.operation) == (B, Operation.RESERVE):
            await asyncio.wait_for(self.a_answered.wait(), 5)
            assert self.runner is not None
            self.revocation = asyncio.ensure_future(self.runner.ownership.leaving({0}, 30))
            await asyncio.sleep(0)
        answers = await super().answer(request)
        if (request.reference, request.operation) == (A, Operation.DELETE):
            self.a_answered.set()
        return answers


def runner_for(
    tmp_path: Path, keys: Path, name: str, partner: PartnerAnsweringByRule
) -> AdapterRunner:
    settings = Settings(security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / name))
    return AdapterRunner(
        load_adapter("dga"), settings, TOPICS, envelope_of("dga", TOPICS, keys), partner
    )


async def test_a_hand_over_commit_back_at_a_left_record_does_not_reask_answered_reservations(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    records = b_then_a(keys)
    first_partner = FirstOwnerPartner()
    first = runner_for(tmp_path, keys, "first", first_partner)
    first_partner.runner = first
    second_partner = PartnerAnsweringByRule()  # the partner back: it applies what it is asked
    second = runner_for(tmp_path, keys, "second", second_partner)
    try:
        consumer = GroupConsumer()
        consumer.log_ends = {0: 4}
        producer = StampingProducer(Clock())
        first._producer = producer
        await _Rebalance(first, consumer).on_partitions_assigned({P0})
        await asyncio.wait_for(first._process({P0: records}, producer, consumer), 10)
        assert first_partner.revocation is not None
        await asyncio.wait_for(first_partner.revocation, 5)
        assert f"{A}/1/dga/RESERVE" in first_partner.asked, "A's reservation was asked"
        answered_by_first = [s for s in producer.sent if s["topic"] != REQUESTS]
        assert len(answered_by_first) >= 3, "A's two answers and B's reservation were sent"
        marks = first.ownership.to_commit()
        at = marks.get(0, 0)
        metadata = first.ownership.commit_metadata(0)
        assert at <= 1, "B's deletion (offset 1) was left: not committed past"

        # The next owner, one generation later, from that hand-over commit.
        next_consumer = GroupConsumer()
        next_consumer._coordinator = FakeCoordinator({0: (at, metadata)})
        next_consumer._coordinator.generation = 2
        next_consumer.log_ends = {0: 4}
        second._producer = producer
        await _Rebalance(second, next_consumer).on_partitions_assigned({P0})
        await asyncio.wait_for(second._process({P0: records[at:]}, producer, next_consumer), 10)
    finally:
        first.pending.close()
        second.pending.close()
    asked_again = [r for r in second_partner.asked if r == f"{A}/1/dga/RESERVE"]
    assert not asked_again, (
        f"the next owner, from the hand-over commit at {at} ({metadata!r}), asked A's "
        f"reservation again ({asked_again}), which the first owner had answered UNAVAILABLE "
        "and whose deletion it had answered: the partner applies it now, after its deletion "
        "(remembered '02' under its key): reserved for a refused declaration for ever"
    )


def test_the_records_answered_past_a_left_one_are_named_and_read_back(tmp_path: Path) -> None:
    """The commit's own words: ``answered-also:`` names them by distance from the
    ``answered:`` mark, before the hand-over; the next owner takes them for answered and
    the left record for not; its own commit names them again until it passes them."""
    pending = PendingOperations(tmp_path / "p.sqlite")
    try:
        first = PartitionOwnership(pending)
        first.assigned({0}, {0: "answered:0"}, committed={0: 0}, group_generation=1)
        first.handled({0: 1}, first.generation, {0: {0, 2, 3}})  # left 1, answered 2 and 3
        said = first.commit_metadata(0)
        assert said == "answered:1;answered-also:1,2", said
        # A replica of the previous release reads the unsettled part only: none here.
        assert _unsettled_offsets(said, 1) == frozenset()

        second = PartitionOwnership(pending)
        second.assigned({0}, {0: said}, committed={0: 1}, group_generation=2)
        assert [second.answered_before(0, o) for o in range(5)] == [True, False, True, True, False]
        assert second.commit_metadata(0) == "answered:1;answered-also:1,2"  # passed on
        second.handled({0: 2}, second.generation)  # the left record handled now
        assert second.commit_metadata(0) == "answered:2;answered-also:0,1"
        second.handled({0: 4}, second.generation)
        assert second.commit_metadata(0) == "answered:4"
    finally:
        pending.close()


def test_the_records_answered_past_a_left_one_fit_a_commits_metadata(tmp_path: Path) -> None:
    """Kafka refuses a commit whose metadata passes offset.metadata.max.bytes (4096): past
    what fits, the rest are left out (logged), never the commit. Every other record, so
    that no run of them (``d-e``, stop 57) names many at once."""
    pending = PendingOperations(tmp_path / "p.sqlite")
    try:
        ownership = PartitionOwnership(pending)
        ownership.assigned({0}, {0: "answered:0"}, committed={0: 0}, group_generation=1)
        ownership.handled({0: 0}, ownership.generation, {0: set(range(1, 40_000, 2))})
        said = ownership.commit_metadata(0)
    finally:
        pending.close()
    assert 3000 < len(said) <= 4096
    assert said.startswith("answered:0;answered-also:1,3,5,")


def test_a_run_of_records_answered_past_a_left_one_is_named_in_a_few_characters(
    tmp_path: Path,
) -> None:
    """Four polls answered ahead of a slow batch are 2,000 records in a row: one by one
    they overflowed the metadata, a third of them asked again (stop 57). When one by one
    they do not fit, the first are named one by one in the part a replica of the previous
    release reads, and the rest in runs (``d-e``) in a part of their own, which it skips."""
    pending = PendingOperations(tmp_path / "p.sqlite")
    try:
        ownership = PartitionOwnership(pending)
        ownership.assigned({0}, {0: "answered:0"}, committed={0: 0}, group_generation=1)
        ownership.handled({0: 0}, ownership.generation, {0: {1, 2, 5, *range(7, 2007)}})
        said = ownership.commit_metadata(0)
    finally:
        pending.close()
    assert said.startswith("answered:0;answered-also:1,2,5,7,8,9,")
    assert said.endswith("-2006")
    assert ";answered-runs:" in said
    assert len(said) <= 4096
    # Read back by the next owner as every one of them.
    assert _answered_also(said) == {1, 2, 5, *range(7, 2007)}
    # A forged run of billions is no set to build: read as far as a commit names at most.
    assert len(_answered_also("answered:0;answered-runs:0-9999999999")) == 100_000
