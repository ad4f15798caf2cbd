"""The short chaos run (part of ./tasks test): 500 declarations through two client
libraries, at least one of each fault, judged by the independent checker.

It runs ``python -m chaos run`` as its own process (its own broker on free ports, the hub,
three adapters and three partner simulators), exactly as ``./tasks chaos`` does with
5,000 declarations; on failure the checker's table says which invariant broke, and the
run's folder (logs, manifest, events, results.json) is kept under test-artifacts/chaos.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.chaos, pytest.mark.e2e, pytest.mark.broker]

REPO = Path(__file__).resolve().parents[2]
DECLARATIONS = 500
SEED = 20261122


@pytest.mark.timeout(420)
def test_short_chaos_run_keeps_every_invariant(tmp_path: Path) -> None:
    out = tmp_path / "chaos"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "chaos",
            "run",
            "--declarations",
            str(DECLARATIONS),
            "--seed",
            str(SEED),
            "--profile",
            "short",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    results_file = out / "results.json"
    kept = REPO / "test-artifacts" / "chaos-short"
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(out, kept, ignore=shutil.ignore_patterns("kafka", "hub", "keys", "state*"))
    assert results_file.exists(), f"no results (exit {done.returncode}):\n{done.stderr[-4000:]}"
    results = json.loads(results_file.read_text())
    assert results["declarations"] >= DECLARATIONS
    assert results["faults"]["hub_kill"] >= 2
    table = done.stdout[-12000:]
    assert done.returncode == 0, (
        f"invariants failed (run kept in {kept}):\n{table}\n{_warnings(done.stderr)}"
    )
    assert results["lost"] == 0
    assert results["duplicates"] == 0
    assert results["ledger_deviation"] == "0"
    assert results["ledger_lines"] > 0  # "deviation 0" over nothing read proves nothing
    assert results["decisions"] > 0


def _warnings(log: str, keep: int = 40) -> str:
    """The run's client warnings and notes: in CI the table alone does not say why."""
    lines = [
        line
        for line in log.splitlines()
        if "confluent-kafka" in line or "rdkafka" in line or " note " in line
    ]
    shown = "\n".join(lines[-keep:])
    return f"run log, warnings and notes (last {keep}):\n{shown}"
