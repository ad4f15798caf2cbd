"""The partner simulator's API takes a claim's quantity with up to 30 digits, 12 after the
point (``partner_sim/api.py``, ``_LineBody.quantity``), but its ledger sums quantities under
Python's default decimal context, 28 significant digits (``partner_sim/ledger.py``,
``requested_per_line``: ``totals[line.line] += line.quantity``; ``evaluate``: ``left =
line.quantity - others...``; ``store._held_by_others``). A quantity of 29 or 30 digits is
rounded when it is summed, even alone (``Decimal(0) + q``):

* what is reserved is not what was claimed (the ledger holds less, or more, than the
  declaration's position: reserved + written off no longer equals what the hub decided);
* a claim above what the line authorises is accepted when its rounding falls on the
  authorised quantity: reserved beyond the document.

Found by review (exactness of the quantity ledger)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from partner_sim.documents import DocumentLine, DocumentStatus, PartnerDocument
from partner_sim.ledger import PositionRequest, RequestedLine
from partner_sim.server import build_app
from partner_sim.store import LedgerStore
from tests.unit.test_partner_http_api import position

REF = "CHEDP.FR.2026.0001234"
HOLDER = "FR12345678901234"
TODAY = date(2026, 11, 22)
# 30 digits, 12 after the point: what the API admits.
CLAIM = "123456789012345678.123456789012"


def _document(authorised: Decimal) -> PartnerDocument:
    return PartnerDocument.model_validate(
        {
            "reference": REF,
            "type": "N853",
            "status": DocumentStatus.VALIDATED,
            "holder": HOLDER,
            "country_of_destination": "FR",
            "valid_from": "2026-01-01",
            "valid_until": "2099-12-31",
            "lines": (
                DocumentLine(line=1, commodity_code="0302", quantity=authorised, unit="KGM"),
            ),
        }
    )


def _claims(*quantities: str) -> PositionRequest:
    return PositionRequest(
        declaration="DECL-1",
        document_type="N853",
        declarant_eori=HOLDER,
        country_of_destination="FR",
        lines=tuple(
            RequestedLine(
                goods_item=number,
                line=1,
                quantity=Decimal(quantity),
                unit="KGM",
                commodity_code="0302130000",
            )
            for number, quantity in enumerate(quantities, start=1)
        ),
        version=1,
    )


@pytest.mark.asyncio
async def test_a_thirty_digit_claim_the_api_admits_is_reserved_to_its_last_digit(
    tmp_path: Path,
) -> None:
    store = LedgerStore(tmp_path / "ledger.sqlite")
    store.load([_document(Decimal("999999999999999999.999999999999"))])
    async with TestClient(TestServer(build_app(store))) as client:
        response = await client.put(
            f"/api/v1/documents/{REF}/reservations/DECL-1", json=position(CLAIM, 1)
        )
        assert response.status == 200
        assert (await response.json())["result"] == "ACCEPTED"
    [line] = store.balances(REF)
    # Reserved 123456789012345678.1234567890: 1.2e-11 of the claim is not held.
    assert line.reserved == Decimal(CLAIM)


def test_a_claim_above_what_the_line_authorises_is_refused_whatever_its_rounding(
    tmp_path: Path,
) -> None:
    authorised = Decimal("123456789012345678.1234567890")
    store = LedgerStore(tmp_path / "ledger.sqlite")
    store.load([_document(authorised)])
    claim = "123456789012345678.123456789049"  # 4.9e-11 above what the line authorises
    assert Decimal(claim) > authorised
    refusal = store.reserve(REF, _claims(claim), TODAY)
    # Accepted: the sum of the one claim rounds to the authorised quantity.
    assert refusal is not None


def test_two_goods_items_claims_on_one_line_are_summed_exactly(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "ledger.sqlite")
    store.load([_document(Decimal("999999999999999999.999999999999"))])
    first, second = "12345678901234567.123456789012", "1"
    assert store.reserve(REF, _claims(first, second), TODAY) is None
    [line] = store.balances(REF)
    # 12345678901234568.12345678901: 2e-12 of the position is lost.
    assert line.reserved == Decimal("12345678901234568.123456789012")
