"""Issue 10, defect 12: quantities after a control and after an invalidation.

Contract section 4: RELEASED_AFTER_CONTROL writes off what the control kept reserved,
then RELEASE; INVALIDATED gives the written-off quantities back, then CANCELLED; a
reservation kept for a control with no result after a configurable period is reported.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.declaration import DocumentRef, Stage
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import REF, at, requests


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: object) -> Hub:
    return Hub(routing_table, keys_dir)  # type: ignore[arg-type]


def held_for_control(hub: Hub) -> None:
    """Version 1 lodged; DGAL stays silent, so the deadline gives a documentary control."""
    hub.intake.handle(declaration_xml(version=1), at(0))
    hub.now += timedelta(seconds=31)
    ticked = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 0))
    assert hub.decisions(ticked) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    assert requests(hub, ticked) == []  # a control keeps its reservations


def test_released_after_control_writes_off_what_the_control_kept_then_releases(hub: Hub) -> None:
    held_for_control(hub)
    after = hub.intake.handle(declaration_xml(version=2, stage=Stage.RELEASED_AFTER_CONTROL), at(1))
    [write_off] = requests(hub, after)
    assert (write_off.operation, write_off.version) == (Operation.WRITE_OFF, 2)
    decided = hub.answer(after, "dgal", Verdict.VALID)
    assert hub.decisions(decided) == [(REF, 2, Outcome.RELEASE)]
    assert requests(hub, decided) == []  # the write-off was the case's own request


CHED = "CHEDP.FR.2026.0001234"
PERMIT = "FR26CITES000123"


def held_at_two_authorities(hub: Hub) -> None:
    """Version 1 quotes a CHED (dgal) and a CITES permit (cites); dgal answers, cites
    stays silent: a documentary control keeps both reservations."""
    quoted = (document("N853", CHED, 1, "40"), document("C400", PERMIT, 1, "2", "NAR"))
    sent = hub.intake.handle(declaration_xml(version=1, items=(goods_item(1, quoted),)), at(0))
    hub.answer(sent, "dgal", Verdict.VALID)
    hub.now += timedelta(seconds=31)
    ticked = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 0))
    assert hub.decisions(ticked) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]


def followed_up(hub: Hub, outbox: Effects) -> list[tuple[str, Operation, int, list[str]]]:
    return sorted(
        (r.authority, r.operation, r.version, [d.reference for i in r.items for d in i.documents])
        for authority in ("cites", "dgal")
        for r in requests(hub, outbox, authority)
    )


@pytest.mark.parametrize(
    "quoted",
    [
        pytest.param((), id="quoting-no-document"),
        pytest.param((document("N853", CHED, 1, "40"),), id="quoting-one-of-two"),
    ],
)
def test_a_release_after_control_writes_off_everything_the_control_kept(
    hub: Hub, quoted: tuple[DocumentRef, ...]
) -> None:
    """What the control kept is written off, whatever the release quotes (contract,
    section 4). Found by review (stop 46): the general rule for a new version (a document
    it no longer quotes is deleted) applied to this stage too, so a release quoting one
    of two documents deleted the other's reservation and one quoting none deleted both
    and released at once: goods gone, their quantity back on the certificate, and a
    later invalidation gave nothing back for them."""
    held_at_two_authorities(hub)
    after = hub.intake.handle(
        declaration_xml(
            version=2, stage=Stage.RELEASED_AFTER_CONTROL, items=(goods_item(1, quoted),)
        ),
        at(1),
    )
    assert followed_up(hub, after) == [
        ("cites", Operation.WRITE_OFF, 2, [PERMIT]),
        ("dgal", Operation.WRITE_OFF, 2, [CHED]),
    ]
    assert hub.decisions(after) == []  # released once the write-offs are answered
    hub.answer(after, "cites", Verdict.VALID)
    decided = hub.answer(after, "dgal", Verdict.VALID)
    assert hub.decisions(decided) == [(REF, 2, Outcome.RELEASE)]
    assert requests(hub, decided) == []


@pytest.mark.parametrize("v1", ["undecided", "kept-for-control"])
def test_a_pre_lodged_version_after_a_lodged_one_deletes_what_that_one_held(
    hub: Hub, v1: str
) -> None:
    """A pre-lodged version reserves nothing (a CHECK): what the lodged version before it
    held is deleted under it, as any new version deletes what it no longer reserves.
    Found by review (stop 46): the rollout mode (enforce) was read as "reserves", so
    nothing was deleted; the pre-lodged version held nothing to follow up, and the lodged
    one's reservations stayed at the partners for ever, no control left to report them."""
    if v1 == "kept-for-control":
        held_at_two_authorities(hub)
    else:
        quoted = (document("N853", CHED, 1, "40"), document("C400", PERMIT, 1, "2", "NAR"))
        hub.intake.handle(declaration_xml(version=1, items=(goods_item(1, quoted),)), at(0))
    after = hub.intake.handle(
        declaration_xml(
            version=2,
            stage=Stage.PRELODGED,
            items=(
                goods_item(
                    1, (document("N853", CHED, 1, "40"), document("C400", PERMIT, 1, "2", "NAR"))
                ),
            ),
        ),
        at(1),
    )
    assert followed_up(hub, after) == [
        ("cites", Operation.CHECK, 2, [PERMIT]),
        ("cites", Operation.DELETE, 2, [PERMIT]),
        ("dgal", Operation.CHECK, 2, [CHED]),
        ("dgal", Operation.DELETE, 2, [CHED]),
    ]


