"""Issue 10, defect 2: every message the contract allows travels; what could not is
refused at intake with a clear reason, never decided and then lost at the publisher.

The XSD allows 999 goods items of 99 documents each; a decision lists every document, so
an extreme declaration's decision would not fit in one record (gun_contract/limits.py).
"""

from __future__ import annotations

from gun_contract.limits import MAX_RECORD_BYTES
from gun_contract.settings import HubSettings
from gun_hub.pipeline.intake import too_large_to_decide
from tests.builders import declaration, document, goods_item


def test_a_declaration_whose_decision_could_not_travel_is_refused_with_its_reason() -> None:
    documents = tuple(
        document("N853", f"CHEDP.FR.2026.{n:07d}-{'X' * 40}", 1, "1") for n in range(45)
    )
    extreme = declaration(items=tuple(goods_item(n, documents) for n in range(1, 1000)))
    reason = too_large_to_decide(extreme)
    assert reason is not None
    assert "44955 documents" in reason
    assert str(MAX_RECORD_BYTES) in reason
    assert "split the declaration" in reason


def test_a_declaration_of_999_items_with_a_document_each_travels() -> None:
    items = tuple(goods_item(n) for n in range(1, 1000))
    assert too_large_to_decide(declaration(items=items)) is None


def test_the_hub_offers_no_exactly_once_mode() -> None:
    """faust's exactly_once was measured to duplicate decisions (defect 13): not offered."""
    assert "processing_guarantee" not in HubSettings.model_fields
