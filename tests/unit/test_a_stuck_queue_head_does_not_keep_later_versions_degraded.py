"""An operation stuck at the head of its declaration's queue (the partner, otherwise up,
keeps failing that one call) does not keep the declaration's later versions degraded.

A queued deletion of an older version is superseded by a newer version's reservation or
deletion of the same documents once that one is applied: the stale deletion is answered
STALE (FOLLOW_UP_SUPERSEDED at the hub) and never sent again, and the partner's version
guard refuses any earlier attempt of it still under way. A queued write-off or give-back
(goods that left, goods given back) is never superseded: what would overtake it waits. A
stuck operation holds back only what concerns its own documents. Review stop 36, G7
(carried): a deletion the partner kept answering 500 had every later version of its
declaration answered UNAVAILABLE ("not sent: an earlier operation ... waits"), degraded,
for as long as it failed, though the partner answered every other call."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp import web

from adapters.base.pending import PendingOperations
from adapters.base.replay import STUCK_AFTER_S, Replayer, superseded_answers
from adapters.base.spec import PartnerPort
from gun_contract.model.exchange import (
    AuthorityRequest,
    AuthorityResponse,
    DocumentAnswer,
    Operation,
)
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from tests.adapter_fixtures import PartnerAnsweringByRule, Rule, partner_request
from tests.builders import declaration_xml
from tests.partner_fixtures import Handler, RunningPartner, partner_client, running_partner
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import REF, at, requests

DECL = "26FR000690I0000401"
DOC = "CHEDP.FR.2026.0001234"
OTHER_DOC = "CHEDP.FR.2026.0009999"


def op(
    operation: Operation,
    version: int,
    *documents: str,
    quantity: str | None = None,
) -> AuthorityRequest:
    """``operation`` of ``version`` of DECL quoting ``documents`` (DOC by default)."""
    first, *others = documents or (DOC,)
    request = partner_request(
        operation, reference=DECL, version=version, document=first, quantity=quantity
    )
    if not others:
        return request
    [item] = request.items
    more = tuple(d.model_copy(update={"reference": r}) for d in item.documents for r in others)
    return request.model_copy(
        update={"items": (item.model_copy(update={"documents": item.documents + more}),)}
    )


def failing_only(stuck: AuthorityRequest) -> Rule:
    """A partner that is up and fails one operation only."""
    return lambda r: Verdict.UNAVAILABLE if r.request_id == stuck.request_id else Verdict.VALID


Published = list[tuple[AuthorityRequest, tuple[DocumentAnswer, ...]]]


@pytest.fixture
async def pending(tmp_path: Path) -> AsyncIterator[PendingOperations]:
    queue = PendingOperations(tmp_path / "pending.sqlite")
    yield queue
    queue.close()


@pytest.fixture
def published() -> Published:
    return []


def replayer_of(
    pending: PendingOperations,
    partner: PartnerPort,
    published: Published,
    clock: Callable[[], float] = time.monotonic,
) -> Replayer:
    async def publish(
        request: AuthorityRequest, answers: tuple[DocumentAnswer, ...], _partition: int | None
    ) -> None:
        published.append((request, answers))

    return Replayer(pending, partner, publish, clock=clock)


def queued(pending: PendingOperations) -> list[str]:
    return [r.request_id for r in pending.queued(DECL)]


def verdicts(answers: tuple[DocumentAnswer, ...]) -> list[tuple[Verdict, str | None]]:
    return [(a.verdict, a.partner_code) for a in answers]


# -- on the partner simulator: what its administration's ledger says ------------------------


@pytest.fixture
async def simulator(
    samples: Path, tmp_path: Path
) -> AsyncIterator[tuple[RunningPartner, list[str]]]:
    """The simulator, answering 500 to every call of v1's deletion of DECL (and to nothing
    else); the list: the calls it received of that deletion."""
    stuck_key = op(Operation.DELETE, 1).request_id + "/"
    stuck_calls: list[str] = []

    @web.middleware
    async def fail_v1_deletion(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("Idempotency-Key", "").startswith(stuck_key):
            stuck_calls.append(request.method)
            return web.json_response({"error": "internal error"}, status=500)
        return await handler(request)

    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "ledger.db", [fail_v1_deletion]
    ) as running:
        yield running, stuck_calls


async def test_a_deletion_the_partner_keeps_failing_is_superseded_by_the_next_versions_reservation(
    simulator: tuple[RunningPartner, list[str]],
    pending: PendingOperations,
    published: Published,
) -> None:
    """v1 reserved 300 and was refused; its deletion gets 500 at every call. v2 (amended,
    200) is lodged: its reservation is sent, restates DECL's position on DOC (200 reserved,
    the document's ledger exact), and v1's deletion is answered STALE and never sent again;
    v3's reservation goes through as well."""
    partner, stuck_calls = simulator
    adapter = partner_client(partner.url, retry_attempts=1)
    replayer = replayer_of(pending, adapter, published)
    try:
        [reserved] = await adapter.answer(op(Operation.RESERVE, 1, quantity="300"))
        assert reserved.verdict is Verdict.VALID
        [deletion] = await replayer.ask(op(Operation.DELETE, 1), 0, 10)
        assert deletion.verdict is Verdict.UNAVAILABLE
        await replayer.replay_all()
        assert queued(pending) == [op(Operation.DELETE, 1).request_id]  # stuck at the head

        [v2] = await replayer.ask(op(Operation.RESERVE, 2, quantity="200"), 0, 11)
        calls_when_superseded = len(stuck_calls)
        await replayer.replay_all()
        [v3] = await replayer.ask(op(Operation.RESERVE, 3, quantity="250"), 0, 12)
        await replayer.replay_all()
    finally:
        await adapter.close()

    assert (v2.verdict, v2.partner_code) == (Verdict.VALID, None), v2.detail
    assert (v3.verdict, v3.partner_code) == (Verdict.VALID, None), v3.detail
    # v1's deletion: answered once, superseded, and never asked again after v2.
    [(request, answers)] = published
    assert request.request_id == op(Operation.DELETE, 1).request_id
    assert verdicts(answers) == [(Verdict.MISMATCH, "STALE")]
    assert answers[0].stale_version
    assert len(stuck_calls) == calls_when_superseded
    assert queued(pending) == []
    # The partner's ledger: DECL holds v3's position, nothing else, and v1 is refused.
    [line_1, _] = partner.store.balances(DOC)
    assert (line_1.reserved, line_1.written_off, line_1.given_back) == (
        Decimal(250),
        Decimal(0),
        Decimal(0),
    )
    assert {(p.declaration, p.version, p.state) for p in partner.store.positions(DOC)} == {
        (DECL, 3, "ACTIVE")
    }


