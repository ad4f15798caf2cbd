"""A component that exits under a demo, a benchmark or a chaos run is reported with the
lines that say why it stopped, not only its last lines (operator review of stop 48: the
hub's CRITICAL "sealed with state key ..., which is not among the state keys" was
followed by 25 lines of "Stopping...", and "demo failed: hub exited with code 1" said
nothing else)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gun_tools.processes import Child, ChildExited, ProcessGroup


def logged(level: str, message: str) -> str:
    return json.dumps({"ts": "2026-12-06T15:45:33.818+00:00", "level": level, "message": message})


def a_child_that_logged(tmp_path: Path, lines: list[str]) -> ProcessGroup:
    """A group whose child ``hub`` has exited with code 1, having logged ``lines``."""
    group = ProcessGroup(tmp_path / "logs")
    (tmp_path / "logs").mkdir(parents=True)
    log = tmp_path / "logs" / "hub.log"
    log.write_text("\n".join(lines) + "\n")
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    process.wait()
    group.children["hub"] = Child("hub", process, log)
    return group


def test_the_reason_logged_before_a_long_shutdown_is_in_the_report(tmp_path: Path) -> None:
    reason = logged("CRITICAL", "decision-outbox: sealed with state key 'k', this worker stops")
    stopping = [logged("INFO", f"[^--Agent {n}]: Stopping...") for n in range(60)]
    group = a_child_that_logged(tmp_path, [logged("INFO", "started"), reason, *stopping])
    with pytest.raises(ChildExited) as exited:
        group.check_alive()
    report = str(exited.value)
    assert report.startswith("hub exited with code 1:\n")
    assert reason in report
    assert stopping[-1] in report
    assert logged("INFO", "started") not in report


def test_a_short_log_is_reported_whole_once(tmp_path: Path) -> None:
    lines = [logged("ERROR", "cannot bind"), logged("INFO", "stopped")]
    group = a_child_that_logged(tmp_path, lines)
    with pytest.raises(ChildExited) as exited:
        group.check_alive()
    assert str(exited.value).count("cannot bind") == 1


def test_the_error_that_ended_it_is_shown_not_the_passing_ones_of_its_start(
    tmp_path: Path,
) -> None:
    passing = [logged("ERROR", f"Unable connect to 127.0.0.1:9092 ({n})") for n in range(5)]
    reason = logged("ERROR", "cannot bind 127.0.0.1:6066")
    stopping = [logged("INFO", f"[^--Agent {n}]: Stopping...") for n in range(40)]
    lines = [*passing, *(logged("INFO", f"working {n}") for n in range(100)), reason, *stopping]
    group = a_child_that_logged(tmp_path, lines)
    with pytest.raises(ChildExited) as exited:
        group.check_alive()
    assert reason in str(exited.value)
    assert passing[0] not in str(exited.value)
