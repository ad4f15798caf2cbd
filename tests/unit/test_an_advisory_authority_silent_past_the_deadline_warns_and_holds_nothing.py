"""An authority in advice mode that stays silent past the deadline is a warning that holds
nothing: the goods are released, its document listed as an advisory refusal is (its code,
UNAVAILABLE, then ADVISORY_ONLY), and nothing the trader reads says they are checked at
the office.

docs/rollout.md: in advice mode "refusals and silence only warn" and "never refuse or
hold the goods". The deadline (pipeline/deadlines.py) named the advisory authority all
the same in a ``DEADLINE`` reason of the RELEASE (``DEADLINE: no answer from cites within
30s``), whose text told the trader "the documents are checked at the customs office
instead" (reasons.py), and the document's ``UNAVAILABLE`` told it "the goods go to
documentary control": neither is true of a release, where nothing is checked. The
silence stays visible (advice mode is there so that the operator and the trader see what
the partner would have said): the DEADLINE_PASSED event of the history names it, as an
answer of an advisory refusal is there to read, and the document's reasons say it. It
makes no degraded decision. An enforced authority silent beside it still makes the
control, and is the one the DEADLINE reason names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from gun_contract.effects import Effects
from gun_contract.model.decision import Decision
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.decide import DEGRADED_MODE
from gun_hub.domain.rollout import ADVISORY_ONLY, RolloutMode
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.web.redaction import trader_history, trader_status
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_a_decision_without_a_partner_answer_is_counted_degraded import degraded
from tests.unit.test_pipeline import SOURCE, Hub
from tests.unit.test_rollout_modes import OFFICE, REF, setting, two_authorities
from tests.unit.test_the_deadline_reasons_text_is_true_of_every_outcome_it_is_given_on import tick

CONFIDENTIAL = frozenset({"dga"})
# What a release must not tell the trader, in either language: that the goods, or the
# documents, are held or checked at the office.
HOLDS = ("documentary control", "checked at the customs office", "go to")
HOLDS_FR = ("contrôle documentaire", "contrôlés au bureau", "passent en")


def advised_by_cites(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    hub = Hub(routing_table, keys_dir)
    hub.rollout.apply(setting("cites", RolloutMode.ADVICE, OFFICE))
    return hub


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return advised_by_cites(routing_table, keys_dir)


def read_by_the_trader(hub: Hub, outboxes: list[Effects]) -> dict[str, Any]:
    history = [s.model_dump(mode="json") for o in outboxes for s in hub.statuses(o)]
    return trader_status(REF, history, CONFIDENTIAL)


def decided(
    hub: Hub, dgal: Verdict | None, cites: Verdict | None
) -> tuple[Decision, list[Effects]]:
    """DGAL (enforced) and CITES (advice) answer ``dgal`` and ``cites``, None staying
    silent until the deadline passes."""
    outboxes = [hub.intake.handle(two_authorities(), SOURCE)]
    for authority, verdict in (("dgal", dgal), ("cites", cites)):
        if verdict is not None:
            outboxes.append(hub.answer(outboxes[0], authority, verdict))
    if dgal is None or cites is None:
        assert [d for o in outboxes for d in hub.decision_objects(o)] == []  # both awaited
        outboxes.append(tick(hub, 1))
    [decision] = [d for o in outboxes for d in hub.decision_objects(o)]
    return decision, outboxes


def test_an_advisory_authority_silent_past_the_deadline_warns_and_holds_nothing(hub: Hub) -> None:
    before_cites, before_dgal = degraded("cites"), degraded("dgal")
    decision, outboxes = decided(hub, Verdict.VALID, None)
    assert decision.outcome is Outcome.RELEASE
    # Listed as an advisory refusal is: the document's code, then ADVISORY_ONLY; no
    # DEADLINE (a reason of the outcome: an enforced authority's silence),
    # no DEGRADED_MODE.
    assert [r.code for r in decision.reasons] == [Verdict.UNAVAILABLE.value, ADVISORY_ONLY]
    assert [d.verdict for d in decision.documents if d.authority == "cites"] == [
        Verdict.UNAVAILABLE
    ]
    assert "does not stop the goods" in decision.reasons[1].text
    assert degraded("cites") == before_cites
    assert degraded("dgal") == before_dgal

    seen = read_by_the_trader(hub, outboxes)
    assert (seen["state"], seen["outcome"]) == ("DECIDED", Outcome.RELEASE.value)
    assert [r["code"] for r in seen["reasons"]] == [Verdict.UNAVAILABLE.value, ADVISORY_ONLY]
    for reason in seen["reasons"]:
        assert not any(words in reason["en"] for words in HOLDS), reason
        assert not any(words in reason["fr"] for words in HOLDS_FR), reason
    # Still visible: the history says who did not answer.
    [passed] = [e["detail"] for e in seen["history"] if e["kind"] == "DEADLINE_PASSED"]
    assert passed == "no answer from cites within 30s"


def test_an_advisory_silence_reads_as_an_advisory_refusal_does(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """The same two reasons whether the advisory partner refused or said nothing: the
    document's code, then ADVISORY_ONLY."""
    refused, _ = decided(
        advised_by_cites(routing_table, keys_dir), Verdict.VALID, Verdict.NOT_FOUND
    )
    silent, _ = decided(advised_by_cites(routing_table, keys_dir), Verdict.VALID, None)
    assert refused.outcome is Outcome.RELEASE
    assert [r.code for r in refused.reasons] == [Verdict.NOT_FOUND.value, ADVISORY_ONLY]
    assert [r.code for r in silent.reasons] == [Verdict.UNAVAILABLE.value, ADVISORY_ONLY]


