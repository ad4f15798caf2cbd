"""A past the hub does not know stays unknown, on one partition too: an invalidation after
it gives back what it quotes (intake ``give_back``), never nothing.

Found by a second review of stop 52's split-reference change: opening a version first
seen above version 1 with "nothing written off" (meant for a reference split across
partitions) lost the quantity on the ordinary path, one reference on one partition, for a
declaration whose lodging the hub never saw or has forgotten; and a version refused
unread made such a past "nothing" (older). A retired case's marker keeps its own
write-offs apart instead (``Case.own_written_off``), its past staying unknown."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from tests.builders import declaration_xml
from tests.unit.test_a_later_version_on_another_partition_takes_over_what_the_earlier_held import (
    BOTH,
    CERT_A,
    CERT_B,
    ONLY_A,
    gives_back,
)
from tests.unit.test_decided_cases_leave_the_hot_table import RETENTION_S, RetainingHub
from tests.unit.test_versions_and_recovery import REF, at, unreadable


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> RetainingHub:
    return RetainingHub(routing_table, keys_dir)


def given_back(hub: RetainingHub, outbox: Effects) -> set[str]:
    return {document for document, _, _ in gives_back(hub, outbox)}


def test_an_unknown_past_on_one_partition_is_still_given_back_as_quoted(
    hub: RetainingHub,
) -> None:
    """One partition. Version 1 (released, A written off) the hub never saw or has
    forgotten (its marker dropped after decided_marker_s). Version 2, a post-clearance
    amendment quoting A, is refused (A used up by version 1's write-off). Version 3
    INVALIDATED quoting A must give A back as quoted: the hub does not know the past
    (intake ``give_back``). Opened with ``written_off=[]`` (no case, version 2 > 1: it
    tells the other partitions), version 2 made the past "nothing written off", and
    version 3 gave nothing back: A's quantity lost."""
    sent = hub.intake.handle(declaration_xml(version=2, items=ONLY_A), at(0))
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.QUANTITY_INSUFFICIENT)) == [
        (REF, 2, Outcome.REFUSE)
    ]
    invalidated = hub.intake.handle(
        declaration_xml(version=3, stage=Stage.INVALIDATED, items=ONLY_A), at(1)
    )
    assert CERT_A in given_back(hub, invalidated)


def test_a_retired_first_seen_version_keeps_its_past_unknown(hub: RetainingHub) -> None:
    """One partition. Version 1 (quoting A and B, released: both written off) the hub
    never saw or forgot. Version 2, an amendment quoting only A, released (A written off
    under it), retired: its marker. Version 3 INVALIDATED quoting A and B: the past
    before version 2 is unknown, so B is given back as quoted; with the past made
    "nothing", the marker knew only A, and B stayed written off."""
    sent = hub.intake.handle(declaration_xml(version=2, items=ONLY_A), at(0))
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.VALID)) == [(REF, 2, Outcome.RELEASE)]
    hub.now += timedelta(seconds=RETENTION_S + 1)
    hub.retention_tick()
    assert REF.encode() not in hub.cases  # retired: a marker
    invalidated = hub.intake.handle(
        declaration_xml(version=3, stage=Stage.INVALIDATED, items=BOTH), at(1)
    )
    assert CERT_B in given_back(hub, invalidated)


def test_a_first_seen_version_refused_unread_keeps_its_past_unknown(hub: RetainingHub) -> None:
    """Version 2 refused unread with no case (version 1 never seen or forgotten) opened
    with ``written_off=[]``: version 3 INVALIDATED quoting A and B gave nothing back,
    where with no refused version 2 it gives both back as quoted."""
    hub.intake.handle(unreadable(2), at(0))
    invalidated = hub.intake.handle(
        declaration_xml(version=3, stage=Stage.INVALIDATED, items=BOTH), at(1)
    )
    assert given_back(hub, invalidated) == {CERT_A, CERT_B}
