"""An ``open-cases`` entry that nothing waits for is removed by its tick, never ticked
again every 5 s (review stop 40, open item; issue 12, bounded state).

The deadline timer (runtime/deadline_sweep.py) sends a tick for each entry due, and looks
at it again ``_RETICK_S`` (5 s) later: an entry still there is ticked again. Only the tick
handler (pipeline/deadlines.py) can remove an entry (faust writes a table in an event's
context), and it used to return without a word when the tick found no case, or a case at
another version than the entry's, or a decided case the entry no longer concerns: the
entry stayed, was ticked every 5 s for ever (a tick record and a handling each time), and
kept the decided case from retiring (retention.py retires no case with an entry).

Such an entry was left behind by a handling that failed after writing it (a version's
deadline is written before its case: a failure in between is dead-lettered; since stop 41
the worker writes a failed handling's table writes back, and the tests here, which call
the handlers directly, play the state it left before), by a case removed without it (a
tombstone of the cases table alone), or by an entry whose tombstone the changelog lost.
The routes that end or replace a case in the pipeline remove the entry in the same step:
the second half of this file shows each, as the rule that would catch one that did not.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.case import Case
from gun_hub.domain.lifecycle import kept_for_control
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.pipeline.answer_progress import AnswerProgress
from gun_hub.pipeline.deadlines import DeadlineIndex
from gun_hub.pipeline.hub_context import OpenCaseEntry
from gun_hub.pipeline.intake import Intake
from gun_hub.runtime.deadline_sweep import DeadlineSweep
from tests.builders import declaration_xml, document, goods_item
from tests.deadline_fixtures import TimerApp
from tests.unit.test_deadline_sweep_reads_what_is_due import TOPICS
from tests.unit.test_decided_cases_leave_the_hot_table import (
    KEY,
    MARKER_S,
    REF,
    RetainingHub,
)
from tests.unit.test_versions_and_recovery import at


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> RetainingHub:
    return RetainingHub(routing_table, keys_dir)


def tick(hub: RetainingHub, version: int, offset: int = 0) -> list[StatusKind]:
    """A deadline tick of ``version`` handled as the deadlines agent handles it."""
    source = SourcePosition(TOPICS.deadlines, 0, offset, KEY)
    return hub.status_kinds(hub.deadlines.handle(REF, version, source))


def entry(hub: RetainingHub) -> OpenCaseEntry | None:
    raw = hub.open_cases.get(KEY)
    return None if raw is None else OpenCaseEntry.from_bytes(raw)


def version_of_the_entry(hub: RetainingHub) -> int | None:
    waiting = entry(hub)
    return None if waiting is None else waiting.version


class FailingToAsk(RuntimeError):
    """A handling that fails after its version's deadline is written, before its case."""


def failing_to_ask(*_: object, **__: object) -> None:
    raise FailingToAsk("the requests could not be sealed")


# -- the timer and the handler together: the entry is ticked once, not every 5 s -----------


async def test_an_entry_whose_case_is_gone_is_ticked_once_and_removed(
    hub: RetainingHub,
) -> None:
    """The finding as it was seen: the case removed without its entry (a tombstone of the
    cases table alone), the timer ticked it every 5 s for as long as the worker ran."""
    hub.intake.handle(declaration_xml(), at(0))
    del hub.cases[KEY]  # gone by another route than its decision
    app = TimerApp()
    sweep = DeadlineSweep(
        app, TOPICS, hub.open_cases, AnswerProgress(), DeadlineIndex(), lambda: hub.now.timestamp()
    )
    hub.now += timedelta(seconds=31)  # past its deadline
    for offset in range(4):  # before the fix: one more tick each 5 s, for ever
        before = len(app.producer.sent)
        await sweep.run()
        for key, value, partition in app.producer.sent[before:]:  # the deadlines agent
            source = SourcePosition(TOPICS.deadlines, partition or 0, offset, key)
            assert hub.deadlines.handle(key.decode(), int(value), source).records == []
        hub.now += timedelta(seconds=5)
    assert app.producer.sent == [(KEY, b"1", 0)]
    assert KEY not in hub.open_cases


# -- each way an entry can be left behind ---------------------------------------------------


def test_an_entry_without_a_case_is_removed_by_its_tick(hub: RetainingHub) -> None:
    hub.intake.handle(declaration_xml(), at(0))
    del hub.cases[KEY]
    hub.now += timedelta(seconds=31)
    assert tick(hub, 1) == []
    assert KEY not in hub.open_cases


