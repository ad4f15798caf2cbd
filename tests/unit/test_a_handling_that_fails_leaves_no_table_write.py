"""A handling that fails leaves its tables as it found them: its writes are undone with
its outbox (review stop 40, open item 2; pipeline/handling_writes.py).

The worker dead-letters a record whose handler raises, discards the handler's outbox,
undoes what it changed in memory, and commits past the record (runtime/app.py
``_handled``). Its table writes used to stay, whatever prefix of them the handler had made
before it raised. These show the prefixes that decided wrongly, each through the path the
worker takes (``_handled``, the context as its rollback), with a step made to raise where
a fault would (a routing table that raises, a decision that cannot be encoded, requests
that cannot be sealed):

* a new version removed the deadline of the undecided version it supersedes, then
  failed: the earlier version stayed undecided with no deadline, never ticked, never
  decided (its partner silent), and the SUPERSEDED refusal it had built was discarded;
* an answer completing a case removed its deadline (deciding), then failed before the
  case was stored: undecided, no deadline, stuck for ever; or, decided for a control,
  the deadline replaced by the control's report date a week away: decided a week late;
* a new version wrote its deadline, then failed: the entry named a version the case was
  not (the tick of stop 40 repaired that one: now nothing is left to repair).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from gun_contract.dead_letter import HEADER_ERROR_KIND, SourcePosition, header_value
from gun_contract.effects import Effects
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.case import Case
from gun_hub.domain.risk import RiskRule, RiskRules
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.pipeline import hub_context, intake
from gun_hub.pipeline.answer_progress import AnswerProgress
from gun_hub.pipeline.correlation import Correlation
from gun_hub.pipeline.deadlines import DeadlineIndex, Deadlines
from gun_hub.pipeline.handling_writes import WriteJournal
from gun_hub.pipeline.hub_context import OpenCaseEntry
from gun_hub.pipeline.intake import Intake
from gun_hub.pipeline.retention import RetainedCases
from gun_hub.runtime.app import UNHANDLED, _handled
from gun_hub.runtime.deadline_sweep import DeadlineSweep
from gun_hub.xml.declaration_codec import DeclarationCodec
from tests.builders import declaration_xml
from tests.deadline_fixtures import TimerApp
from tests.unit.test_deadline_sweep_reads_what_is_due import TOPICS
from tests.unit.test_decided_cases_leave_the_hot_table import KEY, REF, RetainingHub
from tests.unit.test_pipeline import keyed_by_reference
from tests.unit.test_versions_and_recovery import at

EVERY_DGAL_DOCUMENT_CONTROLLED = RiskRules(
    rules=(
        RiskRule(
            id="DGAL-PHYSICAL",
            description="every declaration quoting a DGAL document is inspected",
            authority=("dgal",),
            action=Outcome.CONTROL_PHYSICAL,
        ),
    )
)


class Fault(RuntimeError):
    """What a step of the handling raises here."""


def fault(*_: object, **__: object) -> Any:
    raise Fault("a fault in the middle of the handling")


class JournaledHub(RetainingHub):
    """The unit hub with its tables journaled as the worker's are (runtime/app.py)."""

    def __init__(
        self, routing: RoutingTable, keys_dir: Path, risk_rules: RiskRules | None = None
    ) -> None:
        super().__init__(routing, keys_dir)
        self.writes = WriteJournal()
        # Any, as the unit hub's own case store: a journaled dict has no ``discard``
        # (the worker's SealedStore does), which these tests do not reach.
        journaled_cases: Any = self.writes.journaled(self.cases)
        self.store = RetainedCases(journaled_cases, self.writes.journaled(self.retained))
        self.context = context = dataclasses.replace(
            self.context,
            cases=self.store,
            open_cases=self.writes.journaled(self.open_cases),
            writes=self.writes,
            risk_rules=risk_rules or self.context.risk_rules,
        )
        self.intake = Intake(context, DeclarationCodec(), self.store, accept_plain=True)
        self.correlation = Correlation(context, self.store)
        self.deadlines = Deadlines(context, self.store)
        self.intake.handle = keyed_by_reference(self._delivered(self.intake.handle))  # type: ignore[method-assign]
        self.correlation.handle = self._delivered(self.correlation.handle)  # type: ignore[method-assign]
        self.deadlines.handle = self._delivered(self.deadlines.handle)  # type: ignore[method-assign]

    async def handled(self, handle: Callable[[], Effects], source: SourcePosition) -> Effects:
        """``handle`` as the worker's agent runs it."""
        return await _handled(
            handle, b"record", source, self.topics.dlq, "test", rollback=self.context
        )

    def case(self) -> Case:
        return Case.from_bytes(self.store.get(KEY) or b"")

    def open_cases_entry_version(self) -> int | None:
        raw = self.open_cases.get(KEY)
        return None if raw is None else OpenCaseEntry.from_bytes(raw).version


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> JournaledHub:
    return JournaledHub(routing_table, keys_dir)


