"""Operations met by an outage are replayed in each declaration's order; a definitive
answer leaves the queue, a declaration still failing blocks no other, and no newer
operation that changes the partner's ledger overtakes a queued one on its documents
(defect 7; stop 36), except a later version superseding a queued deletion (stop 36, G7:
tests/unit/test_a_stuck_queue_head_does_not_keep_later_versions_degraded.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaTimeoutError

from adapters.base.pending import PendingOperations
from adapters.base.replay import Replayer
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from gun_contract.model.verdicts import Verdict
from tests.adapter_fixtures import PartnerAnsweringByRule, partner_request

R1 = "26FR000690I0000501"
R2 = "26FR000690I0000502"
DOC = "CHEDP.FR.2026.0001234"
OTHER_DOC = "CHEDP.FR.2026.0009999"


def down(request: AuthorityRequest) -> Verdict:
    return Verdict.UNAVAILABLE


def op(
    operation: Operation, reference: str = R1, version: int = 1, document: str = DOC
) -> AuthorityRequest:
    return partner_request(
        operation, reference=reference, version=version, document=document, quantity=None
    )


@pytest.fixture
async def pending(tmp_path: Path) -> AsyncIterator[PendingOperations]:
    queue = PendingOperations(tmp_path / "pending.sqlite")
    yield queue
    queue.close()


@pytest.fixture
def partner() -> PartnerAnsweringByRule:
    return PartnerAnsweringByRule()


@pytest.fixture
def published() -> list[tuple[str, Verdict]]:
    return []


@pytest.fixture
def replayer(
    pending: PendingOperations,
    partner: PartnerAnsweringByRule,
    published: list[tuple[str, Verdict]],
) -> Replayer:
    async def publish(
        request: AuthorityRequest, answers: tuple[DocumentAnswer, ...], partition: int | None
    ) -> None:
        published.append((request.request_id, answers[0].verdict))

    return Replayer(pending, partner, publish)


def queued(pending: PendingOperations) -> list[str]:
    return [r.request_id for ref in pending.references() for r in pending.queued(ref)]


async def test_the_queue_keeps_each_declarations_order_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    first = PendingOperations(tmp_path / "p.sqlite")
    for request in (op(Operation.DELETE), op(Operation.WRITE_OFF, R2), op(Operation.WRITE_OFF)):
        first.add(request)
    first.add(op(Operation.DELETE))  # a redelivery keeps its first place
    first.close()
    again = PendingOperations(tmp_path / "p.sqlite")
    assert again.references() == [R1, R2]
    assert [r.operation for r in again.queued(R1)] == [Operation.DELETE, Operation.WRITE_OFF]
    assert len(again) == 3
    again.close()


def test_a_queue_written_before_references_were_kept_is_read(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE pending (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " request_id TEXT UNIQUE NOT NULL, request TEXT NOT NULL)"
    )
    request = op(Operation.WRITE_OFF, R2)
    old.execute(
        "INSERT INTO pending (request_id, request) VALUES (?, ?)",
        (request.request_id, request.model_dump_json()),
    )
    old.commit()
    old.close()
    queue = PendingOperations(path)
    assert queue.queued(R2) == [request]
    queue.close()


async def test_replay_keeps_each_declarations_order(
    pending: PendingOperations, partner: PartnerAnsweringByRule, replayer: Replayer
) -> None:
    pending.add(op(Operation.DELETE, version=1))
    pending.add(op(Operation.WRITE_OFF, R2))
    pending.add(op(Operation.WRITE_OFF, version=2))
    await replayer.replay_all()
    r1 = [request for request in partner.asked if request.startswith(R1)]
    assert r1 == [op(Operation.DELETE).request_id, op(Operation.WRITE_OFF, version=2).request_id]
    assert len(pending) == 0


async def test_a_definitive_answer_leaves_the_queue_and_the_next_one_goes_on(
    pending: PendingOperations,
    partner: PartnerAnsweringByRule,
    replayer: Replayer,
    published: list[tuple[str, Verdict]],
) -> None:
    refused = op(Operation.WRITE_OFF, version=1)
    after = op(Operation.DELETE, version=2)
    pending.add(refused)
    pending.add(after)
    partner.rule = lambda r: (
        Verdict.MISMATCH if r.operation is Operation.WRITE_OFF else Verdict.VALID
    )
    await replayer.replay_all()
    assert published == [
        (refused.request_id, Verdict.MISMATCH),  # answered, and never asked again
        (after.request_id, Verdict.VALID),
    ]
    assert len(pending) == 0


async def test_a_declaration_still_failing_blocks_no_other(
    pending: PendingOperations,
    partner: PartnerAnsweringByRule,
    replayer: Replayer,
    published: list[tuple[str, Verdict]],
) -> None:
    pending.add(op(Operation.DELETE, R1))
    pending.add(op(Operation.WRITE_OFF, R1, version=2))
    pending.add(op(Operation.WRITE_OFF, R2))
    partner.rule = lambda r: Verdict.UNAVAILABLE if r.reference == R1 else Verdict.VALID
    await replayer.replay_all()
    assert published == [(op(Operation.WRITE_OFF, R2).request_id, Verdict.VALID)]
    # R1's head failed: its second operation was not tried out of order.
    assert op(Operation.WRITE_OFF, R1, version=2).request_id not in partner.asked
    assert queued(pending) == [
        op(Operation.DELETE, R1).request_id,
        op(Operation.WRITE_OFF, R1, version=2).request_id,
    ]


async def test_a_new_request_first_replays_what_its_declaration_has_queued(
    pending: PendingOperations,
    partner: PartnerAnsweringByRule,
    replayer: Replayer,
    published: list[tuple[str, Verdict]],
) -> None:
    pending.add(op(Operation.DELETE, version=1))
    answers = await replayer.ask(op(Operation.RESERVE, version=2))
    assert partner.asked == [
        op(Operation.DELETE, version=1).request_id,
        op(Operation.RESERVE, version=2).request_id,
    ]
    assert published == [(op(Operation.DELETE, version=1).request_id, Verdict.VALID)]
    assert [a.verdict for a in answers] == [Verdict.VALID]
    assert len(pending) == 0


async def test_a_follow_up_waits_behind_its_declarations_queued_operation(
    pending: PendingOperations, partner: PartnerAnsweringByRule, replayer: Replayer
) -> None:
    pending.add(op(Operation.WRITE_OFF, version=1))
    partner.rule = down
    answers = await replayer.ask(op(Operation.GIVE_BACK, version=2))
    assert [a.verdict for a in answers] == [Verdict.UNAVAILABLE]
    assert answers[0].detail is not None
    assert "queued" in answers[0].detail
    assert partner.asked == [op(Operation.WRITE_OFF).request_id]  # never out of order
    assert queued(pending) == [
        op(Operation.WRITE_OFF, version=1).request_id,
        op(Operation.GIVE_BACK, version=2).request_id,
    ]


async def test_an_operation_that_met_a_down_partner_is_queued(
    pending: PendingOperations, partner: PartnerAnsweringByRule, replayer: Replayer
) -> None:
    partner.rule = down
    for operation in Operation:
        await replayer.ask(op(operation, R2))
    assert [r.operation for r in pending.queued(R2)] == [
        Operation.WRITE_OFF,
        Operation.DELETE,
        Operation.GIVE_BACK,
    ]  # checks and reservations are not replayed: the hub goes to degraded mode


async def test_a_reservation_never_overtakes_its_declarations_queued_write_off(
    pending: PendingOperations,
    partner: PartnerAnsweringByRule,
    replayer: Replayer,
    published: list[tuple[str, Verdict]],
) -> None:
    """v1 was released and its write-off met the outage (queued); a LODGED v2 of the same
    declaration arrives while the partner is flaky: it still fails the write-off but would
    take v2's reservation. The reservation is not sent ahead of the write-off (answered
    UNAVAILABLE: degraded mode); the write-off stays queued, and is applied and answered
    when the partner is back.

    Found by review, stop 36 (D9): the reservation went to the partner, then the queued
    write-off, whose documents it restated, was dropped without an answer as superseded:
    the quantity of goods that had left under v1 was never written off (and a deletion
    of v2 would have given it back to the document)."""
    write_off = op(Operation.WRITE_OFF, version=1)
    pending.add(write_off)
    partner.rule = lambda r: (
        Verdict.VALID if r.operation is Operation.RESERVE else Verdict.UNAVAILABLE
    )
    answers = await replayer.ask(op(Operation.RESERVE, version=2))
    assert [a.verdict for a in answers] == [Verdict.UNAVAILABLE]
    assert answers[0].detail is not None
    assert "queued" in answers[0].detail
    assert partner.asked == [write_off.request_id]  # the reservation never went out
    assert queued(pending) == [write_off.request_id]  # nor is it queued: never replayed
    partner.rule = lambda r: Verdict.VALID
    await replayer.replay_all()
    assert published == [(write_off.request_id, Verdict.VALID)]
    assert len(pending) == 0


async def test_a_reservation_supersedes_only_the_queued_deletion_of_its_documents(
    pending: PendingOperations,
    partner: PartnerAnsweringByRule,
    replayer: Replayer,
    published: list[tuple[str, Verdict]],
) -> None:
    """v1's deletions queued in an outage, v2's reservation of one of the documents read
    while the partner still fails them: v2 is sent (it restates the position on its
    document), v1's deletion of that document is answered STALE, never dropped
    unanswered, and v1's deletion of the other document stays queued until it goes
    through. Found by review, stop 36: v2's reservation went out and v1's deletion of its
    document was dropped unanswered; then (G7) v2 was held back, degraded, for as long as
    the partner failed the deletions (tests/unit/test_a_stuck_queue_head_...py)."""
    on_doc = op(Operation.DELETE, version=1)
    elsewhere = op(Operation.DELETE, version=1, document=OTHER_DOC)
    pending.add(on_doc)
    pending.add(elsewhere)
    partner.rule = lambda r: (
        Verdict.VALID if r.operation is Operation.RESERVE else Verdict.UNAVAILABLE
    )
    answers = await replayer.ask(op(Operation.RESERVE, version=2))
    assert [a.verdict for a in answers] == [Verdict.VALID]
    assert published == [(on_doc.request_id, Verdict.MISMATCH)]  # STALE: superseded
    assert queued(pending) == [elsewhere.request_id]
    partner.rule = lambda r: Verdict.VALID
    await replayer.replay_all()
    assert published[1:] == [(elsewhere.request_id, Verdict.VALID)]
    assert queued(pending) == []


async def test_a_check_changes_nothing_and_is_asked_while_the_queue_waits(
    pending: PendingOperations, partner: PartnerAnsweringByRule, replayer: Replayer
) -> None:
    """A check reads and never mutates: the order of the partner's ledger does not
    depend on it, so it is asked even while its declaration's queue waits."""
    write_off = op(Operation.WRITE_OFF, version=1)
    pending.add(write_off)
    partner.rule = lambda r: (
        Verdict.VALID if r.operation is Operation.CHECK else Verdict.UNAVAILABLE
    )
    answers = await replayer.ask(op(Operation.CHECK, version=2))
    assert [a.verdict for a in answers] == [Verdict.VALID]
    assert queued(pending) == [write_off.request_id]


