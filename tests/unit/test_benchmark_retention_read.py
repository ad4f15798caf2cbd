"""``./tasks bench-retention-read`` measures the retention index on a real RocksDB
(benchmarks/retention_read.py): what it reads is what a worker's store holds, and its
looks take every key once."""

from __future__ import annotations

from pathlib import Path

from benchmarks.retention_read import measure


def test_the_read_holds_every_entry_and_the_looks_take_each_once(tmp_path: Path) -> None:
    result = measure(6000, tmp_path)

    assert result["entries"] == result["held"] == 6000
    # Looks a day apart take what fell due: every key once, the last looks stopping
    # at 60,000 or once the index is empty (here: all 6,000).
    assert result["keys_taken"] == 6000
    assert 0 < result["iterate_us_per_entry"] <= result["read_us_per_entry"]
    assert result["look_us_per_key"] > 0