def dead_lettered_unhandled(hub: JournaledHub, outbox: Effects) -> bool:
    kinds = [header_value(r.headers, HEADER_ERROR_KIND) for r in outbox.to(hub.topics.dlq)]
    return kinds == [UNHANDLED] and outbox.to(hub.topics.decision_outbox) == []


async def ticks_at(hub: JournaledHub, seconds: float) -> list[tuple[bytes, bytes, int | None]]:
    app = TimerApp()
    sweep = DeadlineSweep(
        app, TOPICS, hub.open_cases, AnswerProgress(), DeadlineIndex(), lambda: hub.now.timestamp()
    )
    hub.now += timedelta(seconds=seconds)
    await sweep.run()
    return app.producer.sent


def tick(hub: JournaledHub, version: int, offset: int = 0) -> Effects:
    return hub.deadlines.handle(REF, version, SourcePosition(TOPICS.deadlines, 0, offset, KEY))


# -- the prefixes that decided wrongly ---------------------------------------------------


async def test_a_version_whose_handling_failed_leaves_the_earlier_one_its_deadline(
    hub: JournaledHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 1 waits for a silent DGAL. Version 2's handling removes version 1's
    deadline as it supersedes it, then fails (routing it raises). Before: version 1 had
    no deadline left, the timer never ticked it, and it was never decided."""
    hub.intake.handle(declaration_xml(), at(0))
    own = hub.open_cases[KEY]
    monkeypatch.setattr(intake, "route_documents", fault)
    failed = await hub.handled(lambda: hub.intake.handle(declaration_xml(version=2), at(1)), at(1))
    monkeypatch.undo()
    assert dead_lettered_unhandled(hub, failed)
    assert hub.open_cases.get(KEY) == own
    assert (hub.case().version, hub.case().decided) == (1, False)
    assert await ticks_at(hub, 31) == [(KEY, b"1", 0)]
    assert hub.decisions(tick(hub, 1)) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]


async def test_an_answer_whose_decision_failed_leaves_the_case_its_deadline(
    hub: JournaledHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer completes the case: deciding removes its deadline, then the decision
    cannot be encoded. Before: undecided, without a deadline, stuck for ever."""
    sent = hub.intake.handle(declaration_xml(), at(0))
    own = hub.open_cases[KEY]
    monkeypatch.setattr(hub_context, "encode_decision", fault)
    failed = await hub.handled(lambda: hub.answer(sent, "dgal", Verdict.VALID), at(0))
    monkeypatch.undo()
    assert dead_lettered_unhandled(hub, failed)
    assert hub.open_cases.get(KEY) == own
    assert hub.case().decided is False
    assert await ticks_at(hub, 31) == [(KEY, b"1", 0)]
    assert hub.decisions(tick(hub, 1)) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]


