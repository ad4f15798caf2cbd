"""A later version of a reference read on another partition takes over what the earlier
version's case holds (outside audit of stop 50, F1).

The clearance system's producers choose partitions (contract section 2), so a control's
result may arrive on another partition than the control: version 1 decided
CONTROL_DOCUMENTARY on partition 0, its RELEASED_AFTER_CONTROL on partition 1. Cases are
kept per partition (ADR 0005), so partition 1 wrote off what it was quoted and released,
and partition 0's case went on keeping its reservations for a control that had ended:
reported CONTROL_RESULT_OVERDUE to operations a week later (false), and never retired.
A version whose earlier versions its partition did not see (its first there, above 1, or
a gap in its numbers) now tells the other partitions on the hub's deadlines topic, and
each partition holding a lower version of the reference hands it over to that version.

Here two hubs stand for two partitions' workers: each has its own case table, as two
partitions do; the notices go from one to the other as the deadlines topic carries them.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from gun_contract.dead_letter import HEADER_ERROR_KIND, SourcePosition, header_value
from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.case import Case
from gun_hub.domain.lifecycle import (
    held_reservations,
    kept_for_control,
    write_offs_known,
    written_off,
)
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.facts import FACT, GivenBackFact, WriteOffFact
from gun_hub.pipeline.takeover import NOTICE_STATE, Notice, Takeover
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_decided_cases_leave_the_hot_table import RetainingHub
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import REF, at, requests, unreadable

PARTITIONS = 4  # the unit hub's outbox_partitions: every hub topic has as many


@pytest.fixture
def first(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    """The worker of partition 0, where version 1 was read."""
    return Hub(routing_table, keys_dir)


@pytest.fixture
def other(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    """The worker of partition 1, where a later version is read."""
    return Hub(routing_table, keys_dir)


def held_for_control(hub: Hub) -> None:
    """Version 1 lodged on partition 0; DGAL silent: a documentary control keeps it."""
    hub.intake.handle(declaration_xml(version=1), at(0, partition=0))
    hub.now += timedelta(seconds=31)
    ticked = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 0))
    assert hub.decisions(ticked) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]


def notices_to(hub: Hub, outbox: Effects, partition: int) -> list[bytes]:
    return [
        r.value
        for r in outbox.to(hub.topics.deadlines)
        if r.partition == partition and r.key == REF.encode()
    ]


def opened(hub: Hub, notices: list[bytes]) -> list[Notice]:
    """What ``notices`` say (each sealed with its own nonce: the bytes always differ)."""
    return [
        Notice.from_bytes(hub.context.outbox_cipher.open(NOTICE_STATE, REF, n)) for n in notices
    ]


def told(to: Hub, notices: list[bytes], partition: int = 0) -> Effects:
    """``notices`` handled by the worker of ``partition``, as its deadlines agent does,
    delivered as the harness's broker delivers (confirmed, or lost with a crash)."""
    handle = to._delivered(Takeover(to.context, to.cases).handle)
    outbox = Effects()
    for offset, value in enumerate(notices):
        handled = handle(REF, value, SourcePosition("gun.hub.deadlines", partition, offset))
        outbox.records.extend(handled.records)
    return outbox


def notice(version: int) -> bytes:
    """A notice of a lodged version read on partition 1, in clear as a worker before stop
    56 sent it (still read: the sealed ones come from the intake in the tests)."""
    return Notice(version, "gun.declarations/1/0", Stage.LODGED, "", frozenset()).to_bytes()


def case_of(hub: Hub) -> Case:
    return Case.from_bytes(hub.cases[REF.encode()])


