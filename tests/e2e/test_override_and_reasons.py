"""Issue 13, items 4 and 6, on the real broker: the declarant's override (mention 73000)
and reasons a trader can act on.

Hub, the DGAL and DGA adapters and their simulated partner systems run as processes; no
risk targeting (an empty rules file), so every outcome follows from the partners' answers
and the override alone. The trader lookup and the officers' statistics are on.
"""

from __future__ import annotations

import functools
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gun_contract.model.decision import Decision
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.security.web_auth import LocalAccess
from gun_tools.processes import free_port
from tests.builders import EORI, declaration_xml, document, goods_item
from tests.conftest import KafkaEnv
from tests.e2e.conftest import Pipeline, start_pipeline
from tests.e2e.test_status_and_statistics import Listening, get, served

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

CHED = "CHEDP.FR.2026.0001234"  # line 1: 5,000 KGM of 0302 (samples/partners)
OVERRIDDEN = "26FROVERRIDE000001"  # 9,000 KGM on the CHED, mention 73000: control
REFUSED = "26FROVERRIDE000002"  # the same without the mention: refused
WAR_MATERIAL = "26FROVERRIDE000003"  # an unknown licence, mention 73000: still refused
UNIT = "26FRREASONS0000001"  # the CHED line in NAR: CL110/10
COMMODITY = "26FRREASONS0000002"  # live horses on a fish CHED: CL110/03
UNKNOWN = "26FRREASONS0000003"  # no such CHED: CL568/328
OVERRIDE = ("73000",)


@pytest.fixture
def dgal_and_dga(kafka_env: KafkaEnv, samples: Path, tmp_path: Path) -> Iterator[Listening]:
    rules = tmp_path / "no-targeting.toml"
    rules.write_text("# outcomes from the partners' answers only\n")
    access = LocalAccess.create(tmp_path / "access")
    ports = (free_port(), free_port())
    for pipeline in start_pipeline(
        kafka_env,
        tmp_path,
        samples,
        partners=("dgal", "dga"),
        hub_env={"GUN_HUB_HUB__RISK_RULES": str(rules), **access.env(*ports)},
    ):
        yield Listening(pipeline, access, *ports)


def ched(quantity: str = "9000", unit: str = "KGM", reference: str = CHED) -> Any:
    return (document("N853", reference, 1, quantity, unit),)


def by_reference(decisions: list[Decision]) -> dict[str, Decision]:
    return {d.reference: d for d in decisions}


def codes(decision: Decision) -> list[str]:
    return [reason.code for reason in decision.reasons]


def partner_positions(pipeline: Pipeline, document_reference: str) -> set[str]:
    """The declarations holding anything on a document, per the partner's own ledger."""
    url = f"http://127.0.0.1:{pipeline.partner_ports['dgal']}/admin/documents/{document_reference}"
    with urllib.request.urlopen(url, timeout=10) as response:
        ledger = json.load(response)
    return {p["declaration"] for line in ledger["balances"] for p in line["positions"]}


async def requests_about(pipeline: Pipeline, reference: str) -> list[AuthorityRequest]:
    topic = pipeline.kafka.topics.requests("dgal")
    opened = pipeline.kafka.envelope("dgal")
    return [
        AuthorityRequest.model_validate_json(opened.open(r.value or b"", topic=topic).payload)
        for r in await pipeline.records(topic)
        if r.key == reference.encode()
    ]


async def test_an_override_sends_a_refused_document_to_control_audited_and_counted(
    dgal_and_dga: Listening,
) -> None:
    hub = dgal_and_dga
    pipeline = hub.pipeline
    licence = document("LEMG", "LEMG.FR.2026.9999", 1, "5", "NAR")
    await pipeline.submit(
        [
            declaration_xml(
                reference=OVERRIDDEN, items=(goods_item(1, ched(), mentions=OVERRIDE),)
            ),
            declaration_xml(reference=REFUSED, items=(goods_item(1, ched()),)),
            declaration_xml(
                reference=WAR_MATERIAL,
                items=(goods_item(1, (licence,), "9301100000", mentions=OVERRIDE),),
            ),
        ]
    )
    decided = by_reference([r.decision for r in await pipeline.decisions(3)])

    # Covered: a documentary control, never a release, and the reasons say why.
    overridden = decided[OVERRIDDEN]
    assert overridden.outcome is Outcome.CONTROL_DOCUMENTARY
    assert codes(overridden) == ["QUANTITY_INSUFFICIENT", "OVERRIDE_73000"]
    assert [d.verdict for d in overridden.documents] == [Verdict.QUANTITY_INSUFFICIENT]
    assert decided[REFUSED].outcome is Outcome.REFUSE
    assert codes(decided[REFUSED]) == ["QUANTITY_INSUFFICIENT"]
    # A war-material refusal is not covered.
    assert decided[WAR_MATERIAL].outcome is Outcome.REFUSE
    assert codes(decided[WAR_MATERIAL]) == ["NOT_FOUND", "OVERRIDE_NOT_ACCEPTED"]

    # Never reserved on the refused document: the partner holds nothing for it, and the
    # hub asked nothing more than the checks' one RESERVE.
    assert OVERRIDDEN not in partner_positions(pipeline, CHED)
    assert [r.operation for r in await requests_about(pipeline, OVERRIDDEN)] == [Operation.RESERVE]

    # Audited: what the override covered or could not, by code and verdict, no licence.
    audit_topic = pipeline.kafka.topics.audit
    audit = [json.loads(r.value or b"{}") for r in await pipeline.records(audit_topic)]
    overrides = {a["reference"]: a for a in audit if a.get("kind") == "OVERRIDE"}
    assert sorted(overrides) == [OVERRIDDEN, WAR_MATERIAL]
    assert overrides[OVERRIDDEN]["covered"] == [
        {"goods_item": 1, "code": "N853", "verdict": "QUANTITY_INSUFFICIENT", "authority": "dgal"}
    ]
    assert overrides[WAR_MATERIAL]["declined"][0]["verdict"] == "NOT_FOUND"
    assert "LEMG.FR.2026.9999" not in json.dumps(audit)
    assert 'gun_hub_overrides_total{outcome="CONTROL_DOCUMENTARY"} 1.0' in pipeline.metrics()

    # Counted per declarant in the statistics.
    stats = await served(
        hub, lambda: hub.as_officer("/stats"), lambda b: b["overrides"]["declared"] >= 2
    )
    assert stats["overrides"]["by_declarant"] == {
        EORI: {"declared": 2, "applied": 1, "declined": 1}
    }

    # The trader reads what to do, in French and in English.
    shown = await served(
        hub, lambda: hub.as_trader(f"/declarations/{OVERRIDDEN}"), lambda b: "reasons" in b
    )
    assert shown["outcome"] == "CONTROL_DOCUMENTARY"
    assert [r["code"] for r in shown["reasons"]] == ["QUANTITY_INSUFFICIENT", "OVERRIDE_73000"]
    assert shown["reasons"][0]["csw"] == "CL110/05"
    assert "73000" in shown["reasons"][1]["fr"]
    assert "73000" in shown["reasons"][1]["en"]


