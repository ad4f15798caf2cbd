"""An answer that lands at the very instant of its case's deadline is either counted in the
one decision, or, read after the tick that decided in degraded mode, recorded as late with
its reservation followed up by that decision's outcome: never two decisions, never a
reservation left behind.

The deadline timer (runtime/deadline_sweep.py) ticks an entry whose due time is at or
before its clock; the tick's handler (pipeline/deadlines.py) decides once the clock is at
or past the case's deadline and the answers in the log are read. The answer's handler
(pipeline/correlation.py) has no clock of its own: whichever of the two records a worker
handles first decides (a handling runs without yielding), and the other finds the case
decided. A late answer changes nothing (docs/decisions.md, "Late answers"): the
reservation it may have made is kept by the control and ends with the control's outcome,
or was deleted with the refusal. Here the clock stands still at the deadline's instant
while each order is played.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.case import Case
from gun_hub.domain.lifecycle import held_reservations
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.pipeline.hub_context import OpenCaseEntry
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_deadlines_and_lifecycle import REF, TWO_AUTHORITIES, requests
from tests.unit.test_pipeline import SOURCE, Hub


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


def at_the_deadline(hub: Hub) -> Effects:
    """Version 1 lodged, DGAL's answer in, and the clock at its deadline's very instant:
    the intake's outbox (CITES' request in it)."""
    sent = hub.intake.handle(TWO_AUTHORITIES, SOURCE)
    hub.answer(sent, "dgal", Verdict.VALID)
    hub.now = Case.from_bytes(hub.cases[REF.encode()]).deadline
    return sent


def tick(hub: Hub, offset: int = 0) -> Effects:
    return hub.deadlines.handle(REF, 1, SourcePosition(hub.topics.deadlines, 0, offset))


def test_the_sweep_and_the_tick_both_hold_the_deadline_due_at_its_own_instant(hub: Hub) -> None:
    at_the_deadline(hub)
    entry = OpenCaseEntry.from_bytes(hub.open_cases[REF.encode()])
    # The sweep ticks an entry due at or before its clock (deadline_sweep._look_at) ...
    assert entry.due == hub.now.timestamp()
    # ... and the tick of that same instant decides: not thrown back as early, to be
    # ticked again 5 s later.
    assert hub.decisions(tick(hub)) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]


def test_an_answer_read_before_the_tick_of_its_instant_is_counted_and_the_tick_decides_nothing(
    hub: Hub,
) -> None:
    sent = at_the_deadline(hub)
    answered = hub.answer(sent, "cites", Verdict.VALID)
    assert hub.decisions(answered) == [(REF, 1, Outcome.RELEASE)]
    ticked = tick(hub)
    assert ticked.records == []
    assert hub.open_cases == {}  # released: nothing waits


def test_a_tick_at_the_deadline_waits_for_an_answer_still_unread_in_the_log(hub: Hub) -> None:
    sent = at_the_deadline(hub)
    hub.unread_answers_of = {"cites"}  # written at the same instant, not read yet
    assert tick(hub).records == []
    hub.unread_answers_of = set()
    answered = hub.answer(sent, "cites", Verdict.VALID)
    assert hub.decisions(answered) == [(REF, 1, Outcome.RELEASE)]
    again = tick(hub, 1)  # the sweep's next tick
    assert again.records == []
    assert StatusKind.DEADLINE_PASSED not in hub.status_kinds(again)


@pytest.mark.parametrize(
    ("stage", "operation"),
    [(Stage.CANCELLED, Operation.DELETE), (Stage.RELEASED_AFTER_CONTROL, Operation.WRITE_OFF)],
)
def test_an_answer_read_after_the_tick_of_its_instant_is_late_and_the_control_follows_it_up(
    hub: Hub, stage: Stage, operation: Operation
) -> None:
    sent = at_the_deadline(hub)
    ticked = tick(hub)
    assert hub.decisions(ticked) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    late = hub.answer(sent, "cites", Verdict.VALID)  # CITES reserved, after all
    assert hub.decisions(late) == []
    assert hub.status_kinds(late) == [StatusKind.LATE_ANSWER_IGNORED]
    case = Case.from_bytes(hub.cases[REF.encode()])
    # The control keeps CITES' reservation with DGAL's, though the decision says
    # UNAVAILABLE for it ...
    assert {(e.authority, e.reference) for e in held_reservations(case)} == {
        ("dgal", "CHEDP-1"),
        ("cites", "CITES-1"),
    }
    assert OpenCaseEntry.from_bytes(hub.open_cases[REF.encode()]).waits_for_control
    # ... and the control's result ends it at CITES too.
    result = declaration_xml(
        version=2,
        stage=stage,
        items=(
            goods_item(1, (document("N853", "CHEDP-1"),)),
            goods_item(2, (document("C638", "CITES-1", 1, "2", "NAR"),)),
        ),
    )
    ended = hub.intake.handle(result, SourcePosition(SOURCE.topic, SOURCE.partition, 1))
    [cites] = requests(hub, ended, "cites")
    assert (cites.operation, cites.version) == (operation, 2)
    assert [(i.number, d.reference) for i in cites.items for d in i.documents] == [(2, "CITES-1")]


def test_an_answer_read_after_a_refusal_at_its_instant_was_deleted_with_the_refusal(
    hub: Hub,
) -> None:
    sent = hub.intake.handle(TWO_AUTHORITIES, SOURCE)
    hub.answer(sent, "dgal", Verdict.NOT_FOUND)
    hub.now = Case.from_bytes(hub.cases[REF.encode()]).deadline
    ticked = tick(hub)
    assert hub.decisions(ticked) == [(REF, 1, Outcome.REFUSE)]
    # The deletion goes to the silent partner too, after its reservation request: what it
    # reserves late is deleted there.
    [deletion] = requests(hub, ticked, "cites")
    assert (deletion.operation, deletion.version) == (Operation.DELETE, 1)
    late = hub.answer(sent, "cites", Verdict.VALID)
    assert hub.decisions(late) == []
    assert hub.status_kinds(late) == [StatusKind.LATE_ANSWER_IGNORED]
    assert held_reservations(Case.from_bytes(hub.cases[REF.encode()])) == []


def test_a_degraded_decision_the_broker_never_had_gives_way_to_the_answer_read_first(
    hub: Hub,
) -> None:
    """The tick decided, and the worker died before the case's write was acknowledged:
    the decision's records never left (runtime/delivery.py ``StateFirst``). Back, the
    worker reads the answer before any tick (answer_progress.py): one decision, the
    answer's, and the tick read again decides nothing."""
    sent = at_the_deadline(hub)
    cases, open_cases = dict(hub.cases), dict(hub.open_cases)
    hub.broker_up = False
    assert hub.decisions(tick(hub)) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]  # never sent
    hub.cases.clear()
    hub.cases.update(cases)  # what the changelog had
    hub.open_cases.clear()
    hub.open_cases.update(open_cases)
    hub.broker_up = True
    hub.now += timedelta(seconds=5)
    answered = hub.answer(sent, "cites", Verdict.VALID)
    assert hub.decisions(answered) == [(REF, 1, Outcome.RELEASE)]
    assert tick(hub).records == []