def test_a_release_after_control_on_another_partition_ends_the_control_kept_on_the_first(
    first: Hub, other: Hub
) -> None:
    held_for_control(first)
    released = other.intake.handle(
        declaration_xml(version=2, stage=Stage.RELEASED_AFTER_CONTROL), at(0, partition=1)
    )
    # Every other partition is told, none twice, its own not at all.
    notified = {r.partition for r in released.to(other.topics.deadlines) if r.key == REF.encode()}
    assert notified == set(range(PARTITIONS)) - {1}
    handed_over = told(first, notices_to(other, released, 0))

    case = case_of(first)
    assert not kept_for_control(case)
    assert held_reservations(case) == []  # the later version's case follows them up
    assert first.open_cases.get(REF.encode()) is None  # no control waited for
    assert [(s.version, s.kind) for s in first.statuses(handed_over)] == [
        (1, StatusKind.TAKEN_OVER_BY_LATER_VERSION)
    ]
    assert requests(first, handed_over) == []  # nothing deleted nor written off here
    assert first.decisions(handed_over) == []

    # A week on, the control is not reported overdue: its result came, elsewhere.
    first.now += timedelta(seconds=first.control_report_after_s + 60)
    ticked = first.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 1))
    assert StatusKind.CONTROL_RESULT_OVERDUE not in first.status_kinds(ticked)


def test_an_undecided_earlier_version_is_decided_superseded_as_on_its_own_partition(
    first: Hub, other: Hub
) -> None:
    """As when the later version arrives on the case's own partition (intake.py
    ``_supersede``): REFUSE, SUPERSEDED, announced now, nothing followed up."""
    first.intake.handle(declaration_xml(version=1), at(0, partition=0))
    lodged_again = other.intake.handle(declaration_xml(version=2), at(0, partition=1))
    handed_over = told(first, notices_to(other, lodged_again, 0))

    assert first.decisions(handed_over) == [(REF, 1, Outcome.REFUSE)]
    assert StatusKind.SUPERSEDED in first.status_kinds(handed_over)
    assert requests(first, handed_over) == []
    assert first.open_cases.get(REF.encode()) is None  # its deadline is no longer due
    assert held_reservations(case_of(first)) == []


@pytest.mark.parametrize("kept", [2, 3], ids=["the-same", "higher"])
def test_a_notice_changes_nothing_on_a_partition_holding_the_same_or_a_higher_version(
    first: Hub, kept: int
) -> None:
    first.intake.handle(declaration_xml(version=kept), at(0, partition=0))
    before = first.cases[REF.encode()]
    handed_over = told(first, [notice(2)])
    assert handed_over.records == []
    assert first.cases[REF.encode()] == before


def test_a_notice_for_a_reference_the_partition_does_not_hold_changes_nothing(
    first: Hub,
) -> None:
    assert told(first, [notice(2)]).records == []
    assert REF.encode() not in first.cases


def test_a_decided_release_is_left_as_it_is(first: Hub) -> None:
    """A case that keeps nothing (released, its write-offs sent) has nothing to hand over."""
    sent = first.intake.handle(declaration_xml(version=1), at(0, partition=0))
    assert first.decisions(first.answer(sent, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]
    before = first.cases[REF.encode()]
    assert told(first, [notice(2)]).records == []
    assert first.cases[REF.encode()] == before


def test_only_a_version_whose_earlier_versions_its_partition_did_not_see_tells_the_others(
    other: Hub,
) -> None:
    """A first version, or the next version on the partition that read the previous
    one, tells nobody: the common case costs nothing. A first version above 1, or a gap
    in the numbers (versions read elsewhere meanwhile), tells every other partition."""
    first_version = other.intake.handle(declaration_xml(version=1), at(0, partition=1))
    assert first_version.to(other.topics.deadlines) == []
    next_version = other.intake.handle(declaration_xml(version=2), at(1, partition=1))
    assert next_version.to(other.topics.deadlines) == []
    after_a_gap = other.intake.handle(declaration_xml(version=4), at(2, partition=1))
    assert {r.partition for r in after_a_gap.to(other.topics.deadlines)} == {0, 2, 3}


def test_a_version_read_again_tells_the_others_again(other: Hub) -> None:
    """Its notices may have been lost with the crash that has it read again."""
    other.intake.handle(declaration_xml(version=2), at(0, partition=1))
    again = other.intake.handle(declaration_xml(version=2), at(0, partition=1))
    assert {r.partition for r in again.to(other.topics.deadlines)} == {0, 2, 3}


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"superseded-by",
        b'{"superseded_by": "two"}',
        b'{"superseded_by": 0}',
        b'{"superseded_by": 2, "stage": "SHIPPED"}',
        b'{"superseded_by": 2, "stage": "LODGED", "quotes": [["dgal"]]}',
        b"\xff",
        b"[]",
    ],
)
def test_a_notice_that_does_not_read_is_refused_naming_it(first: Hub, value: bytes) -> None:
    """Dead-lettered by the agent that reads it (a ValueError), never a stop."""
    with pytest.raises(ValueError, match="notice"):
        Takeover(first.context, first.cases).handle(
            REF, value, SourcePosition("gun.hub.deadlines", 0, 0)
        )


