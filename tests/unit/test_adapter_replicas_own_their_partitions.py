"""Adapter replicas keep the partner ledger exact (issue 12): the request log, not a
replica's SQLite file, is the durable copy of what a down partner has not taken yet.

* A replica commits a request partition no further than its oldest pending operation
  (the low watermark), so whoever owns the partition next reads that operation again.
* A replica that loses a partition forgets its pending operations there, once the records
  it was handling are done, and replays none of them any more: the next owner reads them
  again from the committed offset and replays them in the declaration's order.
* Each replica has a pending file of its own: a second process on the same file refuses
  to start.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.base.ownership import PartitionOwnership
from adapters.base.pending import PendingOperations, PendingQueueInUse, pending_path
from adapters.base.replay import Replayer
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from gun_contract.model.verdicts import Verdict
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import SecuritySettings, Settings
from tests.adapter_fixtures import PartnerAnsweringByRule, adapter_runner
from tests.unit.test_adapter_pending_replay import R1, R2, down, op
from tests.unit.test_state_pending_queue import TOPICS

# Every partition's log still holds every request (retention deleted nothing yet): a row
# forgotten is read again by the partition's owner. Otherwise, see
# test_adapter_pending_operations_outlive_the_request_log.py.
IN_THE_LOG = dict.fromkeys(range(8), 0)


@pytest.fixture
async def pending(tmp_path: Path) -> AsyncIterator[PendingOperations]:
    queue = PendingOperations(tmp_path / "pending.sqlite")
    yield queue
    queue.close()


@pytest.fixture
def ownership(pending: PendingOperations) -> PartitionOwnership:
    return PartitionOwnership(pending)


# -- the commit rule --------------------------------------------------------------------


def test_a_partition_is_committed_no_further_than_its_oldest_pending_operation(
    pending: PendingOperations, ownership: PartitionOwnership
) -> None:
    ownership.assigned({0, 1})
    # Partition 0: the DELETE at offset 5 met a down partner; 6 to 10 were answered.
    pending.add(op(Operation.DELETE), partition=0, offset=5)
    ownership.handled({0: 11, 1: 8}, ownership.generation)
    assert ownership.to_commit() == {0: 5, 1: 8}
    ownership.committed({0: 5, 1: 8})
    assert ownership.to_commit() == {}  # nothing new: no commit request at all

    # A later operation of the same partition queued behind it holds nothing further back
    # (the commit is made again only to say how far the replica answered, below).
    pending.add(op(Operation.WRITE_OFF, R2), partition=0, offset=9)
    ownership.handled({0: 14}, ownership.generation)
    assert ownership.to_commit() == {0: 5}
    ownership.committed({0: 5})

    # The partner took the DELETE: the partition may be committed up to the WRITE_OFF, and
    # past everything once that one is replayed too (no new record needed for it).
    pending.done(op(Operation.DELETE))
    assert ownership.to_commit() == {0: 9}
    ownership.committed({0: 9})
    pending.done(op(Operation.WRITE_OFF, R2))
    assert ownership.to_commit() == {0: 14}


def test_operations_queued_without_an_offset_hold_no_commit(
    pending: PendingOperations, ownership: PartitionOwnership
) -> None:
    """Rows a queue kept before offsets were (or that a test adds by hand) cannot say
    where they were read: they are replayed as before and never hold a partition."""
    ownership.assigned({0})
    pending.add(op(Operation.DELETE), partition=0)
    ownership.handled({0: 3}, ownership.generation)
    assert ownership.to_commit() == {0: 3}


async def test_a_batch_cut_by_a_rebalance_commits_nothing(
    pending: PendingOperations, ownership: PartitionOwnership
) -> None:
    ownership.assigned({0, 1})
    began = ownership.generation
    await ownership.revoked({0, 1})
    ownership.assigned({1})
    # The batch read before the rebalance finishes now: its offsets say nothing of what
    # was queued and forgotten meanwhile, and partition 1 is read again from the commit.
    ownership.handled({0: 20, 1: 20}, began)
    assert ownership.to_commit() == {}
    ownership.handled({1: 4}, ownership.generation)
    assert ownership.to_commit() == {1: 4}


def test_a_commit_never_goes_back(
    pending: PendingOperations, ownership: PartitionOwnership
) -> None:
    ownership.assigned({0})
    ownership.handled({0: 10}, ownership.generation)
    ownership.committed({0: 10})
    ownership.handled({0: 7}, ownership.generation)  # an older batch finishing late
    assert ownership.to_commit() == {}


# -- forgetting on revoke ---------------------------------------------------------------


async def test_a_revoked_partitions_pending_operations_are_forgotten(
    pending: PendingOperations, ownership: PartitionOwnership
) -> None:
    ownership.assigned({0, 1})
    pending.add(op(Operation.DELETE, R1), partition=0, offset=5)
    pending.add(op(Operation.WRITE_OFF, R2), partition=1, offset=2)
    pending.add(op(Operation.GIVE_BACK, R1, version=3), partition=0)  # kept before offsets
    ownership.handled({0: 9, 1: 9}, ownership.generation)

    await ownership.revoked({0}, IN_THE_LOG)

    assert not ownership.owns(0)
    assert ownership.owns(1)
    assert [r.request_id for r in pending.queued(R1)] == [
        op(Operation.GIVE_BACK, R1, version=3).request_id
    ]
    assert [r.request_id for r in pending.queued(R2)] == [op(Operation.WRITE_OFF, R2).request_id]
    assert ownership.to_commit() == {1: 2}  # partition 0 is someone else's to commit now


async def test_revoking_waits_for_the_records_in_flight_before_forgetting(
    pending: PendingOperations, ownership: PartitionOwnership
) -> None:
    ownership.assigned({0})
    handling = ownership.handling()
    await handling.__aenter__()
    revoking = asyncio.create_task(ownership.revoked({0}, IN_THE_LOG))
    await asyncio.sleep(0)  # let the revocation start: it must now wait for the batch
    assert not ownership.owns(0)  # the batch takes no further record of partition 0
    # The record in flight met a down partner and queued its operation...
    pending.add(op(Operation.DELETE), partition=0, offset=7)
    assert not revoking.done()
    await handling.__aexit__(None, None, None)
    await revoking
    # ...which is forgotten with the rest: the partition's next owner reads it again.
    assert len(pending) == 0


async def test_no_record_is_handled_between_a_revocation_and_the_next_assignment(
    ownership: PartitionOwnership,
) -> None:
    """aiokafka fetches newly assigned partitions while its listener still runs: the
    runner waits until the assignment is taken in (queue forgotten, marks read)."""
    ownership.assigned({0})
    await asyncio.wait_for(ownership.settled(), 1)
    await ownership.revoked({0})
    waiting = asyncio.create_task(ownership.settled())
    await asyncio.sleep(0)
    assert not waiting.done()
    ownership.assigned({0, 1}, {0: "answered:4"})
    await asyncio.wait_for(waiting, 1)
    assert ownership.answered_before(0, 3)


async def test_an_assignment_forgets_what_an_earlier_term_left_queued(
    pending: PendingOperations, ownership: PartitionOwnership
) -> None:
    """A replica killed with operations queued finds them on restart; whoever owns their
    partitions now reads them again from the commit, so none is replayed from the file."""
    pending.add(op(Operation.DELETE, R1), partition=0, offset=5)
    pending.add(op(Operation.WRITE_OFF, R2), partition=3, offset=1)
    ownership.assigned({0}, log_starts=IN_THE_LOG)
    assert len(pending) == 0


async def test_a_replay_round_replays_nothing_of_a_partition_revoked_meanwhile(
    pending: PendingOperations, ownership: PartitionOwnership
) -> None:
    partner = PartnerAnsweringByRule()
    partner.rule = down
    answered: list[str] = []

    async def publish(
        request: AuthorityRequest, answers: tuple[DocumentAnswer, ...], partition: int | None
    ) -> None:
        answered.append(request.request_id)

    replayer = Replayer(pending, partner, publish)
    ownership.assigned({0})
    first, second = op(Operation.DELETE, version=1), op(Operation.WRITE_OFF, version=2)
    pending.add(first, partition=0, offset=3)
    pending.add(second, partition=0, offset=4)

    # The partner is back, and the first replay call is on its way when the partition goes.
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_answer(request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        partner.asked.append(request.request_id)
        entered.set()
        await release.wait()
        return (
            DocumentAnswer(
                goods_item=1,
                code="N853",
                reference=request.items[0].documents[0].reference,
                verdict=Verdict.VALID,
            ),
        )

    partner.answer = slow_answer  # type: ignore[method-assign]
    round_ = asyncio.create_task(replayer.replay_all())
    await entered.wait()
    await ownership.revoked({0}, IN_THE_LOG)
    release.set()
    await round_

    # The call on its way ends (the partner takes an idempotency key once); the next
    # operation is left to the partition's next owner, which sends it after the first.
    assert partner.asked == [first.request_id]
    assert second.request_id not in answered
    assert len(pending) == 0


# -- one file per replica ---------------------------------------------------------------


def test_each_replica_has_a_pending_file_of_its_own(tmp_path: Path) -> None:
    assert pending_path(tmp_path, "gun", "dgal", "") == tmp_path / "gun-dgal-pending.sqlite"
    assert pending_path(tmp_path, "gun", "dgal", "b") == tmp_path / "gun-dgal-b-pending.sqlite"


def test_a_second_process_on_the_same_pending_file_refuses_to_start(tmp_path: Path) -> None:
    first = PendingOperations(tmp_path / "gun-dgal-pending.sqlite")
    with pytest.raises(PendingQueueInUse, match=r"adapter\.replica_id"):
        PendingOperations(tmp_path / "gun-dgal-pending.sqlite")
    first.close()
    PendingOperations(tmp_path / "gun-dgal-pending.sqlite").close()  # free once closed


def test_queued_operations_keep_their_offset_across_a_restart(tmp_path: Path) -> None:
    first = PendingOperations(tmp_path / "p.sqlite")
    first.add(op(Operation.DELETE, R1), partition=2, offset=41)
    first.add(op(Operation.DELETE, R1), partition=2, offset=57)  # read again: first place
    first.close()
    again = PendingOperations(tmp_path / "p.sqlite")
    assert again.oldest_offsets() == {2: 41}
    again.close()


# -- what the previous owner answered ---------------------------------------------------


def test_a_commit_says_how_far_its_replica_answered(
    pending: PendingOperations, ownership: PartitionOwnership
) -> None:
    ownership.assigned({0})
    pending.add(op(Operation.DELETE), partition=0, offset=5)
    ownership.handled({0: 11}, ownership.generation)
    assert ownership.to_commit() == {0: 5}
    assert ownership.commit_metadata(0) == "answered:11"
    ownership.committed({0: 5})
    # Records answered further: the same offset is committed again, with the new mark.
    ownership.handled({0: 15}, ownership.generation)
    assert ownership.to_commit() == {0: 5}
    assert ownership.commit_metadata(0) == "answered:15"


def test_the_next_owner_asks_again_only_what_its_predecessor_did_not_answer(
    ownership: PartitionOwnership,
) -> None:
    """Offsets 5 to 10 of partition 0 were answered by the replica that committed 5 (the
    DELETE at 5 was still pending). The next owner asks the partner again the follow-ups
    among them, never a reservation or check: one answered UNAVAILABLE in the outage and
    applied now would hold quantities its declaration's follow-up, already answered,
    never frees."""
    ownership.assigned(
        {0, 1, 2},
        {0: "answered:11", 1: "", 2: "something else"},  # older commits: no mark
    )
    assert [o for o in range(3, 13) if ownership.answered_before(0, o)] == list(range(3, 11))
    assert not ownership.answered_before(1, 0)
    assert not ownership.answered_before(2, 0)
    assert not ownership.answered_before(3, 0)  # not ours: nothing known


def test_a_commit_never_lowers_the_mark_its_replica_inherited(
    ownership: PartitionOwnership,
) -> None:
    """The replica that committed partition 0 at 5 had answered up to 11 (a DELETE at 5
    still queued). Its successor, having handled up to 6 so far, commits: the mark stays
    11. Stop 30, found by review (this test first): it said "answered:6", and the next
    owner after another rebalance asked the partner again the reservations between 6 and
    11 answered UNAVAILABLE in the outage, applied now, while their deletions had already
    been answered "nothing to delete": quantities held for ever."""
    ownership.assigned({0}, {0: "answered:11"})
    ownership.handled({0: 6}, ownership.generation)
    assert ownership.commit_metadata(0) == "answered:11"
    ownership.handled({0: 15}, ownership.generation)
    assert ownership.commit_metadata(0) == "answered:15"


async def test_a_replica_whose_assignment_failed_stops_instead_of_waiting_for_ever(
    tmp_path: Path,
) -> None:
    """Taking an assignment in failed (its queue file unwritable): the replica stops, and
    a batch fetched meanwhile is not handled. Stop 30, found by review (this test first):
    the batch waited for the assignment for ever, and the poll loop with it; the replica
    kept its partitions in the group, answering nothing."""
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    settings = Settings(security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / "state"))
    runner = adapter_runner("dga", settings, TOPICS)
    await runner.ownership.revoked({0})  # the assignment after it is never taken in
    batch = asyncio.create_task(runner._process({}, None, None))
    await asyncio.sleep(0)
    assert not batch.done()
    runner.stop()  # what the failed assignment does
    await asyncio.wait_for(batch, 5)
