"""Every RocksDB table of a hub worker shares one memory budget (runtime/table_store.py):
one read cache, and the write buffers charged to it, whatever the number of partitions."""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import faust.stores
import pytest
import rocksdict
from prometheus_client import generate_latest

from gun_hub.runtime import table_store
from gun_hub.runtime.table_store import BudgetedOptions, MemoryBudget

MIB = 1024 * 1024
TABLES = 6
WRITE_BUFFER = 2 * MIB
# RocksDB's default arena block: an eighth of the write buffer. The write buffer manager
# decides to flush when a write arrives, so once the flushes are done each table may hold
# at most one block past the manager's size.
ARENA_BLOCK = WRITE_BUFFER // 8
# How long RocksDB's background threads get to finish the flushes the writes asked for.
FLUSH_WAIT_S = 60


def open_db(path: Path, budget: MemoryBudget) -> rocksdict.Rdict:
    options = BudgetedOptions(
        write_buffer_size=WRITE_BUFFER, max_write_buffer_number=2, budget=budget, use_rocksdict=True
    )
    return rocksdict.Rdict(str(path), options=options.as_options())


@pytest.fixture
def in_memory(tmp_path: Path) -> Iterator[Path]:
    """A folder in memory (tmpfs) when the machine has one: a flush must not wait on a
    disk that a parallel test suite's brokers keep busy (CI: 7 MiB still unflushed 30 s
    after the last write, on disk)."""
    shm = Path("/dev/shm")  # noqa: S108 (a private folder in it, made by tempfile)
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="gun-hub-budget-") as folder:
        yield Path(folder)


def flushes_pending(databases: list[rocksdict.Rdict]) -> int:
    return sum(
        int(db.property_int_value("rocksdb.num-immutable-mem-table") or 0) for db in databases
    )


def files_flushed(databases: list[rocksdict.Rdict]) -> int:
    return sum(int(db.property_int_value("rocksdb.num-files-at-level0") or 0) for db in databases)


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


def at_most_the_share(budget: MemoryBudget) -> int:
    return int(budget.write_buffers.get_buffer_size()) + TABLES * ARENA_BLOCK


def fill_six_tables_just_short_of_a_flush(folder: Path, budget: MemoryBudget) -> tuple[int, int]:
    """1.8 MiB into each of six tables (2 MiB write buffers: none fills up and flushes by
    itself); then, once the flushes the writes asked for are done, what the write buffers
    hold and how many files were flushed."""
    databases = [open_db(folder / f"table-{n}", budget) for n in range(TABLES)]
    try:
        for n in range(TABLES * 1800):
            databases[n % TABLES][f"k{n}".encode()] = b"y" * 1024
        # Flushes run in RocksDB's background threads: awaited, not raced.
        deadline = time.monotonic() + FLUSH_WAIT_S
        while flushes_pending(databases) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert flushes_pending(databases) == 0, f"flushes unfinished after {FLUSH_WAIT_S} s"
        for n in range(0, TABLES * 1800, 7):
            assert databases[n % TABLES][f"k{n}".encode()] == b"y" * 1024
        return int(budget.write_buffers.get_usage()), files_flushed(databases)
    finally:
        for database in databases:
            database.close()


def test_the_write_buffers_are_flushed_down_to_their_share_of_the_budget(in_memory: Path) -> None:
    budget = MemoryBudget.of(8)
    held, flushed = fill_six_tables_just_short_of_a_flush(in_memory, budget)
    assert flushed > 0
    assert budget.write_buffers.get_buffer_size() == 4 * MIB
    assert held <= at_most_the_share(budget) < 6 * MIB
    assert budget.cache.get_usage() <= 1.2 * budget.bytes


def test_without_the_budget_the_same_writes_stay_in_memory(in_memory: Path) -> None:
    """The control: a write buffer manager that only measures (1 GiB, charged to no
    cache) sees the 6 x 1.8 MiB stay, never flushed."""
    meter = MemoryBudget(
        rocksdict.Cache(8 * MIB), rocksdict.WriteBufferManager(1024 * MIB, False), 8 * MIB
    )
    held, flushed = fill_six_tables_just_short_of_a_flush(in_memory, meter)
    assert flushed == 0
    assert held >= 10 * MIB


def test_rocksdb_urls_open_the_budgeted_store_once_the_hub_asks() -> None:
    table_store.use()
    assert faust.stores.by_url("rocksdb://") is table_store.Store


def test_the_budgets_use_is_exported() -> None:
    budget = table_store.process_budget(8)
    exposition = generate_latest().decode()
    found = re.search(r"^gun_hub_rocksdb_memory_bytes (\S+)$", exposition, re.MULTILINE)
    assert found is not None
    assert float(found.group(1)) == budget.cache.get_usage()


# RocksDB's info log (LOG, rolled to LOG.old.<time>) records every flush, compaction and
# statistics dump of its database. By default it is one file that grows for as long as
# the database lives: in a hub of 24 table partitions, megabytes per hour of a steady
# load, for ever.
EXPIRING_KEYS = 2000
VALUE = b"z" * 3000
WRITTEN = 64 * MIB


def info_log_bytes(folder: Path) -> tuple[int, int]:
    """The info log files of a database: their number and their bytes together."""
    logs = [path for path in folder.iterdir() if path.name.startswith("LOG")]
    return len(logs), sum(path.stat().st_size for path in logs)


def write_keys_that_expire(database: rocksdict.Rdict) -> None:
    """A table whose keys expire, as the hub's do (retention, the replay memory): each
    write deletes the key written ``EXPIRING_KEYS`` writes before, so what is live stays
    the same and every flush and compaction is one more entry in the info log."""
    for n in range(WRITTEN // len(VALUE)):
        database[f"k{n:09d}".encode()] = VALUE
        if n >= EXPIRING_KEYS:
            del database[f"k{n - EXPIRING_KEYS:09d}".encode()]
    deadline = time.monotonic() + FLUSH_WAIT_S
    while flushes_pending([database]) and time.monotonic() < deadline:
        time.sleep(0.05)
    # The info log is measured after the last flush: one still running would log later.
    assert flushes_pending([database]) == 0, f"flushes unfinished after {FLUSH_WAIT_S} s"


def test_a_tables_info_log_is_rolled_and_its_old_files_removed(in_memory: Path) -> None:
    options = BudgetedOptions(
        write_buffer_size=256 * 1024,
        max_write_buffer_number=2,
        budget=MemoryBudget.of(8),
        use_rocksdict=True,
    )
    database = rocksdict.Rdict(str(in_memory / "seen-0"), options=options.as_options())
    try:
        write_keys_that_expire(database)
    finally:
        database.close()
    files, size = info_log_bytes(in_memory / "seen-0")
    assert files <= table_store.INFO_LOGS_KEPT
    # The file being written may pass the size by the entry that rolls it.
    assert size <= table_store.INFO_LOGS_KEPT * table_store.INFO_LOG_BYTES + 64 * 1024


def test_with_rocksdbs_defaults_the_same_writes_grow_one_info_log_past_that_bound(
    in_memory: Path,
) -> None:
    """The control: the writes above log more than the bound allows."""
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(256 * 1024)
    database = rocksdict.Rdict(str(in_memory / "seen-0"), options=options)
    try:
        write_keys_that_expire(database)
    finally:
        database.close()
    files, size = info_log_bytes(in_memory / "seen-0")
    assert files == 1
    assert size > 2 * table_store.INFO_LOGS_KEPT * table_store.INFO_LOG_BYTES
