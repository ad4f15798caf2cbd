"""A declaration the hub refused as it is (it does not follow the schema, its XML is
malformed...) was refused with a decision sent to the clearance system. Redriven, the
same bytes are refused again: no second decision, but a new dead letter each time, and
``GunHubDeadLetters`` fires again for a redrive that could do nothing (review stop 39-O,
O9). The desk refuses such a redrive, saying why. One lodged through the gateway, whose
checks should have refused it, stays redrivable: it waits for the two to agree (a rolling
upgrade, another limit), and decided nothing.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gun_contract.dead_letter import HEADER_ERROR_KIND, HEADER_ERROR_REASON, header_value
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.routing import RoutingTable
from gun_hub.ops.dead_letters import MAX_REASON_CHARS
from gun_hub.pipeline.redrive import not_redrivable
from tests.builders import declaration_xml
from tests.unit.test_a_trader_lodges_only_its_own_references import (
    MRN,
    TRADER_A,
    _through_the_gateway,
    at,
)
from tests.unit.test_pipeline import Hub

NOT_IN_THE_SCHEMA = declaration_xml(reference=MRN, version=1, declarant=TRADER_A).replace(
    b"</Declaration>", b"<Unknown/></Declaration>"
)


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


def dead_letter_of(hub: Hub, value: bytes) -> tuple[str, str, list[tuple[str, int, Outcome]]]:
    """The kind and the reason of the one dead letter ``value`` makes, as the view keeps
    them (the reason cut), and the decisions it makes."""
    handled = hub.intake.handle(value, replace(at(1), key=MRN.encode()))
    [letter] = handled.to(hub.topics.dlq)
    kind = header_value(letter.headers, HEADER_ERROR_KIND) or ""
    reason = header_value(letter.headers, HEADER_ERROR_REASON) or ""
    return kind, reason[:MAX_REASON_CHARS], hub.decisions(handled)


def test_a_declaration_refused_with_a_decision_for_its_own_content_is_not_redriven(
    hub: Hub,
) -> None:
    kind, reason, decided = dead_letter_of(hub, NOT_IN_THE_SCHEMA)
    assert kind == "XML_SCHEMA"
    assert [outcome for *_, outcome in decided] == [Outcome.REFUSE]
    why_not = not_redrivable("hub.intake", hub.topics.declarations, hub.topics, kind, reason)
    assert why_not is not None
    assert why_not.startswith("as it is, the declaration is refused again (XML_SCHEMA)")
    assert "corrected version" in why_not


def test_one_lodged_through_the_gateway_waits_for_the_two_to_agree_and_stays_redrivable(
    hub: Hub,
) -> None:
    """Even with a reason longer than the view keeps: what says it came through the
    gateway comes first."""
    long_path = b"<Unknown>" + b"x" * 400 + b"</Unknown></Declaration>"
    unreadable = NOT_IN_THE_SCHEMA.replace(b"<Unknown/></Declaration>", long_path)
    kind, reason, decided = dead_letter_of(hub, _through_the_gateway(hub, unreadable))
    assert kind.startswith("XML_")
    assert decided == []
    assert not_redrivable("hub.intake", hub.topics.declarations, hub.topics, kind, reason) is None


def test_a_declaration_refused_for_a_limit_of_the_settings_is_sent_again_not_redriven(
    hub: Hub,
) -> None:
    """Over GUN_HUB_HUB__MAX_DECLARATION_BYTES, a limit the operator may raise: its REFUSE
    stands, and a redrive would be read as a redelivery of a decided case (stop 56: offered
    until then, it did nothing: the test of a size limit redriven to some effect)."""
    why_not = not_redrivable("hub.intake", hub.topics.declarations, hub.topics, "XML_OVERSIZED")
    assert why_not is not None
    assert "corrected version" in why_not