# -- the rule, on a stand-in partner ----------------------------------------------------------


@pytest.mark.parametrize("stuck_operation", [Operation.WRITE_OFF, Operation.GIVE_BACK])
async def test_a_stuck_write_off_or_give_back_is_never_superseded(
    pending: PendingOperations, published: Published, stuck_operation: Operation
) -> None:
    """Goods left under v1 (or were given back): that must reach the partner's ledger,
    so nothing of a later version on its documents is sent ahead of it (stop 36)."""
    stuck = op(stuck_operation, 1)
    pending.add(stuck)
    partner = PartnerAnsweringByRule(failing_only(stuck), unavailable_detail="HTTP 500")
    replayer = replayer_of(pending, partner, published)
    [reserve] = await replayer.ask(op(Operation.RESERVE, 2, quantity="200"))
    [delete] = await replayer.ask(op(Operation.DELETE, 2))
    assert reserve.verdict is Verdict.UNAVAILABLE
    assert delete.verdict is Verdict.UNAVAILABLE
    assert partner.asked == [stuck.request_id] * 2  # tried again before each, nothing else
    assert published == []
    assert queued(pending) == [stuck.request_id, op(Operation.DELETE, 2).request_id]


async def test_a_newer_deletion_of_the_same_documents_supersedes_a_stuck_one(
    pending: PendingOperations, published: Published
) -> None:
    stuck = op(Operation.DELETE, 1)
    partner = PartnerAnsweringByRule(failing_only(stuck), unavailable_detail="HTTP 500")
    replayer = replayer_of(pending, partner, published)
    pending.add(stuck)
    [answer] = await replayer.ask(op(Operation.DELETE, 2))  # v2 cancelled
    assert answer.verdict is Verdict.VALID
    assert [(r.request_id, verdicts(a)) for r, a in published] == [
        (stuck.request_id, [(Verdict.MISMATCH, "STALE")])
    ]
    assert queued(pending) == []


