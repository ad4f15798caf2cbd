"""A trader lodging through the single window's gateway lodges only references of its
own: its EORI, then a separator (found by review in stop 35).

A reference is the key of everything, and the first version read names the case's
declarant. Customs references are sequential, so a trader with a valid portal token could
lodge, in its own name, the reference another trader's clearance system was about to use:
the genuine declaration was then ignored as a stale version, its next versions refused
as another declarant's, and the clearance system got, for that reference, a decision on
the trader's content. Both the gateway and the hub refuse such a lodgement; the hub
without touching the case or deciding anything about the reference.
"""

from __future__ import annotations

from dataclasses import replace
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
from gun_contract.security.entitlements import GATEWAY_PARTY, HUB_PARTY
from gun_hub.domain.case import Case
from gun_hub.domain.reference_namespace import is_declarants_reference
from gun_hub.domain.routing import RoutingTable
from gun_hub.gateway.lodging import DeclarationCheck, LodgementRefused, Lodger
from gun_hub.pipeline.intake import REFERENCE_NOT_THE_DECLARANTS
from tests.builders import declaration_xml, goods_item
from tests.unit.test_pipeline import SOURCE, Hub

TRADER_A = "FR12345678901234"
TRADER_B = "DE999999999999999"
MRN = "26FR000690I0000013"  # the next reference the clearance system will lodge


def at(offset: int) -> SourcePosition:
    return replace(SOURCE, offset=SOURCE.offset + offset)


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


def _through_the_gateway(hub: Hub, xml: bytes) -> bytes:
    return hub.envelope(GATEWAY_PARTY).seal(
        xml, recipient=HUB_PARTY, topic=hub.topics.declarations, content_type=ContentType.XML
    )


@pytest.mark.parametrize(
    ("reference", "eori", "its_own"),
    [
        (f"{TRADER_B}-INV-001", TRADER_B, True),
        (f"{TRADER_B}_2026/7", TRADER_B, True),
        (f"{TRADER_B}.7", TRADER_B, True),
        (MRN, TRADER_B, False),  # a customs reference: nobody's namespace
        (f"{TRADER_A}-INV-001", TRADER_B, False),  # another trader's
        (f"{TRADER_B}7-INV-001", TRADER_B, False),  # another EORI that begins like it
        (f"{TRADER_B}/INV-001", TRADER_B, False),  # "/": a path segment of the lookup
        (TRADER_B, TRADER_B, False),  # the EORI alone
    ],
)
def test_a_traders_references_are_its_eori_then_a_separator(
    reference: str, eori: str, its_own: bool
) -> None:
    assert is_declarants_reference(reference, eori) is its_own


def test_the_gateway_refuses_a_reference_that_is_not_the_declarants() -> None:
    check = DeclarationCheck(1_000_000)
    lodger = Lodger("the portal token's trader", frozenset({TRADER_B}))
    with pytest.raises(LodgementRefused) as refused:
        check.check(declaration_xml(reference=MRN, declarant=TRADER_B), lodger)
    assert refused.value.kind == REFERENCE_NOT_THE_DECLARANTS
    assert refused.value.status == 403
    assert f"{TRADER_B}- (or {TRADER_B}. or {TRADER_B}_)" in str(refused.value)
    assert f"{TRADER_B}/" not in str(refused.value)  # "/" would be refused again
    own = check.check(declaration_xml(reference=f"{TRADER_B}-1", declarant=TRADER_B), lodger)
    assert own.reference == f"{TRADER_B}-1"


def test_the_hub_refuses_a_gateway_lodgement_under_a_reference_not_the_declarants(
    hub: Hub,
) -> None:
    """The squat: trader B lodges the clearance system's next reference in its own name,
    quoting nothing to check. Refused as a security dead letter, no decision, no case;
    trader A's genuine declaration is then decided as if nothing had happened."""
    squat = declaration_xml(
        reference=MRN, version=1, declarant=TRADER_B, items=(goods_item(documents=()),)
    )
    refused = hub.intake.handle(_through_the_gateway(hub, squat), replace(SOURCE, key=MRN.encode()))
    [dead] = refused.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == REFERENCE_NOT_THE_DECLARANTS
    assert header_value(dead.headers, HEADER_ERROR_CLASS) == "security"
    assert hub.decisions(refused) == []
    assert hub.statuses(refused) == []  # the reference's history is its declarant's
    assert hub.cases == {}

    genuine = hub.intake.handle(
        declaration_xml(reference=MRN, version=1, declarant=TRADER_A),
        at(1),
    )
    assert genuine.to(hub.topics.dlq) == []
    assert hub.decisions(hub.answer(genuine, "dgal", Verdict.VALID)) == [(MRN, 1, Outcome.RELEASE)]


def test_the_hub_decides_a_gateway_lodgement_under_the_declarants_own_reference(
    hub: Hub,
) -> None:
    reference = f"{TRADER_B}-INV-001"
    lodged = hub.intake.handle(
        _through_the_gateway(hub, declaration_xml(reference=reference, declarant=TRADER_B)),
        replace(SOURCE, key=reference.encode()),
    )
    assert lodged.to(hub.topics.dlq) == []
    assert hub.decisions(hub.answer(lodged, "dgal", Verdict.VALID)) == [
        (reference, 1, Outcome.RELEASE)
    ]


def test_an_unreadable_gateway_lodgement_is_dead_lettered_without_a_decision(hub: Hub) -> None:
    """The gateway checks as the hub does: one the hub cannot read means the two disagree
    (a rolling upgrade, another size limit). Its reference is sniffed, not verified as the
    declarant's, so it decides nothing about that reference and supersedes nothing."""
    hub.intake.handle(declaration_xml(reference=MRN, version=1, declarant=TRADER_A), SOURCE)
    case = hub.cases[MRN.encode()]
    unreadable = declaration_xml(reference=MRN, version=2, declarant=TRADER_B).replace(
        b"</Declaration>", b"<Unknown/></Declaration>"
    )
    refused = hub.intake.handle(
        _through_the_gateway(hub, unreadable),
        at(1),
    )
    assert len(refused.to(hub.topics.dlq)) == 1
    assert hub.decisions(refused) == []
    assert refused.to(hub.topics.requests("dgal")) == []  # A's reservation not deleted
    assert hub.cases[MRN.encode()] == case


def test_a_version_refused_unread_keeps_the_declarant_its_case_named(hub: Hub) -> None:
    """A later version refused unread supersedes the case (refused, its reservations
    deleted), but the case goes on naming its declarant: the next version of another
    declarant is still refused (before, the refused case named nobody, and any
    declarant's next version was taken)."""
    hub.intake.handle(declaration_xml(reference=MRN, version=1, declarant=TRADER_A), SOURCE)
    unreadable = declaration_xml(reference=MRN, version=2, declarant=TRADER_B).replace(
        b"</Declaration>", b"<Unknown/></Declaration>"
    )
    refused = hub.intake.handle(unreadable, at(1))
    # Version 1, superseded undecided, gets its own REFUSE first (review stop 40, W4).
    assert [d[1:] for d in hub.decisions(refused)] == [(1, Outcome.REFUSE), (2, Outcome.REFUSE)]
    assert Case.from_bytes(hub.cases[MRN.encode()]).declarant_eori == TRADER_A

    taken = hub.intake.handle(
        declaration_xml(reference=MRN, version=3, declarant=TRADER_B),
        at(2),
    )
    [dead] = taken.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == "DECLARANT_CHANGED"
    assert Case.from_bytes(hub.cases[MRN.encode()]).version == 2