def test_the_deadline_of_a_version_whose_handling_failed_is_removed_from_a_decided_case(
    hub: RetainingHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 1 released; version 2's handling wrote its deadline, then failed (the
    record is dead-lettered): the case stays version 1, decided, and the entry names
    version 2. Before the fix the tick was "stale" and the entry stayed."""
    sent = hub.intake.handle(declaration_xml(), at(0))
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]
    monkeypatch.setattr(Intake, "_ask", failing_to_ask)
    with pytest.raises(FailingToAsk):
        hub.intake.handle(declaration_xml(version=2), at(1))
    assert version_of_the_entry(hub) == 2
    assert Case.from_bytes(hub.store.get(KEY) or b"").version == 1
    hub.now += timedelta(seconds=31)
    assert tick(hub, 2) == []
    assert KEY not in hub.open_cases


def test_an_undecided_case_left_with_another_version_s_deadline_gets_its_own_back(
    hub: RetainingHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 1 waits for DGAL; version 2's handling replaced its deadline, then failed:
    version 1 is still the case, still undecided, and without its own deadline nothing
    would ever decide it. The tick gives it its own back, and version 1 is decided at it."""
    hub.intake.handle(declaration_xml(), at(0))
    monkeypatch.setattr(Intake, "_ask", failing_to_ask)
    with pytest.raises(FailingToAsk):
        hub.intake.handle(declaration_xml(version=2), at(1))
    monkeypatch.undo()
    assert version_of_the_entry(hub) == 2
    hub.now += timedelta(seconds=31)
    assert tick(hub, 2) == []
    restored = entry(hub)
    assert restored is not None
    assert (restored.version, restored.waits_for_control) == (1, False)
    assert restored.due == Case.from_bytes(hub.store.get(KEY) or b"").deadline.timestamp()
    assert hub.decisions(hub.deadlines.handle(REF, 1, SourcePosition(TOPICS.deadlines, 0, 1))) == [
        (REF, 1, Outcome.CONTROL_DOCUMENTARY)
    ]


def test_an_answers_deadline_left_on_a_decided_case_is_removed(hub: RetainingHub) -> None:
    """An entry whose tombstone the changelog lost: the case was decided meanwhile."""
    sent = hub.intake.handle(declaration_xml(), at(0))
    hub.answer(sent, "dgal", Verdict.VALID)
    hub.open_cases[KEY] = OpenCaseEntry(1, hub.now.timestamp(), 0).to_bytes()
    hub.now += timedelta(seconds=31)
    assert tick(hub, 1) == []
    assert KEY not in hub.open_cases


def test_a_control_deadline_left_on_a_retired_case_is_removed(hub: RetainingHub) -> None:
    """Its marker is decided and keeps no reservation: nothing is reported, nothing waits."""
    hub.released()
    hub.retire()
    hub.open_cases[KEY] = OpenCaseEntry(
        1, hub.now.timestamp(), 0, waits_for_control=True
    ).to_bytes()
    assert tick(hub, 1) == []
    assert KEY not in hub.open_cases


def test_a_control_deadline_left_on_a_released_case_is_removed(hub: RetainingHub) -> None:
    sent = hub.intake.handle(declaration_xml(), at(0))
    hub.answer(sent, "dgal", Verdict.VALID)
    hub.open_cases[KEY] = OpenCaseEntry(
        1, hub.now.timestamp(), 0, waits_for_control=True
    ).to_bytes()
    hub.now += timedelta(seconds=31)
    assert tick(hub, 1) == []
    assert KEY not in hub.open_cases


# -- entries something still waits for stay --------------------------------------------------


def test_a_stale_tick_leaves_the_newer_version_s_deadline(hub: RetainingHub) -> None:
    hub.intake.handle(declaration_xml(), at(0))
    hub.intake.handle(declaration_xml(version=2), at(1))
    newer = hub.open_cases[KEY]
    hub.now += timedelta(seconds=31)
    assert tick(hub, 1) == []  # a tick of version 1, sent before version 2 came
    assert hub.open_cases[KEY] == newer


def test_an_early_tick_leaves_the_deadline(hub: RetainingHub) -> None:
    hub.intake.handle(declaration_xml(), at(0))
    waiting = hub.open_cases[KEY]
    assert tick(hub, 1) == []
    assert hub.open_cases[KEY] == waiting


def test_a_deadline_whose_answers_may_wait_unread_stays(hub: RetainingHub) -> None:
    hub.intake.handle(declaration_xml(), at(0))
    waiting = hub.open_cases[KEY]
    hub.now += timedelta(seconds=31)
    hub.answers_read = False
    assert tick(hub, 1) == []
    assert hub.open_cases[KEY] == waiting