def test_released_after_control_releases_even_when_the_partner_cannot_confirm(hub: Hub) -> None:
    """The office already released the goods: the decision records it, the adapter
    replays the write-off when the partner is back."""
    held_for_control(hub)
    after = hub.intake.handle(declaration_xml(version=2, stage=Stage.RELEASED_AFTER_CONTROL), at(1))
    [decision] = hub.decision_objects(hub.answer(after, "dgal", Verdict.UNAVAILABLE))
    assert decision.outcome is Outcome.RELEASE
    assert decision.documents[0].verdict is Verdict.UNAVAILABLE


def test_an_invalidated_declaration_gives_its_write_offs_back_then_is_cancelled(hub: Hub) -> None:
    first = hub.intake.handle(declaration_xml(version=1), at(0))
    released = hub.answer(first, "dgal", Verdict.VALID)
    assert [r.operation for r in requests(hub, released)] == [Operation.WRITE_OFF]
    invalidated = hub.intake.handle(declaration_xml(version=2, stage=Stage.INVALIDATED), at(1))
    [give_back] = requests(hub, invalidated)
    assert (give_back.operation, give_back.version) == (Operation.GIVE_BACK, 2)
    decided = hub.answer(invalidated, "dgal", Verdict.VALID)
    assert hub.decisions(decided) == [(REF, 2, Outcome.CANCELLED)]
    assert requests(hub, decided) == []


def test_a_control_with_no_result_after_the_period_is_reported_once(hub: Hub) -> None:
    held_for_control(hub)
    hub.now += timedelta(seconds=hub.control_report_after_s - 1)
    early = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 1))
    assert StatusKind.CONTROL_RESULT_OVERDUE not in hub.status_kinds(early)
    hub.now += timedelta(seconds=2)
    late = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 2))
    assert hub.status_kinds(late) == [StatusKind.CONTROL_RESULT_OVERDUE]
    assert REF.encode() not in hub.open_cases  # reported once, not every sweep
    again = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 3))
    assert hub.status_kinds(again) == []


def test_a_control_that_ends_is_not_reported(hub: Hub) -> None:
    held_for_control(hub)
    hub.intake.handle(declaration_xml(version=2, stage=Stage.CANCELLED), at(1))
    assert REF.encode() in hub.open_cases  # the cancellation's own deadline
    hub.now += timedelta(seconds=hub.control_report_after_s + 1)
    late = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 2))
    assert StatusKind.CONTROL_RESULT_OVERDUE not in hub.status_kinds(late)


def test_a_give_back_replayed_after_the_cancellation_is_recorded_as_given_back(hub: Hub) -> None:
    first = hub.intake.handle(declaration_xml(version=1), at(0))
    hub.answer(first, "dgal", Verdict.VALID)
    invalidated = hub.intake.handle(declaration_xml(version=2, stage=Stage.INVALIDATED), at(1))
    hub.answer(invalidated, "dgal", Verdict.UNAVAILABLE)  # partner down: CANCELLED anyway
    replayed = hub.answer(invalidated, "dgal", Verdict.VALID)  # the adapter's replay
    assert hub.status_kinds(replayed) == [StatusKind.GIVEN_BACK]


def test_a_follow_up_refused_as_stale_is_recorded_as_superseded(hub: Hub) -> None:
    from gun_contract.model.exchange import AuthorityResponse, DocumentAnswer

    first = hub.intake.handle(declaration_xml(version=1), at(0))
    released = hub.answer(first, "dgal", Verdict.VALID)
    [write_off] = requests(hub, released)
    stale = AuthorityResponse(
        request_id=write_off.request_id,
        authority="dgal",
        operation=Operation.WRITE_OFF,
        reference=REF,
        version=1,
        answers=(
            DocumentAnswer(
                goods_item=1,
                code="N853",
                reference="CHEDP.FR.2026.0001234",
                verdict=Verdict.MISMATCH,
                partner_code="STALE",
            ),
        ),
        answered_at=hub.now,
    )
    out = hub.respond(stale)
    assert hub.status_kinds(out) == [StatusKind.FOLLOW_UP_SUPERSEDED]


def test_a_cancellation_asks_every_authority_the_version_reserved_at_to_delete(hub: Hub) -> None:
    """Not only the first of them (tests' review of stop 48: no test cancelled a version
    that had reserved at two authorities)."""
    quoted = (document("N853", CHED, 1, "40"), document("C400", PERMIT, 1, "2", "NAR"))
    items = (goods_item(1, quoted),)
    sent = hub.intake.handle(declaration_xml(version=1, items=items), at(0))
    assert followed_up(hub, sent) == [
        ("cites", Operation.RESERVE, 1, [PERMIT]),
        ("dgal", Operation.RESERVE, 1, [CHED]),
    ]
    hub.answer(sent, "dgal", Verdict.VALID)
    hub.answer(sent, "cites", Verdict.VALID)  # both reserved
    cancelled = hub.intake.handle(
        declaration_xml(version=2, stage=Stage.CANCELLED, items=items), at(1)
    )
    assert followed_up(hub, cancelled) == [
        ("cites", Operation.DELETE, 2, [PERMIT]),
        ("dgal", Operation.DELETE, 2, [CHED]),
    ]