# -- found by review of the first version of this change (helper, stop 51) -------------


def dead_letter_kinds(hub: Hub, outbox: Effects) -> list[str | None]:
    return [header_value(r.headers, HEADER_ERROR_KIND) for r in outbox.to(hub.topics.dlq)]


def test_a_late_answer_to_a_version_taken_over_undecided_is_a_late_answer(
    first: Hub, other: Hub
) -> None:
    """As on one partition: LATE_ANSWER_IGNORED. The taken-over case forgot the requests
    it sent (``Case.superseded`` strips them: on one partition the newer case carries
    them), and the partner's genuine answer was a RESPONSE_UNSOLICITED security dead
    letter."""
    sent = first.intake.handle(declaration_xml(version=1), at(0, partition=0))
    lodged = other.intake.handle(declaration_xml(version=2), at(0, partition=1))
    told(first, notices_to(other, lodged, 0))

    late = first.answer(sent, "dgal", Verdict.VALID)
    assert dead_letter_kinds(first, late) == []
    assert StatusKind.LATE_ANSWER_IGNORED in first.status_kinds(late)


def test_a_takeover_announces_the_unconfirmed_decision_of_an_earlier_version(
    first: Hub, other: Hub
) -> None:
    """Version 1 released, the worker dead before the broker had it; version 2 read on
    the same partition carries it, unconfirmed (dead again); version 3 read on another
    partition takes version 2 over. The takeover dropped what version 2 carried: version
    1 never decided, its write-off never sent."""
    sent = first.intake.handle(declaration_xml(version=1), at(0, partition=0))
    first.broker_up = False
    first.answer(sent, "dgal", Verdict.VALID)  # version 1 RELEASE, unconfirmed
    first.intake.handle(declaration_xml(version=2), at(1, partition=0))  # dead again
    first.broker_up = True

    lodged = other.intake.handle(declaration_xml(version=3), at(0, partition=1))
    handed_over = told(first, notices_to(other, lodged, 0))
    assert sorted(first.decisions(handed_over)) == [
        (REF, 1, Outcome.RELEASE),
        (REF, 2, Outcome.REFUSE),
    ]
    write_offs = [(r.version, r.operation) for r in requests(first, handed_over)]
    assert (1, Operation.WRITE_OFF) in write_offs


def test_a_version_read_again_tells_the_others_only_if_its_first_reading_did(
    other: Hub,
) -> None:
    """Read again after a crash, a version above 1 told every other partition, each
    time, for references never split."""
    other.intake.handle(declaration_xml(version=1), at(0, partition=1))
    read = other.intake.handle(declaration_xml(version=2), at(1, partition=1))
    assert read.to(other.topics.deadlines) == []
    again = other.intake.handle(declaration_xml(version=2), at(1, partition=1))
    assert again.to(other.topics.deadlines) == []


def test_another_declarants_version_on_another_partition_takes_nothing_over(
    first: Hub, other: Hub
) -> None:
    """On the case's own partition a version in another trader's name is refused
    (DECLARANT_CHANGED) and changes nothing; read on another partition, its notice had
    the trader's own undecided version refused as superseded."""
    first.intake.handle(declaration_xml(version=1), at(0, partition=0))
    before = first.cases[REF.encode()]
    forged = other.intake.handle(
        declaration_xml(version=99, declarant="DE999999999999999"), at(0, partition=1)
    )
    handed_over = told(first, notices_to(other, forged, 0))
    assert handed_over.records == []
    assert first.cases[REF.encode()] == before


CERT_A = "CHEDP.FR.2026.0001234"
CERT_B = "CHEDP.FR.2026.0009999"
BOTH = (goods_item(1, (document(reference=CERT_A),)), goods_item(2, (document(reference=CERT_B),)))
ONLY_A = (goods_item(1, (document(reference=CERT_A),)),)
QUANTITY = Decimal("1200.5")  # each document's, as the builders quote it


