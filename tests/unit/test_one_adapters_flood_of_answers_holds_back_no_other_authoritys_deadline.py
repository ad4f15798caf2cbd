"""A case times out once the answers it could still get are read through: its
declarations partition and the responses partitions of the authorities it waits for,
not every authority's (stop 46's open item, from the review of every consumer against
what a party may write).

Each adapter writes its own answers topic. One that floods it (a defect, a replay of a
day's answers, a hostile replica) leaves that topic's partition unread for a while: a
case waiting for a DGAL certificate only cannot get its answer there, yet its deadline
waited for it, so every authority's cases on that partition stayed undecided past their
deadlines for as long as the flood was being read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.answer_progress import AnswerProgress
from gun_hub.pipeline.deadlines import DeadlineIndex
from gun_hub.pipeline.hub_context import OpenCaseEntry
from tests.builders import declaration_xml
from tests.unit.test_deadline_sweep_reads_what_is_due import (
    NOW,
    TOPICS,
    Clock,
    CountingTable,
    FakeApp,
    Worker,
)
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import REF, at

FLOODED = "cites"  # the adapter whose answers topic is flooded
TICK = SourcePosition("gun.hub.deadlines", 0, 0)


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: object) -> Hub:
    return Hub(routing_table, keys_dir)  # type: ignore[arg-type]


def test_a_case_waiting_for_dgal_times_out_while_the_cites_answers_are_flooded(hub: Hub) -> None:
    hub.intake.handle(declaration_xml(), at(0))  # a sanitary certificate: DGAL only
    hub.now += timedelta(seconds=31)  # past the request deadline (30 s here)
    hub.unread_answers_of = {FLOODED}
    tick = hub.deadlines.handle(REF, 1, TICK)
    assert hub.decisions(tick) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]


def test_a_case_still_waits_for_the_answers_of_the_authority_it_waits_for(hub: Hub) -> None:
    hub.intake.handle(declaration_xml(), at(0))
    hub.now += timedelta(seconds=31)
    hub.unread_answers_of = {"dgal"}  # its own partner's answer may be there
    assert hub.decisions(hub.deadlines.handle(REF, 1, TICK)) == []
    assert REF.encode() in hub.open_cases  # ticked again by a later sweep


def test_the_open_case_entry_names_the_authorities_its_case_was_opened_waiting_for(
    hub: Hub,
) -> None:
    hub.intake.handle(declaration_xml(), at(0))
    entry = OpenCaseEntry.from_bytes(hub.open_cases[REF.encode()])
    assert entry.awaiting == ("dgal",)


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        (OpenCaseEntry(3, NOW, 2, awaiting=("cites", "dgal")), ("cites", "dgal")),
        (OpenCaseEntry(3, NOW, 2, waits_for_control=True, awaiting=()), ()),
        (OpenCaseEntry(3, NOW, 2), None),
    ],
)
def test_an_entry_reads_back_what_it_waits_for(
    entry: OpenCaseEntry, says: tuple[str, ...] | None
) -> None:
    assert OpenCaseEntry.from_bytes(entry.to_bytes()) == entry
    assert OpenCaseEntry.from_bytes(entry.to_bytes()).awaiting == says


def test_an_entry_written_before_the_authorities_were_named_waits_for_every_one() -> None:
    """Written by a worker before stop 47 (a rolling upgrade): nothing is assumed."""
    assert OpenCaseEntry.from_bytes(f"1|{NOW}|0|answers".encode()).awaiting is None


@dataclass
class FloodedConsumer:
    """Every input partition ends at 10 and is read to it, but ``flooded``'s answers."""

    flooded: str

    async def highwaters(self, *tps: Any) -> dict[Any, int]:
        return dict.fromkeys(tps, 10)

    def first_unsettled(self, tp: Any) -> int:
        return 0 if tp.topic == TOPICS.responses(self.flooded) else 10


def _worker() -> Worker:
    app = FakeApp(consumer=FloodedConsumer(FLOODED))  # type: ignore[arg-type]
    return Worker(app, CountingTable(), DeadlineIndex(), Clock(), AnswerProgress())


@pytest.mark.asyncio
async def test_the_sweep_ticks_what_waits_for_no_flooded_authority() -> None:
    worker = _worker()
    due = NOW - 1
    worker.open_cases[b"DGAL-ONLY"] = OpenCaseEntry(1, due, 0, awaiting=("dgal",)).to_bytes()
    worker.open_cases[b"CITES-TOO"] = OpenCaseEntry(
        1, due, 0, awaiting=("cites", "dgal")
    ).to_bytes()
    worker.open_cases[b"UNSAID"] = OpenCaseEntry(1, due, 0).to_bytes()
    worker.open_cases[b"CONTROL"] = OpenCaseEntry(
        1, due, 0, waits_for_control=True, awaiting=()
    ).to_bytes()
    assert sorted(await worker.sweep_at(NOW)) == [b"CONTROL", b"DGAL-ONLY"]
