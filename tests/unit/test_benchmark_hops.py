"""The pure parts of ``./tasks bench-hops`` (issue 12): a declaration's path lined up
stage by stage, the gap of each hop and its share of the end-to-end time. The run itself
needs a broker and is never part of the test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.hops import STAGES, hop_table, render, schedstat, stage_rates


def path(start: float, gaps: list[float]) -> dict[str, float]:
    """A declaration's stage times: ``start``, then each stage ``gaps`` after the last."""
    times = {STAGES[0]: start}
    for stage, gap in zip(STAGES[1:], gaps, strict=True):
        start += gap
        times[stage] = start
    return times


def test_each_hop_is_the_gap_between_two_consecutive_stages_of_one_declaration() -> None:
    # The third hop (verdict → request) takes 9 of each declaration's 15 seconds.
    paths = {
        "a": path(0.0, [1, 1, 9, 1, 1, 1, 1]),
        "b": path(0.5, [1, 1, 9, 1, 1, 1, 1]),
    }
    rows = hop_table(paths)
    assert [r["hop"] for r in rows] == [
        "declaration → claim",
        "claim → verdict",
        "verdict → request",
        "request → answer",
        "answer → outbox",
        "outbox → decision",
        "decision → seen",
        "declaration → seen",
    ]
    by_hop = {r["hop"]: r for r in rows}
    assert by_hop["verdict → request"]["p50_ms"] == 9000.0
    assert by_hop["verdict → request"]["share"] == pytest.approx(9 / 15, abs=0.001)
    assert by_hop["declaration → seen"]["mean_ms"] == 15000.0
    assert sum(r["share"] for r in rows[:-1]) == pytest.approx(1.0, abs=0.01)


def test_a_declaration_missing_a_stage_is_left_out_of_the_gaps() -> None:
    incomplete = path(0.0, [1, 1, 1, 1, 1, 1, 1])
    del incomplete["verdict"]
    rows = hop_table({"complete": path(0.0, [2, 2, 2, 2, 2, 2, 2]), "incomplete": incomplete})
    assert {r["count"] for r in rows} == {1}
    assert rows[0]["p50_ms"] == 2000.0


def test_each_stage_rate_is_taken_between_its_10th_and_90th_percentile() -> None:
    # 100 declarations sent at once; decisions seen one every 0.1 s: 10 per second.
    paths = {str(n): {"declaration": 0.0, "seen": n * 0.1} for n in range(100)}
    rates = stage_rates(paths)
    assert rates["seen"] == pytest.approx(10.0, rel=0.05)
    assert rates["claim"] is None  # no declaration reached it


def test_the_table_names_each_hop_and_its_share() -> None:
    paths = {"a": path(0.0, [1, 1, 6, 1, 1, 1, 1])}
    text = render(hop_table(paths), stage_rates(paths))
    assert "| verdict → request | hub intake: read verdict" in text
    assert "| 50 % |" in text


@pytest.mark.skipif(not Path("/proc/self/schedstat").exists(), reason="Linux schedstat")
def test_a_process_main_thread_times_are_read_and_a_gone_one_is_none() -> None:
    running, waiting = schedstat(os.getpid()) or (-1, -1)
    assert running > 0
    assert waiting >= 0
    assert schedstat(2**22 + 1) is None  # above the kernel's largest pid