def controlled_quoting_both(hub: Hub) -> None:
    hub.intake.handle(declaration_xml(version=1, items=BOTH), at(0, partition=0))
    hub.now += timedelta(seconds=31)
    ticked = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 0))
    assert hub.decisions(ticked) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]


def followed_up(hub: Hub, outbox: Effects) -> set[tuple[str, Operation, int]]:
    return {
        (d.reference, r.operation, r.version)
        for r in requests(hub, outbox)
        for item in r.items
        for d in item.documents
        if r.operation in (Operation.WRITE_OFF, Operation.DELETE)
    }


@pytest.mark.parametrize(
    ("stage", "operation"),
    [
        (Stage.RELEASED_AFTER_CONTROL, Operation.WRITE_OFF),
        (Stage.CANCELLED, Operation.DELETE),
        (Stage.LODGED, Operation.DELETE),
    ],
)
def test_what_the_control_kept_and_the_later_version_does_not_quote_is_followed_up_here(
    first: Hub, other: Hub, stage: Stage, operation: Operation
) -> None:
    """The later version's partition follows up what it is quoted (a release writes off,
    a cancellation deletes, a new lodged version restates); what the earlier version
    held beyond it only this partition knows: written off after a release (contract
    section 4: whatever the release quotes), deleted otherwise, under the later version.
    Before, it was neither, nor reported any more."""
    controlled_quoting_both(first)
    later = other.intake.handle(
        declaration_xml(version=2, stage=stage, items=ONLY_A), at(0, partition=1)
    )
    handed_over = told(first, notices_to(other, later, 0))
    assert followed_up(first, handed_over) == {(CERT_B, operation, 2)}
    assert StatusKind.FOLLOW_UP_SENT in first.status_kinds(handed_over)
    # Its answer is the taken-over case's: solicited, and recorded.
    answered = first.answer(handed_over, "dgal", Verdict.VALID)
    assert dead_letter_kinds(first, answered) == []
    # The same notice read again (a crash before its offset was committed): sent again.
    again = told(first, notices_to(other, later, 0))
    assert followed_up(first, again) == {(CERT_B, operation, 2)}


def test_a_pre_lodged_later_version_restates_nothing_so_everything_kept_is_deleted(
    first: Hub, other: Hub
) -> None:
    """A pre-lodged version asks a CHECK: it reserves nothing (intake.py, review stop 46)."""
    controlled_quoting_both(first)
    later = other.intake.handle(
        declaration_xml(version=2, stage=Stage.PRELODGED, items=BOTH), at(0, partition=1)
    )
    handed_over = told(first, notices_to(other, later, 0))
    assert followed_up(first, handed_over) == {
        (CERT_A, Operation.DELETE, 2),
        (CERT_B, Operation.DELETE, 2),
    }


def test_a_lower_version_read_after_the_notice_is_ignored_as_a_stale_version(
    routing_table: RoutingTable, keys_dir: Path, other: Hub
) -> None:
    """The notice reaches partition 0 before version 1's record does (its worker behind
    on its declarations): it found no case and was forgotten, and version 1 was then
    decided as if no later version existed, its control reported overdue again. It is
    remembered now (a marker, forgotten with the markers: retention.py), and version 1
    arriving after version 2 is ignored and recorded (contract section 4), asking nobody."""
    first = RetainingHub(routing_table, keys_dir)
    lodged = other.intake.handle(declaration_xml(version=2), at(0, partition=1))
    assert told(first, notices_to(other, lodged, 0)).records == []  # no case yet

    late = first.intake.handle(declaration_xml(version=1), at(0, partition=0))
    assert first.status_kinds(late) == [StatusKind.IGNORED_STALE_VERSION]
    assert requests(first, late) == []
    assert first.decisions(late) == []
    assert first.open_cases.get(REF.encode()) is None  # no deadline, no control

    # A version 3 read here afterwards tells the others: version 2 was read elsewhere.
    third = first.intake.handle(declaration_xml(version=3), at(1, partition=0))
    assert {r.partition for r in third.to(first.topics.deadlines)} == {1, 2, 3}


