"""A control with no result (no RELEASED_AFTER_CONTROL or CANCELLED version) for
``control_report_after_s`` is reported once, CONTROL_RESULT_OVERDUE, but only once the
declarations that may hold that result are read through, as an answer's deadline fires
only once the answers are (answer_progress.py).

Found by review in stop 38 (L4): a hub back from a stop longer than the control period
reported every such control at once, before reading its backlog, where the office's
result waited: a burst of false alarms to operations and the office, each entry dropped
as "reported once".
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.model.declaration import Stage
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.pipeline.answer_progress import AnswerProgress
from gun_hub.pipeline.deadlines import DeadlineIndex
from gun_hub.runtime import deadline_sweep
from tests.builders import declaration_xml
from tests.unit.test_control_release_and_invalidation import held_for_control
from tests.unit.test_deadline_sweep_reads_what_is_due import (
    NOW,
    Clock,
    CountingTable,
    FakeApp,
    Worker,
    _entry,
)
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import REF, at

DAY = 86_400


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: object) -> Hub:
    return Hub(routing_table, keys_dir)  # type: ignore[arg-type]


def tick(hub: Hub, offset: int) -> list[StatusKind]:
    return hub.status_kinds(
        hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, offset))
    )


def test_no_overdue_report_while_the_declarations_backlog_is_unread(hub: Hub) -> None:
    held_for_control(hub)
    # Down longer than the control period; the office's result may wait in the backlog.
    hub.now += timedelta(seconds=hub.control_report_after_s + DAY)
    hub.answers_read = False
    assert StatusKind.CONTROL_RESULT_OVERDUE not in tick(hub, 2)
    assert REF.encode() in hub.open_cases  # kept: ticked again later


def test_a_result_read_from_the_backlog_is_never_reported_overdue(hub: Hub) -> None:
    held_for_control(hub)
    hub.now += timedelta(seconds=hub.control_report_after_s + DAY)
    hub.answers_read = False
    assert StatusKind.CONTROL_RESULT_OVERDUE not in tick(hub, 2)
    released = hub.intake.handle(
        declaration_xml(version=2, stage=Stage.RELEASED_AFTER_CONTROL), at(1)
    )
    assert StatusKind.CONTROL_RESULT_OVERDUE not in hub.status_kinds(released)
    hub.answers_read = True  # the backlog read through
    assert StatusKind.CONTROL_RESULT_OVERDUE not in tick(hub, 3)


def test_a_control_still_without_result_once_the_backlog_is_read_is_reported_once(
    hub: Hub,
) -> None:
    held_for_control(hub)
    hub.now += timedelta(seconds=hub.control_report_after_s + DAY)
    hub.answers_read = False
    assert StatusKind.CONTROL_RESULT_OVERDUE not in tick(hub, 2)
    hub.answers_read = True
    assert tick(hub, 3) == [StatusKind.CONTROL_RESULT_OVERDUE]
    assert REF.encode() not in hub.open_cases
    assert tick(hub, 4) == []


async def test_the_sweep_ticks_an_overdue_control_only_once_its_inputs_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(deadline_sweep, "_CATCH_UP_S", 0.0)
    worker = Worker(FakeApp(), CountingTable(), DeadlineIndex(), Clock(), AnswerProgress())
    worker.table[b"CONTROL"] = _entry(NOW, control=True)
    worker.app.consumer.end = 5  # a backlog of five records, none read yet
    assert await worker.sweep_at(NOW) == []
    worker.app.consumer.read = 5
    assert await worker.sweep_at(NOW + 1) == [b"CONTROL"]