def test_a_control_waiting_for_its_result_keeps_its_deadline(hub: RetainingHub) -> None:
    held_for_control(hub)
    waiting = hub.open_cases[KEY]
    assert tick(hub, 1, offset=1) == []  # not overdue yet
    assert hub.open_cases[KEY] == waiting


# -- each route that ends or replaces a case leaves no entry nothing waits for ------------


def held_for_control(hub: RetainingHub) -> None:
    hub.intake.handle(declaration_xml(), at(0))
    hub.now += timedelta(seconds=31)
    assert (REF, 1, Outcome.CONTROL_DOCUMENTARY) in hub.decisions(
        hub.deadlines.handle(REF, 1, SourcePosition(TOPICS.deadlines, 0, 0))
    )


def orphans(hub: RetainingHub) -> list[bytes]:
    """Entries of the open-cases table that no stored case waits for: no case, another
    version, or a decided case that keeps nothing for a control."""
    left = []
    for key, raw in hub.open_cases.items():
        waiting = OpenCaseEntry.from_bytes(raw)
        stored = hub.store.get(key)
        case = None if stored is None else Case.from_bytes(stored)
        if (
            case is None
            or case.version != waiting.version
            or (case.decided and not (waiting.waits_for_control and kept_for_control(case)))
        ):
            left.append(key)
    return left


def _released_by_its_answer(hub: RetainingHub) -> None:
    hub.released()


def _refused_by_its_answer(hub: RetainingHub) -> None:
    sent = hub.intake.handle(declaration_xml(), at(0))
    hub.answer(sent, "dgal", Verdict.NOT_FOUND)


def _decided_at_its_deadline(hub: RetainingHub) -> None:
    held_for_control(hub)


def _released_after_control(hub: RetainingHub) -> None:
    held_for_control(hub)
    after = hub.intake.handle(declaration_xml(version=2, stage=Stage.RELEASED_AFTER_CONTROL), at(1))
    hub.answer(after, "dgal", Verdict.VALID)


def _control_reported_overdue(hub: RetainingHub) -> None:
    held_for_control(hub)
    hub.now += timedelta(seconds=hub.control_report_after_s + 1)
    assert tick(hub, 1, offset=1) == [StatusKind.CONTROL_RESULT_OVERDUE]


def _superseded_undecided(hub: RetainingHub) -> None:
    hub.intake.handle(declaration_xml(), at(0))
    hub.intake.handle(declaration_xml(version=2), at(1))


def _superseded_while_kept_for_control(hub: RetainingHub) -> None:
    held_for_control(hub)
    hub.intake.handle(declaration_xml(version=2), at(1))


def _cancelled_while_kept_for_control(hub: RetainingHub) -> None:
    held_for_control(hub)
    after = hub.intake.handle(declaration_xml(version=2, stage=Stage.CANCELLED), at(1))
    hub.answer(after, "dgal", Verdict.VALID)


def _a_malformed_version_refused_over_an_open_case(hub: RetainingHub) -> None:
    hub.intake.handle(declaration_xml(), at(0))
    broken = declaration_xml(version=2, items=(goods_item(1, (document(quantity="-5"),)),))
    refused = hub.intake.handle(broken, at(1))
    assert (REF, 2, Outcome.REFUSE) in hub.decisions(refused)


def _retired_and_its_marker_forgotten(hub: RetainingHub) -> None:
    hub.released()
    hub.retire()
    hub.now += timedelta(seconds=MARKER_S + 1)
    hub.retention_tick()
    assert hub.retained == {}


ROUTES = [
    _released_by_its_answer,
    _refused_by_its_answer,
    _decided_at_its_deadline,
    _released_after_control,
    _control_reported_overdue,
    _superseded_undecided,
    _superseded_while_kept_for_control,
    _cancelled_while_kept_for_control,
    _a_malformed_version_refused_over_an_open_case,
    _retired_and_its_marker_forgotten,
]


@pytest.mark.parametrize("route", ROUTES, ids=[r.__name__.strip("_") for r in ROUTES])
def test_a_route_that_ends_or_replaces_a_case_leaves_no_entry_nothing_waits_for(
    hub: RetainingHub, route: Any
) -> None:
    route(hub)
    assert orphans(hub) == []


def test_the_rule_above_sees_an_entry_left_behind(hub: RetainingHub) -> None:
    """The check of the routes is not blind: an entry a route forgot is caught."""
    hub.released()
    hub.open_cases[KEY] = OpenCaseEntry(1, hub.now.timestamp(), 0).to_bytes()
    assert orphans(hub) == [KEY]
