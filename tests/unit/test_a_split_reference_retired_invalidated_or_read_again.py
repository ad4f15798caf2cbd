"""A reference split across partitions, retired, invalidated, read again after a crash:
what a review of stop 52's change found (a helper, each finding a failing test first).

The takeover tests' helpers; the workers here retain their cases as the hub does
(``RetainingHub``), and a notice goes through the store the worker hands the takeover
(``told_store``: the live case, else the retired case's marker, app.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.pipeline.takeover import Takeover
from tests.builders import declaration_xml
from tests.unit.test_a_later_version_on_another_partition_takes_over_what_the_earlier_held import (
    BOTH,
    CERT_A,
    CERT_B,
    ONLY_A,
    case_of,
    controlled_quoting_both,
    followed_up,
    gives_back,
    notices_to,
    released_across,
    told,
)
from tests.unit.test_decided_cases_leave_the_hot_table import RETENTION_S, RetainingHub
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import REF, at, requests, unreadable

KEY = REF.encode()


@pytest.fixture
def first(routing_table: RoutingTable, keys_dir: Path) -> RetainingHub:
    """Partition 0's worker, with the retention wired as the worker wires it."""
    return RetainingHub(routing_table, keys_dir)


@pytest.fixture
def other(routing_table: RoutingTable, keys_dir: Path) -> RetainingHub:
    """Partition 1's worker, likewise."""
    return RetainingHub(routing_table, keys_dir)


def told_store(to: RetainingHub, notices: list[bytes], partition: int = 0) -> Effects:
    """As ``told``, through the store the worker hands Takeover (app.py: live case, else
    the retired case's marker)."""
    handle = to._delivered(Takeover(to.context, to.store).handle)
    outbox = Effects()
    for offset, value in enumerate(notices):
        handled = handle(REF, value, SourcePosition("gun.hub.deadlines", partition, offset))
        outbox.records.extend(handled.records)
    return outbox


def retire(hub: RetainingHub) -> None:
    hub.now += timedelta(seconds=RETENTION_S + 1)
    hub.retention_tick()
    assert KEY not in hub.cases, "not retired"


def released_on_the_other_partition_and_retired(first: RetainingHub, other: RetainingHub) -> None:
    """v1 quoting A and B kept for a control on partition 0; v2 RELEASED_AFTER_CONTROL
    quoting only A read on partition 1 (its past unknown there) wrote A off there and,
    told, partition 0 wrote B off; partition 1's release then retired (a marker)."""
    controlled_quoting_both(first)
    released = other.intake.handle(
        declaration_xml(version=2, stage=Stage.RELEASED_AFTER_CONTROL, items=ONLY_A),
        at(0, partition=1),
    )
    assert followed_up(other, released) == {(CERT_A, Operation.WRITE_OFF, 2)}
    assert other.decisions(other.answer(released, "dgal", Verdict.VALID)) == [
        (REF, 2, Outcome.RELEASE)
    ]
    told_store(first, notices_to(other, released, 0))  # partition 0 writes B off
    retire(other)


def test_a_release_retired_on_its_partition_gives_back_what_it_wrote_off_when_told(
    first: RetainingHub, other: RetainingHub
) -> None:
    """v1 kept for a control on partition 0; v2 RELEASED_AFTER_CONTROL quoting A read on
    partition 1 wrote A off there; days later (post-clearance) v3 INVALIDATED is read on
    partition 0. Partition 1's release was retired meanwhile: its marker has
    ``written_off`` None (version 2 first read there) and no ``expected``, so
    ``write_offs_known`` finds nothing and A stays written off at the partner."""
    released_on_the_other_partition_and_retired(first, other)

    invalidated = first.intake.handle(
        declaration_xml(version=3, stage=Stage.INVALIDATED, items=ONLY_A), at(1, partition=0)
    )
    assert gives_back(first, invalidated) == {(CERT_B, 3, True)}
    given = told_store(other, notices_to(first, invalidated, 1), partition=1)
    assert gives_back(other, given) == {(CERT_A, 3, True)}


def test_a_retired_case_that_gives_back_stays_a_marker_and_is_forgotten(
    first: RetainingHub, other: RetainingHub
) -> None:
    """Partition 0's control, taken over by the release read on partition 1 (B written
    off from here), retired; v3 INVALIDATED read on partition 1 tells partition 0, whose
    marker gives B back (right) and is stored as a live case (``store_case`` writes the
    live table): decided with no decision, it is never finalised (``_finalised`` wants a
    decision) and nothing schedules it; the marker's entry is forgotten, the case stays."""
    released_across(first, other)
    retire(first)
    invalidated = other.intake.handle(
        declaration_xml(version=3, stage=Stage.INVALIDATED, items=ONLY_A), at(1, partition=1)
    )
    given = told_store(first, notices_to(other, invalidated, 0))
    assert gives_back(first, given) == {(CERT_B, 3, True)}
    for _ in range(3):  # long after the retention and the marker's time
        first.now += timedelta(days=15)
        first.retention_tick()
    assert KEY not in first.cases, "the marker came back as a live case and never leaves"


