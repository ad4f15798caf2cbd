"""A benchmark counts every duplicate decision of its run, the late ones too.

Found by review (stop 37, T11): ``./tasks bench`` counted a duplicate only when it came
while a later phase still read decisions, and nothing was read after the last phase;
``./tasks bench-pipeline`` dropped duplicates in a set and reported "decided". Now, once
the last phase is over, the decisions topic is read to its end offsets and every
(reference, version) decided more than once is counted. No broker here: a reader that
hands out a partitioned log, and the verdict of the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any, cast

from benchmarks.bench import untrustworthy
from benchmarks.decision_books import decision_books, read_every_decision, summary
from gun_tools.clearance_stand_in import ReceivedDecision, Unreadable


def decision(reference: str, version: int = 1) -> ReceivedDecision:
    return cast(
        ReceivedDecision,
        SimpleNamespace(decision=SimpleNamespace(reference=reference, version=version)),
    )


class LogReader:
    """Each partition's decisions in order; every ``collect`` hands out up to ``batch``
    records of one partition after another and moves its position past them, as a
    consumer does. ``late``: records written after the read began (past the ends)."""

    def __init__(self, partitions: Mapping[int, list[ReceivedDecision]], batch: int = 2) -> None:
        self.log = {p: list(records) for p, records in partitions.items()}
        self.position = dict.fromkeys(self.log, 0)
        self.batch = batch
        self.unreadable: list[Unreadable] = []
        self.collects = 0

    async def end_offsets(self) -> dict[int, int]:
        return {p: len(records) for p, records in self.log.items()}

    async def reached(self, ends: Mapping[int, int]) -> bool:
        return all(self.position[p] >= end for p, end in ends.items())

    async def collect(self, *, expected: int, timeout_s: float) -> list[ReceivedDecision]:
        self.collects += 1
        for partition, records in self.log.items():
            start = self.position[partition]
            if start < len(records):
                taken = records[start : start + min(self.batch, expected)]
                self.position[partition] += len(taken)
                return taken
        return []


def test_every_version_decided_more_than_once_is_counted_with_its_count() -> None:
    books = decision_books([("A", 1), ("B", 1), ("A", 1), ("A", 2), ("A", 1), ("C", 1)])
    assert (books["decisions"], books["versions"]) == (6, 4)
    assert books["duplicate_decisions"] == 2  # A v1 decided three times
    assert books["versions_decided_more_than_once"] == 1
    assert books["examples"] == ["A v1: 3 decisions"]


def test_a_new_version_of_a_reference_is_no_duplicate() -> None:
    books = decision_books([("A", 1), ("A", 2), ("A", 3)])
    assert books["duplicate_decisions"] == 0
    assert books["examples"] == []


async def test_the_final_read_reaches_the_ends_and_sees_a_duplicate_of_the_last_phase() -> None:
    """The last phase's late duplicate, the one nothing read before, is in the books."""
    reader = LogReader(
        {
            0: [decision("WARM-1"), decision("PHASE1-A"), decision("PHASE2-A")],
            1: [decision("PHASE1-B"), decision("PHASE2-B"), decision("PHASE2-B")],
        }
    )
    books = await read_every_decision(reader)
    assert books["read_to_end"] is True
    assert books["end_offsets"] == {"0": 3, "1": 3}
    assert (books["decisions"], books["duplicate_decisions"]) == (6, 1)
    assert books["examples"] == ["PHASE2-B v1: 2 decisions"]
    assert "1 duplicate(s) (PHASE2-B v1: 2 decisions)" in summary(books)


async def test_a_read_that_does_not_reach_the_ends_in_time_says_so() -> None:
    """A transaction left open holds the end back, or a slow machine: the books say they
    cover only part of the topic, and the run is not trusted."""

    class Stuck(LogReader):
        async def collect(self, *, expected: int, timeout_s: float) -> list[ReceivedDecision]:
            self.collects += 1
            now[0] += timeout_s
            return []

    now = [0.0]
    reader = Stuck({0: [decision("A")]})
    books = await read_every_decision(reader, timeout_s=3, clock=lambda: now[0])
    assert books["read_to_end"] is False
    assert reader.collects == 6  # 0.5 s each, until the 3 s were over
    assert "NOT read to its end" in summary(books)


def result(**books: Any) -> dict[str, Any]:
    final = {"read_to_end": True, "duplicate_decisions": 0, "unreadable": 0} | books
    phase = {"workers": 1, "saturation": {"decided": 10, "declarations": 10}}
    return {"hub": [phase], "decision_books": final}


def test_a_run_is_trusted_only_with_its_decisions_read_to_the_end_and_none_twice() -> None:
    assert untrustworthy(result()) is None
    assert "2 duplicate decision(s)" in (untrustworthy(result(duplicate_decisions=2)) or "")
    assert "not read to its end" in (untrustworthy(result(read_to_end=False)) or "")
    undecided = result()
    undecided["hub"][0]["saturation"]["decided"] = 9
    assert "1 worker(s) saturation: 9 of 10" in (untrustworthy(undecided) or "")