def test_an_enforced_authority_silent_beside_an_advisory_one_controls_and_is_named(
    hub: Hub,
) -> None:
    before_cites, before_dgal = degraded("cites"), degraded("dgal")
    decision, outboxes = decided(hub, None, None)
    assert decision.outcome is Outcome.CONTROL_DOCUMENTARY
    codes = [r.code for r in decision.reasons]
    assert codes[:2] == [DEGRADED_MODE, "DEADLINE"]
    [deadline] = [r.text for r in decision.reasons if r.code == "DEADLINE"]
    assert deadline == "no answer from dgal within 30s"
    # The advisory one is listed as advisory, and counted in no degraded decision.
    assert sorted(codes[2:]) == sorted([Verdict.UNAVAILABLE.value] * 2 + [ADVISORY_ONLY])
    [advisory] = [r.text for r in decision.reasons if r.code == ADVISORY_ONLY]
    assert "cites" in advisory
    assert degraded("dgal") == before_dgal + 1
    assert degraded("cites") == before_cites
    [passed] = [
        s.detail for o in outboxes for s in hub.statuses(o) if s.kind is StatusKind.DEADLINE_PASSED
    ]
    assert passed == "no answer from cites, dgal within 30s"


def refused_beside_silences(
    routing_table: RoutingTable, keys_dir: Path, *, licence: bool
) -> tuple[list[Outcome], list[str]]:
    """DGAL refuses its CHED; CITES (advice) stays silent, and so does DGA (enforced)
    about the war-material licence when it is quoted: the outcomes decided and the
    distinct codes of the decision the trader reads."""
    hub = advised_by_cites(routing_table, keys_dir)
    documents = (
        document("N853", "CHEDP.FR.2026.0001234", 1, "10"),
        document("C638", "CITES-1"),
        *((document("LEMG", "LEMG-FR-2026-0042", 1, "5", "NAR"),) if licence else ()),
    )
    item = goods_item(1, documents, commodity_code="9301100000")
    outboxes = [hub.intake.handle(declaration_xml(items=(item,)), SOURCE)]
    outboxes.append(hub.answer(outboxes[0], "dgal", Verdict.QUANTITY_INSUFFICIENT))
    outboxes.append(tick(hub, 1))
    outcomes = [outcome for o in outboxes for *_, outcome in hub.decisions(o)]
    history = [s.model_dump(mode="json") for o in outboxes for s in hub.statuses(o)]
    seen = trader_history(history, CONFIDENTIAL)
    # Each code once: the DECIDED event lists one a document, and DGA's UNAVAILABLE
    # beside CITES's was one more (the redaction now lists each code once to the trader).
    [codes] = [e["detail"].split("; ") for e in seen if e["kind"] == StatusKind.DECIDED.value]
    explained = [r["code"] for r in trader_status(REF, history, CONFIDENTIAL)["reasons"]]
    assert list(dict.fromkeys(codes)) == explained
    return outcomes, explained


def test_a_silent_licence_beside_an_advisory_silence_reads_to_the_trader_as_without_it(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """DEADLINE names the enforced silent authorities only, DEADLINE_PASSED the advisory
    ones too: the trader's redaction must not take CITES, silent in the history, for an
    authority the DEADLINE names, and keep the DEADLINE DGA's silence alone gave
    (web/redaction.py: what the trader reads is the same with or without the licence)."""
    with_licence, seen_with = refused_beside_silences(routing_table, keys_dir, licence=True)
    without, seen_without = refused_beside_silences(routing_table, keys_dir, licence=False)
    assert with_licence == without == [Outcome.REFUSE]
    assert seen_without == ["QUANTITY_INSUFFICIENT", Verdict.UNAVAILABLE.value, ADVISORY_ONLY]
    assert seen_with == seen_without


def test_the_deadlines_counter_counts_an_advisory_silence_and_says_it_decides_nothing(
    hub: Hub,
) -> None:
    """``gun_hub_deadlines_passed_total`` counts every silent authority's deadline, a
    shadow or advisory one's too (a pilot partner that does not answer is for operations
    to see: docs/decisions.md), so its help must not say each case it counts was decided
    in degraded mode: a release over an advisory silence is not (a review of stop 58,
    second round)."""

    def passed(authority: str) -> float:
        labels = {"authority": authority}
        return REGISTRY.get_sample_value("gun_hub_deadlines_passed_total", labels) or 0.0

    before = passed("cites")
    decision, _ = decided(hub, Verdict.VALID, None)
    assert decision.outcome is Outcome.RELEASE
    assert passed("cites") == before + 1
    [family] = [m for m in REGISTRY.collect() if m.name == "gun_hub_deadlines_passed"]
    assert "decided in degraded mode because" not in family.documentation
