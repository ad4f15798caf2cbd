"""A trader's withdrawal refused over a case that did not open leaves its declaration its own.

``Intake._refuse_over_unreadable`` refuses a readable version whose stored case does not
open, and stores the refused case in its place "so the next version is decided as ever";
that case keeps the refused version's stage. 5030031 refuses a trader's gateway version
over a case of stage CANCELLED "decided or not" (domain/trader_stages.py), without
looking at what was decided. So a trader's CANCELLED, refused STATE_UNREADABLE (nothing
deleted, nothing withdrawn: the hub did not act on it), ends the declaration all the
same: the trader's next version, a withdrawal lodged again or a correction, is refused
AMENDMENT_NOT_PERMITTED, "version 2 was lodged CANCELLED". The declaration stays
refused, its earlier reservations unknown to the hub, and its declarant can neither
withdraw nor amend it through the gateway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gun_contract.dead_letter import HEADER_ERROR_KIND, SourcePosition, header_value
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import SealedStore, StateCipher
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.retention import RetainedCases
from gun_hub.pipeline.unreadable_state import STATE_UNREADABLE
from tests.builders import declaration_xml
from tests.unit.test_a_case_that_does_not_open_is_refused_and_forgotten import SealedHub
from tests.unit.test_pipeline import Hub

TRADER = "FR12345678901234"
REFERENCE = f"{TRADER}-INV-0001"
KEY = REFERENCE.encode()


def at(offset: int) -> SourcePosition:
    return SourcePosition("gun.declarations", 0, offset, KEY)


@pytest.fixture
def sealed(routing_table: RoutingTable, keys_dir: Path) -> SealedHub:
    below: dict[bytes, bytes] = {}
    cipher = StateCipher.load(keys_dir, HUB_PARTY)
    store = RetainedCases(SealedStore(below, cipher, "cases"), dict[bytes, bytes](), cipher)
    return SealedHub(Hub(routing_table, keys_dir, cases=store), below, store)


async def lodged(sealed: SealedHub, version: int, stage: Stage, offset: int) -> Any:
    hub = sealed.hub
    xml = declaration_xml(reference=REFERENCE, version=version, stage=stage, declarant=TRADER)
    data = hub.sealed_by_gateway(xml)
    return await sealed.handled(
        lambda: hub.intake.handle(data, at(offset)), data, at(offset), "intake"
    )


async def test_a_trader_withdraws_again_after_its_withdrawal_was_refused_unacted(
    sealed: SealedHub,
) -> None:
    hub = sealed.hub
    first = await lodged(sealed, 1, Stage.LODGED, 0)
    assert first.to(hub.topics.requests("dgal"))  # undecided: still the trader's
    value = sealed.below[KEY]
    sealed.below[KEY] = value[:-1] + bytes([value[-1] ^ 1])  # no longer opens

    withdrawn = await lodged(sealed, 2, Stage.CANCELLED, 1)
    assert hub.decisions(withdrawn) == [(REFERENCE, 2, Outcome.REFUSE)]
    kinds = [header_value(r.headers, HEADER_ERROR_KIND) for r in withdrawn.to(hub.topics.dlq)]
    assert kinds == [STATE_UNREADABLE]

    again = await lodged(sealed, 3, Stage.CANCELLED, 2)
    kinds = [header_value(r.headers, HEADER_ERROR_KIND) for r in again.to(hub.topics.dlq)]
    assert kinds == [], "a withdrawal the hub refused unacted ended the declaration"
    assert hub.decisions(again) or again.to(hub.topics.requests("dgal")), "not taken"