# ---- an invalidation of a reference split across partitions (stop 51's open item) ---------


def gives_back(hub: Hub, outbox: Effects) -> set[tuple[str, int, bool]]:
    """(document, version, with its quantity) of each GIVE_BACK in ``outbox``."""
    return {
        (d.reference, r.version, d.quantity is not None)
        for r in requests(hub, outbox)
        if r.operation is Operation.GIVE_BACK
        for item in r.items
        for d in item.documents
    }


def released_across(first: Hub, other: Hub) -> Effects:
    """Version 1 quoting A and B kept for a control on partition 0; its release after
    control quoting only A read on partition 1: partition 1 wrote A off, partition 0
    (told) wrote B off, each under version 2."""
    controlled_quoting_both(first)
    released = other.intake.handle(
        declaration_xml(version=2, stage=Stage.RELEASED_AFTER_CONTROL, items=ONLY_A),
        at(0, partition=1),
    )
    assert followed_up(other, released) == {(CERT_A, Operation.WRITE_OFF, 2)}
    handed_over = told(first, notices_to(other, released, 0))
    assert followed_up(first, handed_over) == {(CERT_B, Operation.WRITE_OFF, 2)}
    return handed_over


def test_an_invalidation_read_where_the_release_was_has_the_other_partition_give_back_too(
    first: Hub, other: Hub
) -> None:
    """Version 3 INVALIDATED read on partition 1, after the release it knows: it gave
    back what partition 1 wrote off (A) and told nobody (no gap in its versions), so B,
    written off from partition 0, stayed written off at the partner: quantity lost on the
    certificate. A reference once split tells the others at every version now, and
    partition 0 gives back what it wrote off, under version 3, with its quantity."""
    released_across(first, other)
    invalidated = other.intake.handle(
        declaration_xml(version=3, stage=Stage.INVALIDATED, items=ONLY_A), at(1, partition=1)
    )
    assert gives_back(other, invalidated) == {(CERT_A, 3, True)}
    given = told(first, notices_to(other, invalidated, 0))
    assert gives_back(first, given) == {(CERT_B, 3, True)}
    assert StatusKind.FOLLOW_UP_SENT in first.status_kinds(given)
    answered = first.answer(given, "dgal", Verdict.VALID)
    assert dead_letter_kinds(first, answered) == []  # its answer is solicited
    assert written_off(case_of(first)) == []  # given back: nothing left to give
    again = told(first, notices_to(other, invalidated, 0))  # read again after a crash
    assert gives_back(first, again) == {(CERT_B, 3, True)}


def test_an_invalidation_read_where_the_control_was_has_the_release_partition_give_back(
    first: Hub, other: Hub
) -> None:
    """Version 3 INVALIDATED read on partition 0, where version 1's control was taken
    over: it gave back nothing (the write-off of B sent from there under version 2 was
    not counted as written off) and partition 1, told, left its release as it was (A
    stayed written off). Each partition gives back what it wrote off now."""
    released_across(first, other)
    invalidated = first.intake.handle(
        declaration_xml(version=3, stage=Stage.INVALIDATED, items=ONLY_A), at(1, partition=0)
    )
    assert gives_back(first, invalidated) == {(CERT_B, 3, True)}
    given = told(other, notices_to(first, invalidated, 1), partition=1)
    assert gives_back(other, given) == {(CERT_A, 3, True)}
    answered = other.answer(given, "dgal", Verdict.VALID)
    assert dead_letter_kinds(other, answered) == []
    # Version 1 is not known there: what it knows it wrote off is given back.
    assert write_offs_known(case_of(other)) == []


def test_a_later_version_of_a_split_reference_tells_the_others_but_changes_nothing_else(
    first: Hub, other: Hub
) -> None:
    """Telling at every version of a split reference costs one record per other
    partition; a notice that is not an invalidation, read where the control was taken
    over, changes nothing there."""
    released_across(first, other)
    before = first.cases[REF.encode()]
    lodged = other.intake.handle(declaration_xml(version=3, items=ONLY_A), at(1, partition=1))
    assert {r.partition for r in lodged.to(other.topics.deadlines)} == {0, 2, 3}
    assert told(first, notices_to(other, lodged, 0)).records == []
    assert first.cases[REF.encode()] == before


