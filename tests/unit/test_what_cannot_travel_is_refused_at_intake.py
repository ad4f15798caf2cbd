"""Issue 10, defect 2: every message the contract allows travels; what could not is
refused at intake with a clear reason, never decided and then lost at the publisher.

The XSD allows 999 goods items of 99 documents each; a decision lists every document, so
an extreme declaration's decision would not fit in one record (gun_contract/limits.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from gun_contract.limits import MAX_DECLARATION_BYTES, MAX_RECORD_BYTES
from gun_contract.model.declaration import Declaration
from gun_contract.model.exchange import Operation
from gun_contract.settings import HubSettings
from gun_hub.domain.rollout import RolloutMode, RolloutSetting
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.intake import too_large_to_decide
from gun_hub.xml.declaration_codec import DeclarationCodec
from tests.builders import declaration, declaration_xml, document, goods_item
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import at, requests


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


def _contract_sized(documents_per_item: int, items: int = 999) -> Declaration:
    """Goods items quoting documents with two-character references, as parsed at intake."""
    xml = declaration_xml(
        items=tuple(
            goods_item(
                n,
                tuple(
                    document("N853", f"C{k}", line=None, quantity=None)
                    for k in range(documents_per_item)
                ),
            )
            for n in range(1, items + 1)
        )
    )
    assert len(xml) <= MAX_DECLARATION_BYTES
    return DeclarationCodec().decode(xml)


def test_an_898_kb_declaration_is_decided_when_its_longest_decision_fits() -> None:
    """Scenario: 999 goods items of 11 documents (898 kB, under the 1 MiB intake limit).
    Its longest possible decision (every document refused, a reason each, 8-character
    partner codes) is about 3.6 MB, 6.4 MB sealed, under the 8 MiB record limit: it is
    decided. The probe gave every document a 200-character reason and was refused at
    9.2 MB. Found by review, stop 36."""
    parsed = _contract_sized(11)
    assert too_large_to_decide(parsed, authority_chars=5) is None
    assert too_large_to_decide(parsed) is None  # even with 32-character authority names


def test_what_still_cannot_travel_under_one_mib_is_refused_with_figures() -> None:
    """Scenario: the record limit (8 MiB) cannot carry every decision a 1 MiB declaration
    may get: the 898 kB one above with an authority in advice mode (two reasons per
    refused document: about 5.6 MB, 9.9 MB sealed), or 15,642 short references
    in 1 MiB (every one refused: 5.3 MB, 9.4 MB sealed). Those are refused at intake
    with the figure, never decided and lost at the publisher. Found by review, stop 36."""
    advice = too_large_to_decide(_contract_sized(11), authority_chars=4, advice=True)
    assert advice is not None
    assert "10989 documents" in advice
    assert str(MAX_RECORD_BYTES) in advice
    assert too_large_to_decide(_contract_sized(99, items=158), authority_chars=4) is not None


def test_a_version_read_again_is_not_refused_by_a_rollout_change_made_since(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """The 898 kB declaration was accepted and its case opened; the worker died before
    its requests reached the broker; an officer then switched DGAL to advice at the
    office, with which its longest decision would not fit. Read again, it is the same
    version at the same position: its requests are sent again (before: refused as too
    large on its redelivery, a dead letter and a case left to its deadline; found by the
    review of stop 36's change, G4)."""
    hub = Hub(routing_table, keys_dir)
    xml = declaration_xml(
        items=tuple(
            goods_item(
                n, tuple(document("N853", f"C{k}", line=None, quantity=None) for k in range(11))
            )
            for n in range(1, 1000)
        )
    )
    assert len(xml) <= MAX_DECLARATION_BYTES
    hub.broker_up = False
    hub.intake.handle(xml, at(0))
    hub.broker_up = True
    hub.rollout.apply(
        RolloutSetting(
            authority="dgal", mode=RolloutMode.ADVICE, officer="o", reason="pilot",
            at=datetime.now(UTC),
        )
    )  # fmt: skip

    again = hub.intake.handle(xml, at(0))

    assert [r.operation for r in requests(hub, again)] == [Operation.RESERVE]
    assert again.to(hub.topics.dlq) == []