async def test_a_stale_version_answer_on_replay_ends_the_operation(
    pending: PendingOperations,
    partner: PartnerAnsweringByRule,
    replayer: Replayer,
    published: list[tuple[str, Verdict]],
) -> None:
    pending.add(op(Operation.DELETE, version=1))
    partner.rule = lambda r: Verdict.MISMATCH  # what STALE_VERSION maps to
    await replayer.replay_all()
    assert published == [(op(Operation.DELETE, version=1).request_id, Verdict.MISMATCH)]
    assert len(pending) == 0


async def test_a_replay_whose_answer_cannot_be_published_queues_the_live_operation(
    pending: PendingOperations, partner: PartnerAnsweringByRule
) -> None:
    """A queued write-off is replayed as a give-back of its declaration arrives, and the
    broker does not take the replayed answer (a leader election on the responses topic):
    the give-back is queued behind it, answered UNAVAILABLE, and both go at the next round.
    Stop 30, found by review (this test first): the error escaped, the give-back was
    dead-lettered as unhandled and its offset committed: never sent to the partner."""
    failures = [KafkaTimeoutError("the responses topic has no leader")]
    published: list[str] = []

    async def publish(
        request: AuthorityRequest, answers: tuple[DocumentAnswer, ...], partition: int | None
    ) -> None:
        if failures:
            raise failures.pop()
        published.append(request.request_id)

    replayer = Replayer(pending, partner, publish)
    write_off, give_back = op(Operation.WRITE_OFF), op(Operation.GIVE_BACK)
    pending.add(write_off, partition=0, offset=3)
    answers = await replayer.ask(give_back, partition=0, offset=9)
    assert [a.verdict for a in answers] == [Verdict.UNAVAILABLE]
    assert queued(pending) == [write_off.request_id, give_back.request_id]
    await replayer.replay_all()
    assert published == [write_off.request_id, give_back.request_id]
    assert queued(pending) == []
