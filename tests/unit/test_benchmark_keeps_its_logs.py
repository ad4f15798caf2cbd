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


def test_the_brokers_server_and_gc_logs_are_kept_under_broker(tmp_path: Path) -> None:
    """The group coordinator's reasons for a rebalance are in the broker's server log, and
    a broker pause in its GC log: a stall in the latency figures is read about there."""
    work = tmp_path / "run"
    (work / "logs").mkdir(parents=True)
    (work / "logs" / "hub.log").write_text("WARNING Heartbeat failed for group gun-hub\n")
    broker_logs = work / "kafka" / "logs"
    broker_logs.mkdir(parents=True)
    (broker_logs / "server.log").write_text("INFO Preparing to rebalance group gun-hub\n")
    (broker_logs / "gc.log").write_text("[0.5s] GC(0) Pause Young (Normal) 24M->4M 3.1ms\n")
    (work / "kafka" / "data").mkdir()  # the broker's partitions: not logs
    kept = keep_logs(work, tmp_path / "results" / "bench-20261204T030000Z.json")
    assert kept is not None
    assert sorted(p.name for p in kept.iterdir()) == ["broker", "hub.log"]
    assert sorted(p.name for p in (kept / "broker").iterdir()) == ["gc.log", "server.log"]
    assert "Preparing to rebalance" in (kept / "broker" / "server.log").read_text()
