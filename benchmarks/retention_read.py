"""What the retention index costs on a real RocksDB: reading the table into it, and a look.

``RetentionIndex`` keeps every ``case-retention`` entry's key in due order on the worker's
disk (``RocksDueKeys``): it reads the whole table when the worker's partitions change (a
start, a rebalance), and each look takes only what is due (docs/bounded-state.md). Before
stop 44 it held the next hour's keys in memory and read the whole table every half hour.
This writes ``--entries`` entries into a rocksdict database, as the hub's store keeps
them (raw bytes; one scheduled case to five markers of about 400 bytes), then times a
plain iteration, the index's read of them, and looks taking what falls due, and says what
that makes at production's volume.

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
from gun_hub.runtime.due_keys import RocksDueKeys

PARTITIONS = 6
MARKER_BYTES = 350  # a sealed marker of a typical case; its head adds the rest
# Production (docs/domain.md): 100 declarations a second, cases kept 3 days after their
# decision, markers 14 more (the defaults of hub.case_retention_s and decided_marker_s).
PRODUCTION_ENTRIES = 100 * 86_400 * (3 + 14)
PRODUCTION_LOOK = 100 * 60  # what falls due in a look of a minute (hub.case_sweep_s)
LOOKED_AT = 60_000  # keys taken by the timed looks


def _entry(n: int, now: float) -> bytes:
    if n % 6 == 0:  # a scheduled case, due within its 3 days
        return RetentionEntry(now + n % 259_200, n % PARTITIONS).to_bytes()
    return RetentionEntry(
        now + 86_400 + n % 1_209_600, n % PARTITIONS, os.urandom(MARKER_BYTES)
    ).to_bytes()


def measure(entries: int, folder: Path) -> dict[str, float | int]:
    now = time.time()
    db = Rdict(str(folder / "case-retention"), Options(raw_mode=True))
    for n in range(entries):
        db[f"26FR{n:014d}".encode()] = _entry(n, now)
    db.close()  # read back from disk, as a worker's store after a while
    db = Rdict(str(folder / "case-retention"), Options(raw_mode=True))
    keys = RocksDueKeys(folder / "retention-due")
    try:
        began = time.perf_counter()
        iterated = sum(1 for _ in db.items())
        iterate_s = time.perf_counter() - began
        index = RetentionIndex(keys)
        began = time.perf_counter()
        asyncio.run(index.refresh(set(range(PARTITIONS)), db.items))
        read_s = time.perf_counter() - began
        held = len(index)
        # Looks until LOOKED_AT keys came out (or the index is empty), each taking what
        # fell due in the next day of the entries' time, partition by partition.
        taken, looked, began = 0, now, time.perf_counter()
        while taken < LOOKED_AT and len(index):
            looked += 86_400
            for partition in range(PARTITIONS):
                taken += len(index.due(partition, looked))
        look_s = time.perf_counter() - began
    finally:
        db.close()
        keys.close()
    read_per_entry_s = read_s / iterated
    take_per_key_s = look_s / max(taken, 1)
    return {
        "entries": iterated,
        "held": held,
        "iterate_us_per_entry": round(iterate_s / iterated * 1e6, 2),
        "read_us_per_entry": round(read_per_entry_s * 1e6, 2),
        "look_us_per_key": round(take_per_key_s * 1e6, 2),
        "keys_taken": taken,
        "production_entries": PRODUCTION_ENTRIES,
        "production_read_core_s": round(read_per_entry_s * PRODUCTION_ENTRIES),
        "production_look_ms": round(take_per_key_s * PRODUCTION_LOOK * 1e3, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="gun-hub-retention-read-"))
    try:
        result = measure(args.entries, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"{result['entries']:,} entries: iterate {result['iterate_us_per_entry']} µs, "
        f"read into the index {result['read_us_per_entry']} µs an entry; "
        f"a look {result['look_us_per_key']} µs a key taken ({result['keys_taken']:,} taken)"
    )
    print(
        f"at production's {PRODUCTION_ENTRIES:,} entries: a read "
        f"{result['production_read_core_s']:,} s of one core, at a start or a rebalance only "
        f"(shared among the workers); a look at the {PRODUCTION_LOOK:,} keys due in a "
        f"minute {result['production_look_ms']} ms"
    )
    print(f"saved {save('retention-read', result)}")


if __name__ == "__main__":
    main()
