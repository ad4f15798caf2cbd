"""A lodged declaration that quotes a quantity-managed document without stating a line or a
quantity is refused, from the hub through the DGAL adapter to the simulated TRACES and
back (no broker): the partner answers CERTEX 11 ("quantities cannot be validated"), the
adapter maps it to MISMATCH with the partner's code, and the hub decides REFUSE with
QUANTITY_NOT_VALIDATED (the code the EU single window shows traders, CL110/11).

Line and Quantity are optional in declaration.xsd. Before, the simulator ACCEPTED such a
claim and reserved nothing: the declaration was RELEASEd and "written off" with 0, and the
same certificate could be quoted without end, even once fully used (found by review,
stop 36, D7).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.base.certex import CertexHttpPartner
from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.exchange import AuthorityRequest, AuthorityResponse
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.settings import AdapterSettings
from gun_hub.domain.routing import RoutingTable
from tests.builders import declaration_xml, document, goods_item
from tests.conftest import envelope_of
from tests.partner_fixtures import RunningPartner, running_partner
from tests.unit.test_pipeline import Hub

CERTIFICATE = "CHEDP.FR.2026.0001234"  # samples/partners/dgal-documents.json
SOURCE = SourcePosition("gun.declarations", 0, 0)


@pytest.fixture
async def partner(samples: Path, tmp_path: Path) -> AsyncIterator[RunningPartner]:
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "l.db"
    ) as running:
        yield running


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


async def decided_through_the_partner(hub: Hub, partner: RunningPartner, xml: bytes) -> Effects:
    """The declaration through intake, its dgal request answered by the real adapter client
    against the simulator, the answer through correlation: the decisions that come out."""
    sent = hub.intake.handle(xml, SOURCE)
    topic = hub.topics.requests("dgal")
    [record] = sent.to(topic)
    opened = envelope_of("dgal", hub.topics, hub.keys_dir).open(record.value, topic=topic)
    request = AuthorityRequest.model_validate_json(opened.payload)
    client = CertexHttpPartner(AdapterSettings(partner_url=partner.url), "dgal")
    try:
        answers = await client.answer(request)
    finally:
        await client.close()
    response = AuthorityResponse(
        request_id=request.request_id,
        authority=request.authority,
        operation=request.operation,
        reference=request.reference,
        version=request.version,
        answers=tuple(answers),
        answered_at=datetime.now(UTC),
    )
    return hub.respond(response)


@pytest.mark.parametrize(
    "line", [None, 1], ids=["neither-line-nor-quantity", "line-without-quantity"]
)
async def test_a_lodged_claim_stating_no_quantity_is_refused_quantity_not_validated(
    hub: Hub, partner: RunningPartner, line: int | None
) -> None:
    xml = declaration_xml(
        items=(goods_item(1, (document(reference=CERTIFICATE, line=line, quantity=None),)),)
    )
    [decision] = hub.decision_objects(await decided_through_the_partner(hub, partner, xml))
    assert decision.outcome is Outcome.REFUSE
    assert [r.code for r in decision.reasons] == ["QUANTITY_NOT_VALIDATED"]
    [result] = decision.documents
    assert (result.verdict, result.partner_code) == (Verdict.MISMATCH, "11")
    [line_1, _] = partner.store.balances(CERTIFICATE)
    assert (line_1.reserved, line_1.written_off) == (Decimal(0), Decimal(0))


async def test_the_same_certificate_with_a_quantity_is_still_released(
    hub: Hub, partner: RunningPartner
) -> None:
    """The control: the claim that states its quantity is reserved and released."""
    xml = declaration_xml(
        items=(goods_item(1, (document(reference=CERTIFICATE, quantity="100"),)),)
    )
    [decision] = hub.decision_objects(await decided_through_the_partner(hub, partner, xml))
    assert decision.outcome is Outcome.RELEASE
    [line_1, _] = partner.store.balances(CERTIFICATE)
    assert line_1.reserved == Decimal(100)
