"""Goods released after a control decided in degraded mode are written off at the partner.

A declaration lodged while its partner is down is decided CONTROL_DOCUMENTARY
[DEGRADED_MODE] and its reservation never reaches the partner (a 503 is "not taken": not
queued, ADR 0014's stop-39 addendum). The office then releases the goods
(RELEASED_AFTER_CONTROL) and the hub writes off what the control kept. Found by the
review of stop 52: the partner, holding nothing, answered ``02``, the hub recorded
FOLLOW_UP_FAILED and released, and nothing was written off: the certificate kept the
quantity that left. The adapter now reserves, then writes off, under the release's
version (adapters/base/certex.py ``_write_off_what_was_never_reserved``).

Contract and domain: "a partner that is down puts its declarations in degraded mode
(documentary control), and the write-off is replayed when it is back".

Driven without Kafka: the hub's steps (tests/unit/test_pipeline.py's ``Hub``) and the
adapters' real partner client against the partner simulator.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import AuthorityRequest, AuthorityResponse, Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from tests.adapter_fixtures import partner_request
from tests.builders import declaration_xml, document, goods_item
from tests.partner_fixtures import partner_client, running_partner, set_faults
from tests.unit.test_pipeline import SOURCE, Hub

REF = "26FR000690I0000012"
DOC = "CHEDP.FR.2026.0001234"


def _xml(version: int, stage: Stage) -> bytes:
    return declaration_xml(
        version=version,
        stage=stage,
        items=(goods_item(1, (document("N853", DOC, 1, "100", "KGM"),)),),
    )


def _requests(hub: Hub, outbox: Effects, authority: str = "dgal") -> list[AuthorityRequest]:
    envelope = hub.envelope(authority)
    topic = hub.topics.requests(authority)
    return [
        AuthorityRequest.model_validate_json(envelope.open(r.value, topic=topic).payload)
        for r in outbox.to(topic)
    ]


async def through_the_adapter(
    hub: Hub, url: str, outbox: Effects, authority: str = "dgal"
) -> list[Effects]:
    """Each ``authority`` request of ``outbox`` asked of the partner by the adapter's
    client, in order, and its answer handled by the hub."""
    client = partner_client(url, retry_attempts=1)
    handled = []
    try:
        for request in _requests(hub, outbox, authority):
            answers = await client.answer(request)
            handled.append(
                hub.respond(
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
            )
    finally:
        await client.close()
    return handled


async def test_a_release_after_a_degraded_control_writes_the_goods_off_at_the_partner(
    routing_table: RoutingTable, keys_dir: Path, samples: Path, tmp_path: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "ledger.db"
    ) as sim:
        # Lodged while DGAL is down: degraded mode, documentary control.
        await set_faults(sim.url, outage=True)
        sent = hub.intake.handle(_xml(1, Stage.LODGED), SOURCE)
        [lodged] = await through_the_adapter(hub, sim.url, sent)
        [(_, _, outcome)] = hub.decisions(lodged)
        assert outcome is Outcome.CONTROL_DOCUMENTARY
        assert hub.decision_objects(lodged)[0].reasons[0].code == "DEGRADED_MODE"

        # DGAL is back; the office checked the certificate by hand and releases the goods.
        await set_faults(sim.url, outage=False)
        release = hub.intake.handle(
            _xml(2, Stage.RELEASED_AFTER_CONTROL), dataclasses.replace(SOURCE, offset=1)
        )
        handled = await through_the_adapter(hub, sim.url, release)
        kinds = [k for out in [release, *handled] for k in hub.status_kinds(out)]
        operations = [r.operation for r in _requests(hub, release)]
        [balance] = [b for b in sim.store.balances(DOC) if b.line == 1]
    assert (balance.written_off, balance.reserved) == (Decimal(100), Decimal(0)), (
        f"the 100 KGM that left after the degraded control: written off {balance.written_off}, "
        f"reserved {balance.reserved} at the partner; the hub sent {[o.value for o in operations]} "
        f"and recorded {[k.value for k in kinds if 'FOLLOW' in k.value or 'WRITTEN' in k.value]}"
    )
    assert StatusKind.FOLLOW_UP_FAILED not in kinds


async def test_goods_released_beyond_what_is_left_are_reported_as_left_without_cover(
    routing_table: RoutingTable, keys_dir: Path, samples: Path, tmp_path: Path
) -> None:
    """The balance taken by another declaration while the goods waited for their control:
    the reservation's refusal is the write-off's answer, and the hub says the follow-up
    failed, naming it; nothing is written off."""
    hub = Hub(routing_table, keys_dir)
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "ledger.db"
    ) as sim:
        await set_faults(sim.url, outage=True)
        [lodged] = await through_the_adapter(
            hub, sim.url, hub.intake.handle(_xml(1, Stage.LODGED), SOURCE)
        )
        assert [o for _, _, o in hub.decisions(lodged)] == [Outcome.CONTROL_DOCUMENTARY]
        await set_faults(sim.url, outage=False)
        [before] = [b for b in sim.store.balances(DOC) if b.line == 1]
        sim.store.force(DOC, "ANOTHER-DECLARATION", {1: before.remaining - Decimal(50)})
        release = hub.intake.handle(
            _xml(2, Stage.RELEASED_AFTER_CONTROL), dataclasses.replace(SOURCE, offset=1)
        )
        handled = await through_the_adapter(hub, sim.url, release)
        [after] = [b for b in sim.store.balances(DOC) if b.line == 1]
    failed = [
        e for out in handled for e in hub.statuses(out) if e.kind is StatusKind.FOLLOW_UP_FAILED
    ]
    assert [e.detail for e in failed] == [f"WRITE_OFF: N853 {DOC}: QUANTITY_INSUFFICIENT"]
    assert after.written_off == before.written_off


async def test_a_write_off_of_what_was_never_reserved_redelivered_writes_off_once(
    samples: Path, tmp_path: Path
) -> None:
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "ledger.db"
    ) as sim:
        client = partner_client(sim.url, retry_attempts=1)
        write_off = partner_request(
            Operation.WRITE_OFF, reference=REF, version=2, document=DOC, quantity="100"
        )
        try:
            answers = [await client.answer(write_off) for _ in range(2)]
        finally:
            await client.close()
        [balance] = [b for b in sim.store.balances(DOC) if b.line == 1]
    assert [(a.verdict, a.partner_code) for [a] in answers] == [(Verdict.VALID, "01")] * 2
    assert (balance.written_off, balance.reserved) == (Decimal(100), Decimal(0))