def test_a_release_unconfirmed_when_an_invalidation_is_told_sends_its_write_off_first(
    first: RetainingHub, other: RetainingHub
) -> None:
    """v1 released on partition 0, the worker dead before the broker had the decision and
    its write-off of A (announced again later: defect 4). v2 INVALIDATED read on
    partition 1 tells partition 0: ``_invalidated`` gives A back under v2 and marks the
    case taken over, so when the decision is announced again ``follow_up_requests``
    returns nothing (``taken_over_by`` set): A's write-off is never sent; and sent after
    the give-back of v2 the partner would refuse it STALE anyway. A stays reserved under
    v1 at the partner for ever (the give-back answered 05). On one partition the
    invalidation re-announces v1 with its write-off first (intake ``_supersede``)."""
    sent = first.intake.handle(declaration_xml(version=1), at(0, partition=0))
    first.broker_up = False
    assert first.decisions(first.answer(sent, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]
    first.broker_up = True
    invalidated = other.intake.handle(
        declaration_xml(version=2, stage=Stage.INVALIDATED), at(0, partition=1)
    )
    given = told(first, notices_to(other, invalidated, 0))
    assert first.decisions(given) == [(REF, 1, Outcome.RELEASE)]  # announced again, first
    sent_ops = [(r.version, r.operation) for r in requests(first, given)]
    assert sent_ops == [(1, Operation.WRITE_OFF), (2, Operation.GIVE_BACK)]
    again = first.answer(sent, "dgal", Verdict.VALID)  # the answer read again
    assert requests(first, again) == []  # nothing after the give-back


def test_another_declarants_invalidation_has_no_taken_over_case_give_back(
    routing_table: RoutingTable, keys_dir: Path, first: RetainingHub, other: RetainingHub
) -> None:
    """The declarant check (a notice of another trader's version takes nothing over) is
    made after the taken-over branch: a case already taken over gives back what it wrote
    off for any INVALIDATED notice, whoever's. Here v99 INVALIDATED in another trader's
    name, read on partition 2 (no case there), has partition 0 give B back."""
    released_across(first, other)
    third = Hub(routing_table, keys_dir)
    forged = third.intake.handle(
        declaration_xml(version=99, stage=Stage.INVALIDATED, declarant="DE999999999999999"),
        at(0, partition=2),
    )
    handed = told(first, notices_to(third, forged, 0))
    assert gives_back(first, handed) == set()


def test_a_notice_read_again_after_an_invalidation_still_sends_its_write_off(
    first: RetainingHub, other: RetainingHub
) -> None:
    """Crash/redelivery. Partition 0 reads v2's notice (RELEASED_AFTER_CONTROL: write off
    B from here under v2) and v3's (INVALIDATED: give B back under v3), and dies before
    the broker has either's requests (the changelog has the case: issue 10, defect 9).
    Read again, v2's notice finds ``taken_over_by`` 3 (``_invalidated`` moved it and
    emptied ``handed_over``): nothing sent again; v3's sends the give-back. B was never
    written off: its v1 reservation is kept at the partner for ever, the give-back
    answered 05."""
    controlled_quoting_both(first)
    released = other.intake.handle(
        declaration_xml(version=2, stage=Stage.RELEASED_AFTER_CONTROL, items=ONLY_A),
        at(0, partition=1),
    )
    invalidated = other.intake.handle(
        declaration_xml(version=3, stage=Stage.INVALIDATED, items=ONLY_A), at(1, partition=1)
    )
    both = [*notices_to(other, released, 0), *notices_to(other, invalidated, 0)]
    first.broker_up = False
    told(first, both)  # handled, their requests lost with the worker
    first.broker_up = True
    again = told(first, both)
    assert followed_up(first, again) == {(CERT_B, Operation.WRITE_OFF, 2)}
    assert gives_back(first, again) == {(CERT_B, 3, True)}


def test_a_version_refused_unread_after_a_release_keeps_its_write_off_to_give_back(
    first: RetainingHub, other: RetainingHub
) -> None:
    """The release after control read on partition 1 (first there: ``written_off`` None,
    A written off by it). v3 refused unread on partition 1: its case's ``written_off`` is
    ``written_off(v2) or []`` = [] (None, "not known", made "nothing"). v4 INVALIDATED on
    partition 1 then gives back nothing from there: A stays written off. Without v3 it
    gives A back (as quoted)."""
    released_across(first, other)
    other.intake.handle(unreadable(3), at(1, partition=1))
    invalidated = other.intake.handle(
        declaration_xml(version=4, stage=Stage.INVALIDATED, items=ONLY_A), at(2, partition=1)
    )
    assert gives_back(other, invalidated) == {(CERT_A, 4, True)}


def test_a_lower_version_read_after_a_notice_took_its_predecessor_over_is_stale(
    first: RetainingHub, other: RetainingHub
) -> None:
    """v1 on partition 0 (a control), v3 read on partition 1 takes it over; v2's record
    then read on partition 0 (behind, or sent late). On one partition, or where the notice
    found no case (a marker), v2 is ignored and recorded (contract section 4); here it is
    NEW: asked, reserving under v2, and decided."""
    controlled_quoting_both(first)
    third = other.intake.handle(declaration_xml(version=3, items=BOTH), at(0, partition=1))
    told(first, notices_to(other, third, 0))
    late = first.intake.handle(declaration_xml(version=2, items=BOTH), at(1, partition=0))
    assert first.status_kinds(late) == [StatusKind.IGNORED_STALE_VERSION]
    assert requests(first, late) == []


def test_a_control_taken_over_by_a_release_before_the_upgrade_gives_its_write_off_back(
    first: RetainingHub, other: RetainingHub
) -> None:
    """A case stop 51's hub stored when a release after control read elsewhere took it
    over: B written off from here under v2, ``handed_over`` [B], no ``handed_over_as``
    (the field is new). ``own_write_offs`` counts ``handed_over`` only with WRITE_OFF, so
    an invalidation told after the upgrade gives nothing back: B stays written off. "A
    write-off asked counts, answered or not: a give-back of a document the partner never
    wrote off is answered 02, one left out would lose quantity" (lifecycle.written_off)."""
    released_across(first, other)
    stored = case_of(first)
    assert stored.handed_over_as is Operation.WRITE_OFF
    first.cases[KEY] = stored.model_copy(update={"handed_over_as": None}).to_bytes()
    invalidated = other.intake.handle(
        declaration_xml(version=3, stage=Stage.INVALIDATED, items=ONLY_A), at(1, partition=1)
    )
    given = told(first, notices_to(other, invalidated, 0))
    assert gives_back(first, given) == {(CERT_B, 3, True)}


def test_another_declarants_invalidation_has_no_retired_release_give_back(
    routing_table: RoutingTable, keys_dir: Path, first: RetainingHub, other: RetainingHub
) -> None:
    """A retired case's marker named no declarant, so the declarant check could not be
    made on it: another trader's invalidation read on a third partition had the retired
    release give back what it wrote off. The marker keeps the declarant's tag now."""
    released_on_the_other_partition_and_retired(first, other)
    third = Hub(routing_table, keys_dir)
    forged = third.intake.handle(
        declaration_xml(version=99, stage=Stage.INVALIDATED, declarant="DE999999999999999"),
        at(0, partition=2),
    )
    given = told_store(other, notices_to(third, forged, 1), partition=1)
    assert gives_back(other, given) == set()


def test_an_invalidation_read_where_a_retired_release_kept_its_own_write_offs_gives_them_back(
    first: RetainingHub, other: RetainingHub
) -> None:
    """Partition 1's release after control (v2, its past read on partition 0, so unknown
    here) wrote A off and was retired: its marker keeps A apart (``own_written_off``).
    v3 INVALIDATED read on partition 1 quoting only B (the clearance system's
    invalidation need not quote what the release did): it gave back B as quoted and
    nothing of A, which stayed written off at the partner (stop 52's open item). It gives
    back what it quotes and what the marker knows its own versions wrote off."""
    released_on_the_other_partition_and_retired(first, other)
    only_b = (BOTH[1],)
    invalidated = other.intake.handle(
        declaration_xml(version=3, stage=Stage.INVALIDATED, items=only_b), at(1, partition=1)
    )
    assert gives_back(other, invalidated) == {(CERT_A, 3, True), (CERT_B, 3, True)}
    given = told_store(first, notices_to(other, invalidated, 0))
    assert gives_back(first, given) == {(CERT_B, 3, True)}


def test_a_marker_that_gave_its_write_offs_back_does_not_give_them_back_again(
    first: RetainingHub, other: RetainingHub
) -> None:
    """A marker told of an invalidation read on the other partition gave its write-offs
    back (and recorded them given back); a later INVALIDATED version read on its own
    partition gave them back again, under the new version: ``own_past`` was the marker's
    ``own_written_off``, not less what it gave back since (review of stop 53's change;
    the partner answers 03, a redundant call and a misleading status)."""
    released_on_the_other_partition_and_retired(first, other)
    invalidated = first.intake.handle(
        declaration_xml(version=3, stage=Stage.INVALIDATED, items=ONLY_A), at(1, partition=0)
    )
    assert gives_back(first, invalidated) == {(CERT_B, 3, True)}
    given = told_store(other, notices_to(first, invalidated, 1), partition=1)
    assert gives_back(other, given) == {(CERT_A, 3, True)}  # the marker gave A back
    again = other.intake.handle(
        declaration_xml(version=4, stage=Stage.INVALIDATED, items=(BOTH[1],)),
        at(2, partition=1),
    )
    assert gives_back(other, again) == {(CERT_B, 4, True)}