async def test_an_answer_whose_control_decision_failed_is_not_decided_a_week_late(
    routing_table: RoutingTable, keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decided for a control (a risk rule), the deadline is replaced by the control's
    report date a week away before the decision is encoded. Before: the case, still
    undecided, was ticked only then, and decided at its deadline a week late."""
    hub = JournaledHub(routing_table, keys_dir, risk_rules=EVERY_DGAL_DOCUMENT_CONTROLLED)
    sent = hub.intake.handle(declaration_xml(), at(0))
    own = hub.open_cases[KEY]
    monkeypatch.setattr(hub_context, "encode_decision", fault)
    failed = await hub.handled(lambda: hub.answer(sent, "dgal", Verdict.VALID), at(0))
    monkeypatch.undo()
    assert dead_lettered_unhandled(hub, failed)
    assert hub.open_cases.get(KEY) == own  # not the control's report date
    assert await ticks_at(hub, 31) == [(KEY, b"1", 0)]
    assert hub.decisions(tick(hub, 1)) == [(REF, 1, Outcome.CONTROL_PHYSICAL)]


async def test_a_version_whose_requests_failed_leaves_no_deadline_of_its_own(
    hub: JournaledHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 1 released; version 2 writes its deadline, then its requests cannot be
    sealed. Before: its deadline stayed, naming a version the case is not."""
    hub.released()
    monkeypatch.setattr(Intake, "_ask", fault)
    failed = await hub.handled(lambda: hub.intake.handle(declaration_xml(version=2), at(1)), at(1))
    assert dead_lettered_unhandled(hub, failed)
    assert KEY not in hub.open_cases
    assert hub.case().version == 1


# -- what completes stands, and the journal records nothing outside a handling ------------


async def test_a_handling_that_completes_keeps_its_writes(hub: JournaledHub) -> None:
    outbox = await hub.handled(lambda: hub.intake.handle(declaration_xml(), at(0)), at(0))
    assert outbox.to(hub.topics.dlq) == []
    assert hub.case().version == 1
    assert KEY in hub.open_cases


def test_writes_outside_a_handling_are_not_undone() -> None:
    """After ``kept`` (a delivery marking a case announced writes it): the next failed
    handling undoes its own writes only."""
    journal = WriteJournal()
    table: dict[bytes, bytes] = {}
    store = journal.journaled(table)
    journal.mark()
    store[b"a"] = b"1"
    journal.kept()
    store[b"a"] = b"2"  # no handling's
    journal.mark()
    store[b"b"] = b"3"
    store[b"a"] = b"4"
    store.pop(b"a")
    journal.undo()
    assert table == {b"a": b"2"}


def test_a_write_back_the_store_refuses_leaves_the_others_written_back() -> None:
    journal = WriteJournal()
    table: dict[bytes, bytes] = {b"a": b"1", b"b": b"1"}

    class Refusing(dict[bytes, bytes]):
        def __setitem__(self, key: bytes, value: bytes) -> None:
            if value == b"1" and key == b"a":
                raise Fault("partition given up")
            super().__setitem__(key, value)

    refusing = Refusing(table)
    store = journal.journaled(refusing)
    journal.mark()
    store[b"a"] = b"2"
    store[b"b"] = b"2"
    journal.undo()
    assert refusing == {b"a": b"2", b"b": b"1"}


async def test_a_handling_retried_after_a_cluster_error_starts_from_the_tables_as_they_were(
    hub: JournaledHub,
) -> None:
    """A broker error is retried (``_handled``): the attempt that met it is undone first,
    so the next reads what the record found, and decides as a first attempt does."""
    hub.intake.handle(declaration_xml(), at(0))
    found: list[tuple[bytes | None, bytes | None]] = []

    def handle() -> Effects:
        found.append((hub.cases.get(KEY), hub.open_cases.get(KEY)))
        outbox = hub.intake.handle(declaration_xml(version=2), at(1))
        if len(found) == 1:
            raise KafkaConnectionError("the broker went away after the writes")
        return outbox

    hub.broker_slow = True  # as in the worker: an outbox leaves after its handler returns
    outbox = await hub.handled(handle, at(1))
    assert found[1] == found[0]
    assert hub.decisions(outbox) == [(REF, 1, Outcome.REFUSE)]  # superseded, once
    assert StatusKind.RECEIVED in hub.status_kinds(outbox)  # version 2 taken as new
    assert (hub.case().version, hub.open_cases_entry_version()) == (2, 2)
