"""The chaos run waits until every group of the stack has committed up to the end of what
it reads (``chaos/orchestrator.py``); the hub's group also holds an offset of 0 for each of
its tables' changelog partitions, which faust leaves there and never reads through the
group. Counted, they held every run up for six quiet times and noted the hub's commits as
stalled while every invariant held (stop 42: found on the run's own broker)."""

from __future__ import annotations

from aiokafka import TopicPartition

from chaos.orchestrator import uncommitted

DECLARATIONS = TopicPartition("chaos.declarations", 0)
CASES = TopicPartition("chaos-hub-cases-changelog", 0)


def test_the_hubs_changelogs_committed_at_zero_are_not_behind() -> None:
    assert uncommitted({DECLARATIONS: 120, CASES: 0}, {DECLARATIONS: 120, CASES: 2909}) == []


def test_an_input_not_committed_to_its_end_is_behind() -> None:
    ends = {DECLARATIONS: 121, CASES: 2909}
    assert uncommitted({DECLARATIONS: 120, CASES: 0}, ends) == [DECLARATIONS]