async def test_each_refusal_has_the_code_the_eu_single_window_uses(
    dgal_and_dga: Listening,
) -> None:
    hub = dgal_and_dga
    pipeline = hub.pipeline
    await pipeline.submit(
        [
            declaration_xml(reference=UNIT, items=(goods_item(1, ched("10", "NAR")),)),
            declaration_xml(
                reference=COMMODITY,
                items=(goods_item(1, ched("100"), commodity_code="0101210000"),),
            ),
            declaration_xml(
                reference=UNKNOWN,
                items=(goods_item(1, ched("1", reference="CHEDP.FR.2026.9999999")),),
            ),
        ]
    )
    decided = by_reference([r.decision for r in await pipeline.decisions(3)])
    assert {ref: codes(d) for ref, d in decided.items()} == {
        UNIT: ["UNIT_MISMATCH"],
        COMMODITY: ["COMMODITY_CODE_MISMATCH"],
        UNKNOWN: ["NOT_FOUND"],
    }
    # The verdicts stay the contract's; the partner's own code is kept beside them.
    assert [(d.verdict, d.partner_code) for d in decided[UNIT].documents] == [
        (Verdict.MISMATCH, "10")
    ]
    expected = {UNIT: "CL110/10", COMMODITY: "CL110/03", UNKNOWN: "CL568/328"}
    for reference, csw in expected.items():
        ask = functools.partial(hub.as_trader, f"/declarations/{reference}")
        shown = await served(hub, ask, lambda b: "reasons" in b)
        [reason] = shown["reasons"]
        assert reason["csw"] == csw, reference
        assert reason["fr"]
        assert reason["en"]
    assert get(hub.url(hub.trader_port, f"/declarations/{UNIT}"))[0] == 401


async def test_an_override_when_the_single_window_cannot_answer_is_named_and_audited(
    impatient_hub: Pipeline,
) -> None:
    """Nobody answers for CITES: the deadline (2 s) decides both in degraded mode; only
    the one with the mention names the override. They are live animals (commodity 01),
    so the risk rule's physical control holds through the outage and is named (since
    stop 36: an outage no longer softens targeting, review D5)."""
    cites = (document("C638", "CITES.FR.2026.555", 1, "2", "NAR"),)
    with_mention, without = "26FRCANNOTANSWER01", "26FRCANNOTANSWER02"
    await impatient_hub.submit(
        [
            declaration_xml(
                reference=with_mention,
                items=(goods_item(1, cites, "0106190000", mentions=OVERRIDE),),
            ),
            declaration_xml(reference=without, items=(goods_item(1, cites, "0106190000"),)),
        ]
    )
    decided = by_reference([r.decision for r in await impatient_hub.decisions(2)])
    assert decided[with_mention].outcome is Outcome.CONTROL_PHYSICAL
    assert codes(decided[with_mention]) == [
        "DEGRADED_MODE",
        "DEADLINE",
        "UNAVAILABLE",
        "OVERRIDE_73000",
        "RISK.LIVE-ANIMALS-PHYSICAL",
    ]
    assert decided[without].outcome is Outcome.CONTROL_PHYSICAL
    assert codes(decided[without]) == [
        "DEGRADED_MODE",
        "DEADLINE",
        "UNAVAILABLE",
        "RISK.LIVE-ANIMALS-PHYSICAL",
    ]
    audit = [
        json.loads(r.value or b"{}")
        for r in await impatient_hub.records(impatient_hub.kafka.topics.audit)
    ]
    [override] = [a for a in audit if a.get("kind") == "OVERRIDE"]
    assert override["reference"] == with_mention
    assert override["covered"][0]["verdict"] == "UNAVAILABLE"
