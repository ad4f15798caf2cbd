"""Issue 11, item 2: declarations travel sealed by the clearance system.

Anyone who can write ``gun.declarations`` could inject or supersede declarations (a
version 99 makes every real version stale), and war-material licence numbers sat in clear
on the topic and in its dead letters. Each test performs the attack and sees it fail.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gun_contract.dead_letter import (
    HEADER_ERROR_CLASS,
    HEADER_ERROR_KIND,
    SourcePosition,
    header_value,
)
from gun_contract.envelope import ContentType
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.security.entitlements import CLEARANCE_PARTY, GATEWAY_PARTY, HUB_PARTY
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.intake import NOT_SEALED
from tests.builders import EORI, declaration_xml, document, goods_item
from tests.unit.test_pipeline import Hub

REF = "26FR000690I0000012"
LICENCE = "LEMG-SECRET-0042"


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    """The pipeline with a production intake: sealed declarations only."""
    return Hub(routing_table, keys_dir).sealed_only()


def sealed_by(hub: Hub, party: str, xml: bytes, *, topic: str | None = None) -> bytes:
    return hub.envelope(party).seal(
        xml,
        recipient=HUB_PARTY,
        topic=topic or hub.topics.declarations,
        content_type=ContentType.XML,
    )


def at(offset: int) -> SourcePosition:
    return SourcePosition("gun.declarations", 0, offset, REF.encode())


def test_a_declaration_sealed_by_the_clearance_system_is_decided(hub: Hub) -> None:
    sent = hub.intake.handle(sealed_by(hub, CLEARANCE_PARTY, declaration_xml()), at(0))
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]


def test_a_declaration_sealed_by_the_intake_gateway_is_decided_the_same_way(hub: Hub) -> None:
    """The HTTP and file-drop channels lodge through the gateway's own keys (ADR 0011)."""
    reference = f"{EORI}-INV-1"  # a trader's own (domain/reference_namespace.py)
    sent = hub.intake.handle(
        sealed_by(hub, GATEWAY_PARTY, declaration_xml(reference=reference)),
        dataclasses.replace(at(0), key=reference.encode()),
    )
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.VALID)) == [
        (reference, 1, Outcome.RELEASE)
    ]


def test_a_plain_declaration_is_dead_lettered_and_never_acted_on(hub: Hub) -> None:
    out = hub.intake.handle(declaration_xml(version=99), at(0))
    [dead] = out.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == NOT_SEALED
    assert header_value(dead.headers, HEADER_ERROR_CLASS) == "security"
    assert hub.decisions(out) == []
    assert out.to(hub.topics.status) == []
    assert hub.cases == {}


def test_a_forged_version_99_does_not_make_the_real_versions_stale(hub: Hub) -> None:
    hub.intake.handle(declaration_xml(version=99), at(0))  # plain: a forgery
    real = hub.intake.handle(sealed_by(hub, CLEARANCE_PARTY, declaration_xml(version=1)), at(1))
    assert len(real.to(hub.topics.requests("dgal"))) == 1


@pytest.mark.parametrize("party", ["dgal", "hub"])
def test_a_declaration_sealed_by_any_other_party_is_refused(hub: Hub, party: str) -> None:
    out = hub.intake.handle(sealed_by(hub, party, declaration_xml()), at(0))
    [dead] = out.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == "ENVELOPE_NOT_ENTITLED"
    assert hub.cases == {}


def test_a_declaration_sealed_for_another_topic_is_refused(hub: Hub) -> None:
    value = sealed_by(hub, CLEARANCE_PARTY, declaration_xml(), topic=hub.topics.decisions)
    [dead] = hub.intake.handle(value, at(0)).to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) in {
        "ENVELOPE_WRONG_TOPIC",
        "ENVELOPE_NOT_ENTITLED",
    }
    assert hub.cases == {}


def test_a_sealed_declaration_published_again_elsewhere_is_a_replay(hub: Hub) -> None:
    value = sealed_by(hub, CLEARANCE_PARTY, declaration_xml())
    hub.intake.handle(value, at(0))
    [dead] = hub.intake.handle(value, at(7)).to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == "ENVELOPE_REPLAY"


def test_an_unreadable_sealed_declaration_is_refused_and_its_dead_letter_stays_sealed(
    hub: Hub,
) -> None:
    broken = declaration_xml(items=(goods_item(1, (document("LEMG", LICENCE, 1, "-5", "NAR"),)),))
    value = sealed_by(hub, CLEARANCE_PARTY, broken)
    out = hub.intake.handle(value, at(0))
    assert hub.decisions(out) == [(REF, 1, Outcome.REFUSE)]
    [dead] = out.to(hub.topics.dlq)
    assert dead.value == value  # kept as received: encrypted at rest
    assert LICENCE.encode() not in dead.value
