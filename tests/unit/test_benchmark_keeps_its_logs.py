"""A benchmark run keeps its components' logs beside its JSON (benchmarks/bench.py): the
run's own folder, broker and all, is thrown away, and a late window or a watchdog repair
in the figures is read about in the warnings the hub wrote then."""

from __future__ import annotations

from pathlib import Path

from benchmarks.bench import keep_logs


def test_the_components_logs_are_kept_beside_the_result(tmp_path: Path) -> None:
    work = tmp_path / "run"
    (work / "logs").mkdir(parents=True)
    (work / "logs" / "hub.log").write_text("WARNING offset 0 was fetched but never handled\n")
    (work / "hub").mkdir()  # the hub's RocksDB tables: not logs
    (work / "hub" / "000004.log").write_bytes(b"\0" * 64)
    result = tmp_path / "results" / "steady-20261203T120000Z.json"
    kept = keep_logs(work, result)
    assert kept == tmp_path / "results" / "steady-20261203T120000Z-logs"
    assert (kept / "hub.log").read_text().startswith("WARNING offset 0")
    assert sorted(p.name for p in kept.iterdir()) == ["hub.log"]


def test_a_run_that_started_no_component_keeps_nothing(tmp_path: Path) -> None:
    assert keep_logs(tmp_path, tmp_path / "results" / "raw.json") is None
    assert not (tmp_path / "results").exists()
