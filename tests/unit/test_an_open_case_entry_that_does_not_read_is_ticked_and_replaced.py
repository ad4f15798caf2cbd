"""An ``open-cases`` entry whose value does not read as a deadline reaches the tick's
handler, which puts what its case waits for in its place (or removes it) and dead-letters
the tick (STATE_UNREADABLE), as the hub does for any stored value that does not open
(ADR 0022); it is never skipped for ever (review stop 40, open item 1).

The table holds raw ``version|due|partition|kind`` text: bytes any writer of its
changelog put under a reference's key, or a value cut short, used to be logged and
skipped by the deadline index's read (``DeadlineIndex.read``) and by the timer's look
(``DeadlineSweep._look_at``): never ticked, so never removed, reported again at every
read of the index (each half hour, after each rebalance), keeping its decided case from
retiring, and taking the place of an undecided case's deadline, which then never fired
(the case stuck, undecided, if a partner stayed silent).

The value names no partition the timer can trust, and the hub never derives one from a
key (architecture.md, "Partitions are the producer's"): the hub's store says which
partition holds it, and the tick goes there
(tests/unit/test_each_partitions_deadline_entry_is_looked_at.py); the in-memory
stand-in here says none, so the tick goes to every deadlines partition this worker
holds; each partition's handler looks in its own store, and only the one holding the
entry finds it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gun_contract.dead_letter import (
    SourcePosition,
)
from gun_contract.effects import Effects
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.pipeline.answer_progress import AnswerProgress
from gun_hub.pipeline.deadlines import DeadlineIndex
from gun_hub.pipeline.hub_context import OpenCaseEntry
from gun_hub.pipeline.unreadable_state import STATE_UNREADABLE
from gun_hub.runtime.deadline_sweep import DeadlineSweep
from tests.builders import declaration_xml
from tests.dead_letters import dead_letters_in
from tests.deadline_fixtures import TimerApp
from tests.unit.test_deadline_sweep_reads_what_is_due import TOPICS
from tests.unit.test_decided_cases_leave_the_hot_table import KEY, REF, RetainingHub
from tests.unit.test_versions_and_recovery import at

# What a party may write under a reference's key on the open-cases changelog.
GARBAGE = bytes(range(0x80, 0xC0))
CUT_SHORT = b"1|"  # cut short after its version: no due time
FORMS = {
    "random bytes": GARBAGE,
    "not a number": b"one|two|0|answers",
    "empty": b"",
    # Read as a number it was never due: the case stayed undecided for ever (stop 45).
    "not a time": b"1|nan|0|answers",
}


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> RetainingHub:
    return RetainingHub(routing_table, keys_dir)


def tick(hub: RetainingHub, version: int = 0, partition: int = 0, offset: int = 0) -> Effects:
    """A deadline tick handled as the deadlines agent handles it (the value a tick of an
    entry that does not read carries: no version, read as 0)."""
    return hub.deadlines.handle(
        REF, version, SourcePosition(TOPICS.deadlines, partition, offset, KEY)
    )


def entry(hub: RetainingHub) -> OpenCaseEntry | None:
    raw = hub.open_cases.get(KEY)
    return None if raw is None else OpenCaseEntry.from_bytes(raw)


def dead_letters(hub: RetainingHub, outbox: Effects) -> list[dict[str, str | None]]:
    return dead_letters_in(outbox, hub.topics.dlq)


def the_dead_letter(hub: RetainingHub, outbox: Effects) -> dict[str, str | None]:
    [letter] = dead_letters(hub, outbox)
    assert (letter["kind"], letter["component"], letter["reference"]) == (
        STATE_UNREADABLE,
        "hub.deadlines",
        REF,
    )
    reason = letter["reason"] or ""
    assert "open-cases" in reason
    assert GARBAGE.decode("latin-1") not in reason  # never the value itself
    return letter


# -- the handler: what the case waits for takes the entry's place ----------------------------


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_an_undecided_case_gets_its_own_deadline_back_and_is_decided_at_it(
    hub: RetainingHub, form: bytes
) -> None:
    """The entry in the place of a waiting case's deadline: left there, nothing ever
    ticked the case, and with a silent partner it stayed undecided for ever."""
    hub.intake.handle(declaration_xml(), at(0))
    own = hub.open_cases[KEY]
    hub.open_cases[KEY] = form
    repaired = tick(hub)
    assert hub.open_cases[KEY] == own
    assert "restored" in (the_dead_letter(hub, repaired)["reason"] or "")
    assert hub.decisions(repaired) == []  # a tick of no version decides nothing
    hub.now += timedelta(seconds=31)
    assert hub.decisions(tick(hub, version=1, offset=1)) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]


def test_a_decided_case_s_entry_is_removed_and_the_case_retires(hub: RetainingHub) -> None:
    hub.released()
    hub.open_cases[KEY] = GARBAGE
    assert "removed" in (the_dead_letter(hub, tick(hub))["reason"] or "")
    assert KEY not in hub.open_cases
    hub.retire()  # nothing waits on it any more


def test_a_case_kept_for_a_control_gets_its_control_report_back(hub: RetainingHub) -> None:
    """Its entry is the control's report date: without it no CONTROL_RESULT_OVERDUE."""
    hub.intake.handle(declaration_xml(), at(0))
    hub.now += timedelta(seconds=31)
    assert hub.decisions(tick(hub, version=1)) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    own = hub.open_cases[KEY]
    hub.open_cases[KEY] = CUT_SHORT
    the_dead_letter(hub, tick(hub, offset=1))
    assert hub.open_cases[KEY] == own
    hub.now += timedelta(seconds=hub.control_report_after_s + 1)
    assert hub.status_kinds(tick(hub, version=1, offset=2)) == [StatusKind.CONTROL_RESULT_OVERDUE]


