"""What the retention index's periodic read costs per entry, on a real RocksDB.

``RetentionIndex.refresh`` reads every ``case-retention`` entry of the worker's partitions
once every half hour (docs/bounded-state.md, "The half-hourly read is a known limit"). This
writes ``--entries`` entries into a rocksdict database, as the hub's store keeps them
(raw bytes; one scheduled case to five markers of about 400 bytes), then times a plain
iteration and a refresh, and says what that makes at production's volume.

Run: ./tasks bench-retention-read [--entries N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

from rocksdict import Options, Rdict

from benchmarks.common import save
from gun_hub.pipeline.retention import RetentionEntry, RetentionIndex

PARTITIONS = 6
MARKER_BYTES = 350  # a sealed marker of a typical case; its head adds the rest
# Production (docs/domain.md): 100 declarations a second, cases kept 3 days after their
# decision, markers 14 more (the defaults of hub.case_retention_s and decided_marker_s).
PRODUCTION_ENTRIES = 100 * 86_400 * (3 + 14)
READ_EVERY_S = 1800.0  # half the index's horizon


def _entry(n: int, now: float) -> bytes:
    if n % 6 == 0:  # a scheduled case, due within its 3 days
        return RetentionEntry(now + n % 259_200, n % PARTITIONS).to_bytes()
    return RetentionEntry(
        now + 86_400 + n % 1_209_600, n % PARTITIONS, os.urandom(MARKER_BYTES)
    ).to_bytes()


def measure(entries: int, folder: Path) -> dict[str, float | int]:
    now = time.time()
    db = Rdict(str(folder), Options(raw_mode=True))
    for n in range(entries):
        db[f"26FR{n:014d}".encode()] = _entry(n, now)
    db.close()  # read back from disk, as a worker's store after a while
    db = Rdict(str(folder), Options(raw_mode=True))
    try:
        began = time.perf_counter()
        iterated = sum(1 for _ in db.items())
        iterate_s = time.perf_counter() - began
        index = RetentionIndex()
        began = time.perf_counter()
        asyncio.run(index.refresh(set(range(PARTITIONS)), db.items, now))
        refresh_s = time.perf_counter() - began
    finally:
        db.close()
    per_entry_s = refresh_s / iterated
    core_s = per_entry_s * PRODUCTION_ENTRIES
    return {
        "entries": iterated,
        "iterate_us_per_entry": round(iterate_s / iterated * 1e6, 2),
        "refresh_us_per_entry": round(per_entry_s * 1e6, 2),
        "held_for_the_hour": len(index),
        "production_entries": PRODUCTION_ENTRIES,
        "production_core_s_per_read": round(core_s),
        "production_share_of_a_core": round(core_s / READ_EVERY_S, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="gun-hub-retention-read-"))
    try:
        result = measure(args.entries, folder / "case-retention")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"{result['entries']:,} entries: iterate {result['iterate_us_per_entry']} µs, "
        f"refresh {result['refresh_us_per_entry']} µs an entry"
    )
    print(
        f"at production's {PRODUCTION_ENTRIES:,} entries: "
        f"{result['production_core_s_per_read']:,} s of one core a read, "
        f"{result['production_share_of_a_core']:.0%} of a core (a read every half hour), "
        "shared among the workers"
    )
    print(f"saved {save('retention-read', result)}")


if __name__ == "__main__":
    main()
