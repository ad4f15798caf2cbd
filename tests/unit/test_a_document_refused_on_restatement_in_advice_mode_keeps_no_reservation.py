"""A document whose restatement the partner refused keeps the earlier version's
reservation at the partner; a release in advice mode leaves it reserved for ever.

``gun_hub/domain/lifecycle.py`` (``_followed_up``): a RELEASE over an advisory refusal
(rollout advice mode) writes off every reserving document but the refused ones, on the
ground that "the partner reserved nothing for the refused document". That holds for a
first version only. A reservation restates a position (a PUT): the partner that refuses
a version's restatement (``05``, the balance is short) changes nothing, so what an
earlier version reserved there is still held (``partner_sim/store.py``, ``reserve``:
the refusal returns before the holdings are replaced). The hub neither writes it off nor
deletes it; the later stages follow nothing of it up either (an invalidation gives back
what was written off, ``held_reservations`` of a released case is empty): reserved for
ever on the certificate, for a declaration the hub decided released with that document
refused.

Sequence (an amendment arriving before the first version is decided):
1. v1 quotes the certificate, 100 KGM; the partner reserves it (its answer is late);
2. v2 restates it at 200 KGM; 150 are left: refused ``05`` (QUANTITY_INSUFFICIENT),
   advisory: v2 is RELEASED, v1 REFUSED (superseded);
3. nothing is sent about the certificate: 100 KGM stay reserved at the partner.

Driven without Kafka: the hub's steps and the adapters' real partner client against the
partner simulator. Found by review (exactness of the quantity ledger).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from decimal import Decimal
from pathlib import Path

from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import AuthorityRequest, AuthorityResponse
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.rollout import RolloutMode
from gun_hub.domain.routing import RoutingTable
from tests.builders import declaration_xml, document, goods_item
from tests.partner_fixtures import partner_client, running_partner
from tests.unit.test_pipeline import SOURCE, Hub
from tests.unit.test_rollout_modes import OFFICE, setting

REF = "26FR000690I0000012"
DOC = "CHEDP.FR.2026.0001234"


def lodged(version: int, quantity: str, stage: Stage = Stage.LODGED) -> bytes:
    return declaration_xml(
        version=version,
        stage=stage,
        items=(goods_item(1, (document("N853", DOC, 1, quantity, "KGM"),)),),
    )


def requests_of(hub: Hub, outbox: Effects, authority: str = "dgal") -> list[AuthorityRequest]:
    envelope = hub.envelope(authority)
    topic = hub.topics.requests(authority)
    return [
        AuthorityRequest.model_validate_json(envelope.open(r.value, topic=topic).payload)
        for r in outbox.to(topic)
    ]


async def settle(hub: Hub, url: str, *outboxes: Effects, authority: str = "dgal") -> list[Effects]:
    """Every ``authority`` request of ``outboxes``, and of what the hub does with their
    answers (follow-ups), asked of the partner by the adapters' client in order, each
    answer handled by the hub. Returns every outbox handled (the given ones first)."""
    client = partner_client(url, retry_attempts=1)
    handled: list[Effects] = list(outboxes)
    waiting = deque(outboxes)
    try:
        while waiting:
            for request in requests_of(hub, waiting.popleft(), authority):
                answers = await client.answer(request)
                out = hub.respond(
                    AuthorityResponse(
                        request_id=request.request_id,
                        authority=authority,
                        operation=request.operation,
                        reference=request.reference,
                        version=request.version,
                        answers=answers,
                        answered_at=hub.now,
                    )
                )
                handled.append(out)
                waiting.append(out)
    finally:
        await client.close()
    return handled


async def test_a_release_over_an_advisory_refusal_leaves_nothing_of_an_earlier_version_reserved(
    routing_table: RoutingTable, keys_dir: Path, samples: Path, tmp_path: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    hub.rollout.apply(setting("dgal", RolloutMode.ADVICE, OFFICE))
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "ledger.db"
    ) as sim:
        # Another declaration holds all but 150 KGM of the line.
        [line] = [b for b in sim.store.balances(DOC) if b.line == 1]
        sim.store.force(DOC, "26FR000690I0000999", {1: line.authorised - Decimal(150)})

        first = hub.intake.handle(lodged(1, "100"), SOURCE)
        # The partner reserves v1's 100 KGM; its answer reaches the hub late.
        client = partner_client(sim.url, retry_attempts=1)
        try:
            [reserve_v1] = requests_of(hub, first)
            late = await client.answer(reserve_v1)
        finally:
            await client.close()

        second = hub.intake.handle(lodged(2, "200"), dataclasses.replace(SOURCE, offset=1))
        handled = await settle(hub, sim.url, second)
        hub.respond(
            AuthorityResponse(
                request_id=reserve_v1.request_id,
                authority="dgal",
                operation=reserve_v1.operation,
                reference=REF,
                version=1,
                answers=late,
                answered_at=hub.now,
            )
        )
        decided = [d for out in handled for d in hub.decision_objects(out)]
        held = [p for p in sim.store.positions(DOC) if p.declaration == REF and p.line == 1]

    assert (REF, 2, Outcome.RELEASE) in [(d.reference, d.version, d.outcome) for d in decided]
    [v2] = [d for d in decided if d.version == 2]
    [result] = v2.documents
    assert result.verdict.is_refusal  # the hub says: the certificate was refused, not drawn on
    # Before: 100 KGM of v1 reserved, ACTIVE, for ever.
    assert [(p.reserved, p.written_off) for p in held] in ([], [(Decimal(0), Decimal(0))]), held