async def test_queued_deletions_supersede_each_other_in_a_replay_round(
    pending: PendingOperations, published: Published
) -> None:
    """v1's and v2's deletions both met an outage; v1's keeps failing after it: v2's is
    applied in the replay round and ends v1's, answered STALE after v2's own answer."""
    stuck, newer = op(Operation.DELETE, 1), op(Operation.DELETE, 2)
    pending.add(stuck)
    pending.add(newer)
    partner = PartnerAnsweringByRule(failing_only(stuck), unavailable_detail="HTTP 500")
    await replayer_of(pending, partner, published).replay_all()
    assert [(r.request_id, verdicts(a)) for r, a in published] == [
        (newer.request_id, [(Verdict.VALID, None)]),
        (stuck.request_id, [(Verdict.MISMATCH, "STALE")]),
    ]
    assert queued(pending) == []


async def test_a_refused_reservation_does_not_supersede_the_stuck_deletion(
    pending: PendingOperations, published: Published
) -> None:
    """v2's reservation refused (quantity insufficient): v1's reservation may still be
    held at the partner, so its deletion stays queued, replayed until it ends."""
    stuck = op(Operation.DELETE, 1)
    pending.add(stuck)
    partner = PartnerAnsweringByRule(
        lambda r: (
            Verdict.UNAVAILABLE
            if r.request_id == stuck.request_id
            else Verdict.QUANTITY_INSUFFICIENT
        ),
        unavailable_detail="HTTP 500",
    )
    [answer] = await replayer_of(pending, partner, published).ask(
        op(Operation.RESERVE, 2, quantity="900")
    )
    assert answer.verdict is Verdict.QUANTITY_INSUFFICIENT  # asked, answered
    assert published == []
    assert queued(pending) == [stuck.request_id]


async def test_a_reservation_covering_part_of_a_stuck_deletion_waits(
    pending: PendingOperations, published: Published
) -> None:
    """v1's deletion of two documents, v2 reserving one of them: applied, v2 would not end
    v1's deletion of the other one, which must still reach the partner (and one answer
    speaks for the whole deletion): v2 waits, degraded, as before."""
    stuck = op(Operation.DELETE, 1, DOC, OTHER_DOC)
    pending.add(stuck)
    partner = PartnerAnsweringByRule(failing_only(stuck), unavailable_detail="HTTP 500")
    [answer] = await replayer_of(pending, partner, published).ask(
        op(Operation.RESERVE, 2, DOC, quantity="200")
    )
    assert answer.verdict is Verdict.UNAVAILABLE
    assert op(Operation.RESERVE, 2).request_id not in partner.asked
    assert queued(pending) == [stuck.request_id]


async def test_a_stuck_operation_holds_back_only_its_own_documents(
    pending: PendingOperations, published: Published
) -> None:
    """v1's write-off of OTHER_DOC keeps failing; v2's reservation of DOC concerns
    another ledger at the partner: it is sent. A deletion of OTHER_DOC still waits."""
    stuck = op(Operation.WRITE_OFF, 1, OTHER_DOC)
    pending.add(stuck)
    partner = PartnerAnsweringByRule(failing_only(stuck), unavailable_detail="HTTP 500")
    replayer = replayer_of(pending, partner, published)
    [reserved] = await replayer.ask(op(Operation.RESERVE, 2, DOC, quantity="200"))
    [deleted] = await replayer.ask(op(Operation.DELETE, 2, OTHER_DOC))
    assert reserved.verdict is Verdict.VALID
    assert deleted.verdict is Verdict.UNAVAILABLE
    assert queued(pending) == [stuck.request_id, op(Operation.DELETE, 2, OTHER_DOC).request_id]
    assert op(Operation.DELETE, 2, OTHER_DOC).request_id not in partner.asked