def test_an_invalidation_of_a_control_read_elsewhere_deletes_every_reservation_it_kept(
    first: Hub, other: Hub
) -> None:
    """An invalidation restates no reservation: it gives back what was written off. Its
    notice named the documents it quotes as restated, so the control's reservation of a
    quoted one was kept for ever (its own partition, knowing nothing written off, gives
    it back as quoted, which no partner reads as a deletion). On one partition every
    reservation held is deleted (intake.py); across two, now too."""
    controlled_quoting_both(first)
    invalidated = other.intake.handle(
        declaration_xml(version=2, stage=Stage.INVALIDATED, items=ONLY_A), at(0, partition=1)
    )
    handed_over = told(first, notices_to(other, invalidated, 0))
    assert followed_up(first, handed_over) == {
        (CERT_A, Operation.DELETE, 2),
        (CERT_B, Operation.DELETE, 2),
    }
    assert gives_back(first, handed_over) == set()  # nothing was written off
    assert not kept_for_control(case_of(first))


def quantities_in_facts(hub: Hub, outbox: Effects) -> list[tuple[str, str, Decimal | None]]:
    """(kind of fact, document, quantity) of the write-off and give-back facts."""
    found = [FACT.validate_json(r.value) for r in outbox.to(hub.topics.facts)]
    return [
        (type(f).__name__, d.reference, d.quantity)
        for f in found
        if isinstance(f, WriteOffFact | GivenBackFact)
        for d in f.documents
    ]


def test_what_is_written_off_and_given_back_from_the_taken_over_case_says_its_quantity(
    first: Hub, other: Hub
) -> None:
    """The statistics net write-offs against give-backs by line and quantity (ops/facts.py):
    the answers to a follow-up sent under a later version were read against the taken-over
    case's own version, found no line, and their facts said no quantity."""
    handed_over = released_across(first, other)
    written = first.answer(handed_over, "dgal", Verdict.VALID)
    assert quantities_in_facts(first, written) == [("WriteOffFact", CERT_B, QUANTITY)]
    invalidated = other.intake.handle(
        declaration_xml(version=3, stage=Stage.INVALIDATED, items=ONLY_A), at(1, partition=1)
    )
    given = first.answer(told(first, notices_to(other, invalidated, 0)), "dgal", Verdict.VALID)
    assert quantities_in_facts(first, given) == [("GivenBackFact", CERT_B, QUANTITY)]


# ---- a later version refused unread on another partition (stop 51's open item) ---------


def test_a_later_version_refused_unread_elsewhere_ends_the_control_as_on_its_own_partition(
    first: Hub, other: Hub
) -> None:
    """On the control's own partition a version that cannot be read is refused and what
    the previous version held is deleted with it (intake.py, defect 6). Read on another
    partition it told no one: the control kept its reservations, reported overdue a week
    later. It tells the others now, naming nothing restated: everything is deleted."""
    controlled_quoting_both(first)
    refused = other.intake.handle(unreadable(2), at(0, partition=1))
    assert other.decisions(refused) == [(REF, 2, Outcome.REFUSE)]
    handed_over = told(first, notices_to(other, refused, 0))
    assert followed_up(first, handed_over) == {
        (CERT_A, Operation.DELETE, 2),
        (CERT_B, Operation.DELETE, 2),
    }
    assert not kept_for_control(case_of(first))
    first.now += timedelta(seconds=first.control_report_after_s + 60)
    ticked = first.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 1))
    assert StatusKind.CONTROL_RESULT_OVERDUE not in first.status_kinds(ticked)
    # Read again (a crash before its offset was committed): its notices are sent again.
    again = other.intake.handle(unreadable(2), at(0, partition=1))
    assert opened(other, notices_to(other, again, 0)) == opened(
        other, notices_to(other, refused, 0)
    )


def test_a_version_refused_unread_after_its_predecessor_on_its_partition_tells_nobody(
    other: Hub,
) -> None:
    """As any version: only where earlier versions were read elsewhere."""
    other.intake.handle(declaration_xml(version=1), at(0, partition=1))
    refused = other.intake.handle(unreadable(2), at(1, partition=1))
    assert refused.to(other.topics.deadlines) == []
