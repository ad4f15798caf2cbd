"""A reservation kept queued because the partner may still apply it holds back what
follows on the documents whose calls are unsettled only: a document its request quoted
whose call the partner answered is free, and a later version's reservation of it goes.

Found by review, stop 39-SF (SF4): v1 reserved C1 (10) and C2 (20); the partner held
C1's call in progress and answered C2's. v2 dropped C1 and raised C2 to 30: its
reservation of C2 was held back behind v1's queued reservation (which counted for both
documents), answered "not sent" (degraded mode), never restated; the release after
control wrote off v1's 20 of the 30 that left. Order is kept per document (the partner
keeps a declaration's position per document): nothing was in progress on C2."""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal
from pathlib import Path

from adapters.base.pending import PendingOperations
from adapters.base.replay import Replayer
from gun_contract.health import CircuitStatus
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from gun_contract.model.verdicts import Verdict
from tests.adapter_fixtures import partner_request

DECL = "26FR000690I0000801"
C1 = "CHEDP.FR.2026.0001234"
C2 = "CHEDP.FR.2026.0009999"


def op(operation: Operation, version: int, *quoted: tuple[str, str | None]) -> AuthorityRequest:
    """``operation`` of ``version`` quoting each (document, quantity) on one goods item."""
    (first, quantity), *others = quoted
    request = partner_request(
        operation, reference=DECL, version=version, document=first, quantity=quantity
    )
    [item] = request.items
    [document] = item.documents
    more = tuple(
        document.model_copy(update={"reference": r, "quantity": None if q is None else Decimal(q)})
        for r, q in others
    )
    return request.model_copy(
        update={"items": (item.model_copy(update={"documents": item.documents + more}),)}
    )


class HoldingPartner:
    """Holds v1's reservation call on C1 in progress (no answer: it may still apply it)
    until released; answers every other call VALID. Records what it is asked."""

    def __init__(self) -> None:
        self.holding = True
        self.asked: list[str] = []

    def _held(self, request: AuthorityRequest, document: str) -> bool:
        return (
            self.holding
            and request.operation is Operation.RESERVE
            and request.version == 1
            and document == C1
        )

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        self.asked.append(request.request_id)
        return tuple(
            DocumentAnswer(
                goods_item=item.number,
                code=d.code,
                reference=d.reference,
                verdict=Verdict.UNAVAILABLE if self._held(request, d.reference) else Verdict.VALID,
                detail="timed out" if self._held(request, d.reference) else None,
            )
            for item in request.items
            for d in item.documents
        )

    def may_still_apply(self, request: AuthorityRequest) -> bool:
        return any(self._held(request, d.reference) for i in request.items for d in i.documents)

    def sent_before(self, request: AuthorityRequest, accepted: Collection[int] = ()) -> None:
        return None

    def accepted_calls(self, request: AuthorityRequest) -> frozenset[int]:
        return frozenset()

    async def close(self) -> None:
        return None

    @property
    def circuit_state(self) -> CircuitStatus:
        return CircuitStatus.CLOSED


async def test_a_later_versions_reservation_of_a_document_whose_call_was_answered_goes(
    tmp_path: Path,
) -> None:
    partner = HoldingPartner()
    pending = PendingOperations(tmp_path / "pending.sqlite")
    published: list[tuple[str, str, Verdict]] = []

    async def publish(
        request: AuthorityRequest, answers: tuple[DocumentAnswer, ...], _: int | None
    ) -> None:
        published.extend((request.request_id, a.reference, a.verdict) for a in answers)

    replayer = Replayer(pending, partner, publish)
    v1 = op(Operation.RESERVE, 1, (C1, "10"), (C2, "20"))
    v2 = op(Operation.RESERVE, 2, (C2, "30"))
    v2_drops_c1 = op(Operation.DELETE, 2, (C1, None))
    try:
        answers = await replayer.ask(v1, 0, 10)
        assert {(a.reference, a.verdict) for a in answers} == {
            (C1, Verdict.UNAVAILABLE),
            (C2, Verdict.VALID),
        }
        assert [r.request_id for r in pending.queued(DECL)] == [v1.request_id]

        # v2's reservation of C2: nothing in progress on C2, so it is sent and applied.
        [c2] = await replayer.ask(v2, 0, 11)
        assert (c2.verdict, c2.detail) == (Verdict.VALID, None)
        assert v2.request_id in partner.asked

        # What follows on C1 still waits behind v1's call in progress there.
        [c1] = await replayer.ask(v2_drops_c1, 0, 12)
        assert c1.verdict is Verdict.UNAVAILABLE
        assert v2_drops_c1.request_id not in partner.asked
        assert [r.request_id for r in pending.queued(DECL)] == [
            v1.request_id,
            v2_drops_c1.request_id,
        ]

        partner.holding = False  # the partner answers v1's call on C1
        await replayer.replay_all()
        left = len(pending)
    finally:
        pending.close()
    assert published == [(v2_drops_c1.request_id, C1, Verdict.VALID)]
    assert left == 0
