"""``./tasks bench-retention-read`` measures the retention index's read on a real RocksDB
(benchmarks/retention_read.py): what it reads is what a worker's store holds."""

from __future__ import annotations

from pathlib import Path

from benchmarks.retention_read import measure


def test_the_read_covers_every_entry_and_holds_only_the_hours_schedules(tmp_path: Path) -> None:
    result = measure(6000, tmp_path / "case-retention")

    assert result["entries"] == 6000
    # One entry in six is a case scheduled 0 to 3 days ahead (n seconds for the n-th);
    # those within the hour, its end included, are held; markers (days ahead) never.
    assert result["held_for_the_hour"] == len(range(0, 3601, 6))
    assert 0 < result["iterate_us_per_entry"] <= result["refresh_us_per_entry"]
