"""The partner simulator's API takes a line's ``quantity`` as a ``Decimal`` with no
bound: pydantic accepts the JSON string "1e999999999" (it refuses NaN and Infinity, not
an exponent past the decimal context's Emax of 999999). The ledger then sums it
(``partner_sim/ledger.py``: ``totals[line.line] += line.quantity``) under the default
context, which traps ``decimal.Overflow``: the check answers 500 instead of a 400 naming
the quantity (and so does a reservation)."""

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
HOLDER = "FR12345678901234"


def _document() -> PartnerDocument:
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
                DocumentLine(line=1, commodity_code="0302", quantity=Decimal(1000), unit="KGM"),
            ),
        }
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("quantity", ["1e999999999", "-1e999999999"])
async def test_a_quantity_past_the_decimal_range_is_refused_as_a_bad_request(
    tmp_path: Path, quantity: str
) -> None:
    store = LedgerStore(tmp_path / "ledger.sqlite")
    store.load([_document()])
    body = position(quantity, None)
    async with TestClient(TestServer(build_app(store))) as client:
        response = await client.post(f"/api/v1/documents/{REF}/checks/DECL-1", json=body)
        assert response.status == 400