def test_an_entry_without_a_case_is_removed(hub: RetainingHub) -> None:
    hub.open_cases[KEY] = GARBAGE
    the_dead_letter(hub, tick(hub))
    assert KEY not in hub.open_cases


def test_a_readable_entry_is_no_dead_letter(hub: RetainingHub) -> None:
    hub.intake.handle(declaration_xml(), at(0))
    assert dead_letters(hub, tick(hub)) == []
    assert dead_letters(hub, tick(hub, version=1)) == []


def test_an_answer_still_decides_the_case_whose_entry_was_replaced(hub: RetainingHub) -> None:
    sent = hub.intake.handle(declaration_xml(), at(0))
    hub.open_cases[KEY] = GARBAGE
    tick(hub)
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]
    assert KEY not in hub.open_cases


# -- the timer: the entry is ticked, not skipped ---------------------------------------------


def sweep_of(hub: RetainingHub, app: TimerApp, index: DeadlineIndex) -> DeadlineSweep:
    return DeadlineSweep(
        app, TOPICS, hub.open_cases, AnswerProgress(), index, lambda: hub.now.timestamp()
    )


async def test_the_index_read_holds_an_entry_that_does_not_read_as_due_now(
    hub: RetainingHub,
) -> None:
    hub.open_cases[KEY] = GARBAGE
    index = DeadlineIndex()
    now = hub.now.timestamp()
    await index.read(hub.open_cases.items, now)
    assert index.due(now) == [KEY]


async def test_the_timer_ticks_it_on_each_deadlines_partition_it_holds_and_it_is_replaced(
    hub: RetainingHub,
) -> None:
    hub.intake.handle(declaration_xml(), at(0))
    own = hub.open_cases[KEY]
    hub.open_cases[KEY] = GARBAGE
    app = TimerApp()
    sweep = sweep_of(hub, app, DeadlineIndex())
    await sweep.run()
    assert sorted(app.producer.sent, key=str) == [(KEY, b"0", 0), (KEY, b"0", 2)]
    key, value, partition = app.producer.sent[0]
    assert partition == 0  # the case's partition here (the unit store has but one)
    handled = hub.deadlines.handle(
        key.decode(), int(value), SourcePosition(TOPICS.deadlines, 0, 0, key)
    )
    the_dead_letter(hub, handled)
    assert hub.open_cases[KEY] == own
    # Looked at again a few seconds later: it reads, and is not due yet: no tick.
    hub.now += timedelta(seconds=6)
    await sweep.run()
    assert len(app.producer.sent) == 2


async def test_an_entry_that_turns_unreadable_after_the_read_is_ticked_too(
    hub: RetainingHub,
) -> None:
    """Held in the index while it read, then found not to read when due."""
    hub.intake.handle(declaration_xml(), at(0))
    app = TimerApp()
    sweep = sweep_of(hub, app, DeadlineIndex())
    await sweep.run()  # reads the index: the deadline is in 30 s
    hub.open_cases[KEY] = GARBAGE
    hub.now += timedelta(seconds=31)
    await sweep.run()
    assert sorted(app.producer.sent, key=str) == [(KEY, b"0", 0), (KEY, b"0", 2)]


async def test_during_a_rebalance_it_waits_for_the_next_look(hub: RetainingHub) -> None:
    hub.open_cases[KEY] = GARBAGE
    app = TimerApp()
    app.assignor.rebalancing = True
    sweep = sweep_of(hub, app, DeadlineIndex())
    await sweep.run()
    assert app.producer.sent == []
    app.assignor.rebalancing = False
    hub.now += timedelta(seconds=6)
    await sweep.run()
    assert len(app.producer.sent) == 2