# -- what operations see -------------------------------------------------------------------


async def test_an_operation_failing_at_its_queue_head_is_measured_and_named(
    pending: PendingOperations, published: Published, caplog: pytest.LogCaptureFixture
) -> None:
    """How long the longest-failing queued operation has failed (the adapter's gauge),
    and one warning naming it once it has failed for longer than STUCK_AFTER_S."""
    now = [1000.0]
    stuck = op(Operation.WRITE_OFF, 1)
    pending.add(stuck)
    partner = PartnerAnsweringByRule(failing_only(stuck), unavailable_detail="HTTP 500")
    replayer = replayer_of(pending, partner, published, lambda: now[0])
    assert replayer.longest_failing_s() == 0.0
    await replayer.replay_all()
    now[0] += 30
    await replayer.replay_all()
    assert replayer.longest_failing_s() == 30.0
    with caplog.at_level(logging.WARNING, logger="adapters.base.replay"):
        now[0] += STUCK_AFTER_S
        await replayer.replay_all()
        now[0] += 2
        await replayer.replay_all()
    stuck_lines = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(stuck_lines) == 1, stuck_lines  # said once, not every round
    assert stuck.request_id in stuck_lines[0]
    partner.rule = lambda r: Verdict.VALID  # the partner takes it at last
    await replayer.replay_all()
    assert queued(pending) == []
    assert replayer.longest_failing_s() == 0.0


# -- what the hub records of the superseded deletion ----------------------------------------


def test_the_hub_records_the_superseded_deletion_as_superseded_and_keeps_v2(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """v1 refused (its DELETE sent), v2 lodged and released on its reservation; the
    adapter then answers v1's DELETE with the STALE it gives a superseded one: the hub
    records FOLLOW_UP_SUPERSEDED for v1 and changes nothing of v2's decision."""
    hub = Hub(routing_table, keys_dir)
    first = hub.intake.handle(declaration_xml(version=1), at(0))
    refused = hub.answer(first, "dgal", Verdict.QUANTITY_INSUFFICIENT)
    assert hub.decisions(refused) == [(REF, 1, Outcome.REFUSE)]
    [delete_v1] = requests(hub, refused)
    assert (delete_v1.operation, delete_v1.version) == (Operation.DELETE, 1)
    second = hub.intake.handle(declaration_xml(version=2), at(1))
    [reserve_v2] = requests(hub, second)
    decided = hub.respond(
        AuthorityResponse(
            request_id=reserve_v2.request_id,
            authority="dgal",
            operation=Operation.RESERVE,
            reference=REF,
            version=2,
            answers=tuple(
                DocumentAnswer(
                    goods_item=item.number,
                    code=d.code,
                    reference=d.reference,
                    verdict=Verdict.VALID,
                )
                for item in reserve_v2.items
                for d in item.documents
            ),
            answered_at=hub.now,
        )
    )
    assert hub.decisions(decided) == [(REF, 2, Outcome.RELEASE)]
    out = hub.respond(
        AuthorityResponse(
            request_id=delete_v1.request_id,
            authority="dgal",
            operation=Operation.DELETE,
            reference=REF,
            version=1,
            answers=superseded_answers(delete_v1, reserve_v2),
            answered_at=hub.now,
        )
    )
    assert [(s.version, s.kind) for s in hub.statuses(out)] == [
        (1, StatusKind.FOLLOW_UP_SUPERSEDED)
    ]
    assert hub.decisions(out) == []
    assert requests(hub, out) == []
