"""A takeover notice on the hub's deadlines topic carries no war-material licence in clear.

A version read on another partition than its earlier versions tells every other
partition of the hub's deadlines topic what it restates (takeover.py, stop 50, F1): the
(authority, document reference) pairs of the documents it quotes, as JSON in clear. With
a DGA licence among them, the licence travels in clear on ``gun.hub.deadlines`` (kept 7
days, once per other partition), where everything else the hub keeps of it is sealed or
left out: the declaration (JWE), the requests (JWE), the cases and retention markers
(state key), the outbox (state key), the status and facts (left out). docs/security.md,
"Confidential data at rest": each place is "either encrypted or the confidential part is
left out (issue 11, item 2)"; the deadlines topic is not among the places it lists, nor
among those "not covered yet". The state key exists for exactly this: "encryption at
rest protects the changelog on the brokers and in their backups".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.model.declaration import Stage
from gun_hub.domain.case import Case
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.takeover import NOTICE_STATE, Notice, Takeover, is_notice
from gun_hub.web.dead_letters import describe_value
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_a_case_that_does_not_open_is_refused_and_forgotten import (
    GARBAGE,
    KEY,
    SealedHub,
    sealed,
)
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import REF, at

__all__ = ["sealed"]  # the fixture, used by name below

LICENCE = "LEMG-FR-2026-0042"
ITEMS = (
    goods_item(
        1,
        documents=(document("LEMG", LICENCE, 1, "3", "NAR"),),
        commodity_code="9301100000",
    ),
)


def test_a_version_read_on_another_partition_tells_the_others_without_the_licence(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    # Version 2, the first this partition sees: it tells every other partition.
    outbox = hub.intake.handle(
        declaration_xml(version=2, stage=Stage.LODGED, items=ITEMS), at(0, partition=1)
    )
    notices = [r for r in outbox.to(hub.topics.deadlines) if r.key == REF.encode()]
    assert notices, "a version first read above 1 tells the other partitions"
    in_clear = [r.partition for r in notices if LICENCE.encode() in (r.value or b"")]
    assert in_clear == [], (
        f"the DGA licence {LICENCE} is in clear on {hub.topics.deadlines}, partitions "
        f"{in_clear}: {notices[0].value!r}"
    )


async def test_a_notice_dead_lettered_does_not_show_the_licence_to_the_dead_letter_desk(
    sealed: SealedHub, routing_table: RoutingTable, keys_dir: Path
) -> None:
    """The notice is the dead letter's value when its handling fails (a case there that
    does not open: STATE_UNREADABLE; any bug: UNHANDLED_ERROR). Not sealed to a party, the
    dead-letter desk shows it as ``plain`` and hands it whole to a dead-letter operator
    (``gun-hub dlq show --payload``), where a declaration's dead letter stays sealed
    (docs/security.md: "the desk never opens a sealed value")."""
    hub = sealed.hub
    source = at(0, partition=0)
    await sealed.handled(
        lambda: hub.intake.handle(declaration_xml(version=1), source),
        declaration_xml(version=1),
        source,
        "intake",
    )
    sealed.below[KEY] = GARBAGE  # the case of version 1 here no longer opens
    other = Hub(routing_table, keys_dir)  # the worker of partition 1
    told = other.intake.handle(
        declaration_xml(version=2, stage=Stage.LODGED, items=ITEMS), at(0, partition=1)
    )
    [notice] = [r.value for r in told.to(other.topics.deadlines) if r.partition == 0]
    where = SourcePosition(hub.topics.deadlines, 0, 5, KEY)
    handled = await sealed.handled(
        lambda: Takeover(hub.context, sealed.store).handle(REF, notice, where),
        notice,
        where,
        "deadlines",
    )
    [letter] = handled.to(hub.topics.dlq)
    assert describe_value(letter.value)["form"] == "state-sealed"  # never shown in clear
    assert LICENCE.encode() not in letter.value, (
        f"the dead letter of the notice holds the DGA licence in clear: {letter.value!r}"
    )


def test_a_sealed_notice_that_does_not_open_is_refused_as_the_notice_not_the_case(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """A notice sealed for another reference (moved under this key) does not open: a
    ValueError naming the notice (the agent dead-letters it), never StateUnreadable,
    which the agent takes for the reference's case not opening."""
    hub = Hub(routing_table, keys_dir)
    told = hub.intake.handle(
        declaration_xml(version=2, stage=Stage.LODGED, items=ITEMS), at(0, partition=1)
    )
    [notice, *_] = [r.value for r in told.to(hub.topics.deadlines) if r.key == REF.encode()]
    with pytest.raises(ValueError, match=f"takeover notice that does not open.*{NOTICE_STATE}"):
        Takeover(hub.context, hub.cases).handle("another-reference", notice, at(0))


def test_a_notice_in_clear_from_a_worker_before_the_upgrade_is_still_read(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """Workers before stop 56 wrote the notice's JSON in clear; one still on the topic
    through an upgrade takes over as it did."""
    first = Hub(routing_table, keys_dir)
    first.intake.handle(declaration_xml(version=1, items=ITEMS), at(0, partition=0))
    in_clear = Notice(2, "gun.declarations/1/0", Stage.LODGED, "", frozenset()).to_bytes()
    assert is_notice(in_clear)
    Takeover(first.context, first.cases).handle(REF, in_clear, at(1, partition=0))
    assert Case.from_bytes(first.cases[REF.encode()]).taken_over_by == 2
