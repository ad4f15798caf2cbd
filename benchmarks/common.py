"""Helpers shared by the benchmarks: timing loops and saving results."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gun_hub.cli.progress import HIDDEN, ProgressBar

RESULTS = Path(__file__).resolve().parent.parent / "bench-results"


REPEATS = 5


def calls_made(calls: int, repeats: int = REPEATS) -> int:
    """How many calls :func:`time_per_call` makes, warm-up included (a progress total)."""
    return calls * (repeats + 1)


def time_per_call(
    action: Callable[[], object],
    *,
    calls: int,
    repeats: int = REPEATS,
    progress: ProgressBar = HIDDEN,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Seconds per call, one figure per repeat (after one warm-up repeat).

    ``progress`` advances once per repeat, outside the timed loop. ``clock``: the wall
    clock, or ``time.process_time`` for the CPU a call costs on a machine shared with
    other work.
    """
    figures = []
    for attempt in range(repeats + 1):
        began = clock()
        for _ in range(calls):
            action()
        elapsed = (clock() - began) / calls
        progress.advance(calls)
        if attempt:
            figures.append(elapsed)
    return figures


def summary_us(figures: list[float]) -> dict[str, float]:
    micro = [f * 1e6 for f in figures]
    return {
        "median_us": round(statistics.median(micro), 2),
        "min_us": round(min(micro), 2),
        "max_us": round(max(micro), 2),
    }


def save(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    result = {
        "benchmark": name,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        **result,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
