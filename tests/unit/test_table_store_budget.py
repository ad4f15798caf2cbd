"""Every RocksDB table of a hub worker shares one memory budget (runtime/table_store.py):
one read cache, and the write buffers charged to it, whatever the number of partitions."""

from __future__ import annotations

from pathlib import Path

import faust.stores
import rocksdict

from gun_hub.runtime import table_store
from gun_hub.runtime.table_store import BudgetedOptions, MemoryBudget

MIB = 1024 * 1024


def open_db(path: Path, budget: MemoryBudget) -> rocksdict.Rdict:
    options = BudgetedOptions(
        write_buffer_size=2 * MIB, max_write_buffer_number=2, budget=budget, use_rocksdict=True
    )
    return rocksdict.Rdict(str(path), options=options.as_options())


def test_the_write_buffers_of_every_table_are_charged_to_one_shared_cache(
    tmp_path: Path,
) -> None:
    budget = MemoryBudget.of(16)
    first, second = open_db(tmp_path / "cases-0", budget), open_db(tmp_path / "cases-1", budget)
    try:
        before = budget.cache.get_usage()
        for n in range(2000):
            first[f"a{n}".encode()] = b"x" * 256
        after_first = budget.cache.get_usage()
        for n in range(2000):
            second[f"b{n}".encode()] = b"x" * 256
        after_both = budget.cache.get_usage()
    finally:
        first.close()
        second.close()
    assert before < after_first < after_both, "both databases' memtables count in one cache"
    assert budget.write_buffers.enabled()
    assert budget.write_buffers.get_buffer_size() == 8 * MIB  # half the budget


def test_the_write_buffers_stay_near_their_share_however_much_is_written(tmp_path: Path) -> None:
    """60 MiB written into six tables as fast as one thread can: without the budget their
    write buffers could hold 6 x 2 x 2 MiB; with it, flushes start at its share (4 MiB)
    and run in the background (writers are never stalled: they are the event loop)."""
    budget = MemoryBudget.of(8)
    databases = [open_db(tmp_path / f"table-{n}", budget) for n in range(6)]
    unbudgeted = 6 * 2 * 2 * MIB
    peak = 0
    try:
        for n in range(60000):
            databases[n % 6][f"k{n}".encode()] = b"y" * 1024
            if n % 500 == 0:
                peak = max(peak, budget.write_buffers.get_usage())
        for n in range(0, 60000, 7):
            assert databases[n % 6][f"k{n}".encode()] == b"y" * 1024
    finally:
        for database in databases:
            database.close()
    assert budget.write_buffers.get_buffer_size() <= peak < unbudgeted / 2
    assert budget.cache.get_usage() <= 1.2 * budget.bytes


def test_rocksdb_urls_open_the_budgeted_store_once_the_hub_asks() -> None:
    table_store.use()
    assert faust.stores.by_url("rocksdb://") is table_store.Store
