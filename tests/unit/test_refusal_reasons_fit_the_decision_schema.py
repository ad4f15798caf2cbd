"""Every ``<Reason>`` the hub emits fits ``decision.xsd``'s ``ReasonTextType`` (at most
2048 characters, contract sections 3 and 4), whatever it quotes.

Intake put libxml2's MALFORMED message, which quoted element names of any length, into
a REFUSE's reason (since stop 39 it quotes nothing), and risk rule descriptions had no
length limit: a decision could fail the schema (found by review, stop 36).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import xmlschema
from hypothesis import given, settings
from hypothesis import strategies as st

from gun_contract.dead_letter import SourcePosition
from gun_contract.model.decision import REASON_TEXT_MAX_CHARS, Decision, Reason
from gun_contract.model.verdicts import Outcome
from gun_contract.resources import schema_path
from gun_hub.domain.risk import RiskRulesError, load_risk_rules
from gun_hub.domain.routing import RoutingTable
from gun_hub.xml.decision_codec import encode_decision
from tests.builders import declaration_xml
from tests.unit.test_pipeline import Hub

XSD = xmlschema.XMLSchema10(str(schema_path("decision.xsd")))
REF = "26FR000690I0000012"


def test_a_refusal_of_a_long_mismatched_tag_fits_the_schema_and_quotes_neither_name(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """Scenario: a declaration whose reference can be read carries a 3000-character
    element name closed by another; libxml2's message quotes both names (a 6000-character
    reason failed the schema before stop 36, then was cut to 2048 characters). Since stop
    39 (C1) the reason names the fault and where, from libxml2's error code, never the
    names: it fits, and the decision validates against decision.xsd."""
    hub = Hub(routing_table, keys_dir)
    name = b"X" * 3000
    broken = declaration_xml().replace(
        b"<Version>1</Version>", b"<Version>1</Version><" + name + b"></Y" + name + b">"
    )
    out = hub.intake.handle(broken, SourcePosition("gun.declarations", 0, 0, REF.encode()))
    [record] = out.to(hub.topics.decision_outbox)
    xml = hub.outbox_document(record).decode()
    XSD.validate(xml)
    [decision] = hub.decision_objects(out)
    assert decision.outcome is Outcome.REFUSE
    [reason] = decision.reasons
    assert reason.code == "XML_MALFORMED"
    assert reason.text == (
        "not well-formed XML: an end tag does not match the start tag it closes "
        "[ERR_TAG_NAME_MISMATCH] (line 2, column 6116)"
    )


def test_a_risk_rule_whose_description_would_not_fit_a_reason_is_refused_at_load(
    tmp_path: Path,
) -> None:
    """Scenario: an operator writes a risk rule whose description is longer than a
    decision's reason may be; loading the rules fails and names the fault, instead of
    every hit cutting it. Found by review, stop 36."""
    path = tmp_path / "rules.toml"
    path.write_text(
        f'[[rules]]\nid = "R1"\ndescription = "{"d" * 1100}"\n'
        'action = "CONTROL_PHYSICAL"\norigin = ["NO"]\n'
    )
    with pytest.raises(RiskRulesError, match="description"):
        load_risk_rules(path, ["dgal", "cites", "dga"])


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=3 * REASON_TEXT_MAX_CHARS))
def test_any_reason_text_gives_a_decision_the_schema_accepts(text: str) -> None:
    """Property: whatever a reason's text holds (any length, characters XML cannot carry
    included), the decision carrying it validates against decision.xsd; a text that fits
    is kept as it is. Found by review, stop 36."""
    reason = Reason(code="XML_MALFORMED", text=text)
    decision = Decision(
        reference=REF,
        version=1,
        outcome=Outcome.REFUSE,
        decided_at=datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
        reasons=(reason,),
    )
    XSD.validate(encode_decision(decision).decode())
    assert len(reason.text) <= REASON_TEXT_MAX_CHARS
    if len(text) <= REASON_TEXT_MAX_CHARS and text.isprintable():
        assert reason.text == text
