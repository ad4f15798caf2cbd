"""Issue 13, item 4: the override (mention 73000) from the declaration XML to the audit
chain and the statistics, through the hub's processing steps (no broker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.override import OVERRIDE_APPLIED, OVERRIDE_NOT_ACCEPTED
from gun_hub.domain.routing import RoutingTable
from gun_hub.ops.facts import FACT, DecisionFact
from gun_hub.ops.view import FeedRecord, FeedTopics, OpsView
from gun_hub.xml.declaration_codec import DeclarationCodec
from gun_hub.xml.safe_parse import XmlRejected, XmlRejectionKind
from tests.builders import EORI, declaration, declaration_xml, document, goods_item
from tests.unit.test_pipeline import Hub

SOURCE = SourcePosition("gun.declarations", 0, 0)
REF = "26FR000690I0000012"

CONTRACT_ITEM = """<GoodsItem>
    <Number>1</Number><CommodityCode>0302130000</CommodityCode>
    <Description>Fresh salmon</Description><CountryOfOrigin>NO</CountryOfOrigin>
    <NetMass unit="KGM">1200.5</NetMass>
    <Document><Code>N853</Code><Reference>CHEDP.FR.2026.0001234</Reference>
      <Line>1</Line><Quantity unit="KGM">1200.5</Quantity></Document>
    <AdditionalInformation><Code>{code}</Code>
      <Text>Certificate presented at the office</Text></AdditionalInformation>
  </GoodsItem>"""


def contract_example(code: str = "73000") -> bytes:
    """The declaration of the contract (architecture.md section 3), mention included."""
    head = declaration_xml().split(b"<GoodsItem>")[0].decode()
    return (head + CONTRACT_ITEM.format(code=code) + "</Declaration>").encode()


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


def requests(hub: Hub, outbox: object, authority: str = "dgal") -> list[AuthorityRequest]:
    opened = hub.envelope(authority)
    return [
        AuthorityRequest.model_validate_json(opened.open(r.value, topic=r.topic).payload)
        for r in outbox.to(hub.topics.requests(authority))  # type: ignore[attr-defined]
    ]


def test_the_contract_example_with_the_override_mention_is_read() -> None:
    parsed = DeclarationCodec().decode(contract_example())
    [item] = parsed.goods_items
    assert [(i.code, i.text) for i in item.additional_information] == [
        ("73000", "Certificate presented at the office")
    ]
    assert item.mentions("73000")


def test_an_additional_information_code_outside_the_schema_is_refused() -> None:
    with pytest.raises(XmlRejected) as refused:
        DeclarationCodec().decode(contract_example(code="7300"))
    assert refused.value.kind is XmlRejectionKind.SCHEMA
    assert refused.value.path == "/Declaration/GoodsItem/AdditionalInformation/Code"


def test_the_mention_survives_encoding_and_decoding() -> None:
    original = declaration(items=(goods_item(1, mentions=("73000", "00100")),))
    assert DeclarationCodec().decode(declaration_xml(items=original.goods_items)) == original


def test_an_overridden_refusal_is_a_documentary_control_audited_and_counted(hub: Hub) -> None:
    sent = hub.intake.handle(declaration_xml(items=(goods_item(1, mentions=("73000",)),)), SOURCE)
    decided = hub.answer(sent, "dgal", Verdict.QUANTITY_INSUFFICIENT)
    [decision] = hub.decision_objects(decided)
    assert decision.outcome is Outcome.CONTROL_DOCUMENTARY
    assert OVERRIDE_APPLIED in [r.code for r in decision.reasons]
    audit = [json.loads(r.value) for r in decided.to(hub.topics.audit)]
    assert [a["kind"] for a in audit] == ["DECISION", "OVERRIDE"]
    assert audit[1]["declarant"] == EORI
    assert audit[1]["covered"][0]["verdict"] == "QUANTITY_INSUFFICIENT"
    [fact] = [FACT.validate_json(r.value) for r in decided.to(hub.topics.facts)]
    assert isinstance(fact, DecisionFact)
    assert fact.override is not None
    assert (fact.override.covered, fact.override.declined) == (1, 0)


def test_nothing_is_reserved_or_sent_after_an_overridden_refusal(hub: Hub) -> None:
    """The RESERVE the checks asked was refused by the partner; the control asks nothing
    more of it (no reservation forced, no deletion of what the control keeps)."""
    sent = hub.intake.handle(declaration_xml(items=(goods_item(1, mentions=("73000",)),)), SOURCE)
    assert [r.operation for r in requests(hub, sent)] == [Operation.RESERVE]
    decided = hub.answer(sent, "dgal", Verdict.NOT_FOUND)
    assert hub.decisions(decided) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    assert requests(hub, decided) == []


def test_a_refusal_without_the_mention_is_still_refused_and_its_reservations_deleted(
    hub: Hub,
) -> None:
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    decided = hub.answer(sent, "dgal", Verdict.NOT_FOUND)
    assert hub.decisions(decided) == [(REF, 1, Outcome.REFUSE)]
    assert [r.operation for r in requests(hub, decided)] == [Operation.DELETE]
    assert [json.loads(r.value)["kind"] for r in decided.to(hub.topics.audit)] == ["DECISION"]


def test_a_war_material_refusal_under_the_mention_is_refused_and_audited(hub: Hub) -> None:
    licence = document("LEMG", "LIC-1", 1, "2", "NAR")
    sent = hub.intake.handle(
        declaration_xml(items=(goods_item(1, (licence,), mentions=("73000",)),)), SOURCE
    )
    decided = hub.answer(sent, "dga", Verdict.INVALID_STATUS)
    [decision] = hub.decision_objects(decided)
    assert decision.outcome is Outcome.REFUSE
    assert OVERRIDE_NOT_ACCEPTED in [r.code for r in decision.reasons]
    audit = [json.loads(r.value) for r in decided.to(hub.topics.audit)]
    assert audit[1]["kind"] == "OVERRIDE"
    assert audit[1]["covered"] == []
    assert audit[1]["declined"][0]["authority"] == "dga"
    assert "LIC-1" not in json.dumps(audit)


def test_the_statistics_count_overrides_per_declarant(hub: Hub, tmp_path: Path) -> None:
    topics = FeedTopics(
        status=hub.topics.status,
        facts=hub.topics.facts,
        dlq=hub.topics.dlq,
        health=hub.topics.ops_health,
    )
    view = OpsView(tmp_path / "view.sqlite3", topics)
    records = []
    for number, (reference, verdict) in enumerate(
        [
            ("26FR000690I0000001", Verdict.QUANTITY_INSUFFICIENT),  # applied
            ("26FR000690I0000002", Verdict.VALID),  # declared, nothing to cover
        ]
    ):
        items = (goods_item(1, mentions=("73000",)),)
        sent = hub.intake.handle(
            declaration_xml(reference=reference, items=items),
            SourcePosition("gun.declarations", 0, number),
        )
        outbox = hub.answer(sent, "dgal", verdict)
        records += outbox.to(hub.topics.facts)
    try:
        view.apply(
            FeedRecord(r.topic, 0, offset, 0, r.value, r.headers)
            for offset, r in enumerate(records)
        )
        counted = view.statistics()["overrides"]
    finally:
        view.close()
    assert counted["by_declarant"] == {EORI: {"declared": 2, "applied": 1, "declined": 0}}
    assert (counted["declared"], counted["applied"], counted["declined"]) == (2, 1, 0)
