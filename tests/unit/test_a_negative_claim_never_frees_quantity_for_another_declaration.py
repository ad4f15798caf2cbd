"""The partner simulator's API takes a claim's quantity as any decimal of 30 digits
(``partner_sim/api.py``, ``_LineBody.quantity``: no lower bound), and its ledger sums the
claims and compares the sum with what the line leaves (``partner_sim/ledger.py``,
``evaluate``): a negative claim is never "more than what is left", so it is ACCEPTED and
stored as a negative reservation. Every other declaration's ``others`` then shrinks by
it (``store._held_by_others``), and the line is reserved beyond what it authorises.

The declaration XSD bounds a quantity above zero (``PositiveAmountType``), so the hub
never sends one; but the simulator is the reference partner the conformance kit and the
ledger checker are measured against, and a partner system must never let reserved plus
written off exceed the line. Found by review (exactness of the quantity ledger)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from partner_sim.documents import DocumentLine, DocumentStatus, PartnerDocument
from partner_sim.server import build_app
from partner_sim.store import LedgerStore
from tests.unit.test_partner_http_api import position

REF = "CHEDP.FR.2026.0001234"


def _document() -> PartnerDocument:
    return PartnerDocument.model_validate(
        {
            "reference": REF,
            "type": "N853",
            "status": DocumentStatus.VALIDATED,
            "holder": "FR12345678901234",
            "country_of_destination": "FR",
            "valid_from": "2026-01-01",
            "valid_until": "2099-12-31",
            "lines": (
                DocumentLine(line=1, commodity_code="0302", quantity=Decimal(1000), unit="KGM"),
            ),
        }
    )


@pytest.mark.asyncio
async def test_a_negative_claim_is_refused_and_the_line_never_holds_more_than_it_authorises(
    tmp_path: Path,
) -> None:
    store = LedgerStore(tmp_path / "ledger.sqlite")
    store.load([_document()])
    async with TestClient(TestServer(build_app(store))) as client:
        negative = await client.put(
            f"/api/v1/documents/{REF}/reservations/DECL-1", json=position("-600", 1)
        )
        other = await client.put(
            f"/api/v1/documents/{REF}/reservations/DECL-2", json=position("1600", 1)
        )
        answers = (negative.status, await negative.json(), await other.json())
    [line] = store.balances(REF)
    # Before: both ACCEPTED; DECL-2 holds 1,600 of a line authorising 1,000.
    assert answers[0] == 400 or answers[1]["result"] == "REFUSED", answers
    assert max((p.reserved for p in store.positions(REF)), default=Decimal(0)) <= Decimal(1000)
    assert line.reserved + line.written_off <= line.authorised
