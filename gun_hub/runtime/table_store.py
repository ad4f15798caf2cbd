"""The hub's RocksDB tables under one memory budget for the whole process.

faust opens one RocksDB database per table and partition (six tables of four
partitions by default: 24 databases, more with more partitions), each with a read cache
and write buffers of its own, so the memory they may take grows with the partitions a
worker holds, and fills slowly:
in a 10-minute steady run (``./tasks bench-steady``) the hub's RSS still grew after
five minutes. Here every database of the process shares one block cache, and their
write buffers are charged to that same cache by one write buffer manager (RocksDB's
"cost memtables to the block cache"): ``hub.rocksdb_memory_mib`` caps both together,
whatever the number of partitions. When the write buffers reach their share, RocksDB
flushes the largest, which also lets the write-ahead logs behind them go.

faust builds a store's options from the table's ``options`` mapping; the shared objects
travel in it (``budget``) and ``BudgetedOptions`` uses them instead of making a cache
per database. ``rocksdb://`` names this store in the hub's process (``use``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import faust
import faust.stores
import rocksdict
from faust.stores import rocksdb as faust_rocksdb
from faust.types import TP

from gun_hub import metrics

log = logging.getLogger(__name__)

# The write buffers' share of the budget (the rest is the read cache's).
_WRITE_BUFFER_SHARE = 0.5

# RocksDB's info log (LOG) records each flush, compaction and statistics dump of its
# database; by default it is one file that grows for as long as the database lives
# (24 table partitions: megabytes an hour under a steady load, for ever). Each one is
# rolled at this size and this many files kept: at most 128 KiB a table partition, the
# last few hundred events, enough to read what RocksDB did lately.
INFO_LOG_BYTES = 64 * 1024
INFO_LOGS_KEPT = 2
# How often a table partition's opening is tried when an info log vanished under it, and
# the pause between tries (blocking: faust opens partitions synchronously).
INFO_LOG_TRIES = 5
INFO_LOG_PAUSE_S = 0.01


def info_log_vanished(err: Exception) -> bool:
    """RocksDB's refusal to open a database because an old info log it had listed to
    delete was gone when it did: every opening rolls ``LOG`` and deletes the oldest
    ``LOG.old.*`` beyond ``INFO_LOGS_KEPT``, and the process still holding the database
    (the worker being replaced, closing) deletes the same files. Momentary: the next try
    opens (clean-clone CI, stop 48: a worker's start refused)."""
    message = str(err)
    return "No such file or directory" in message and "/LOG.old." in message


@dataclass(frozen=True, slots=True)
class MemoryBudget:
    """One block cache and one write buffer manager for every table of the process."""

    cache: rocksdict.Cache
    write_buffers: rocksdict.WriteBufferManager
    bytes: int

    @classmethod
    def of(cls, mib: int) -> MemoryBudget:
        total = mib * 1024 * 1024
        shared = rocksdict.Cache(total)
        manager = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            int(total * _WRITE_BUFFER_SHARE), False, shared
        )
        return cls(shared, manager, total)


@cache
def process_budget(mib: int) -> MemoryBudget:
    """The budget of this process (one per size asked: in practice one), its use
    exported as ``gun_hub_rocksdb_memory_bytes``."""
    budget = MemoryBudget.of(mib)
    metrics.ROCKSDB_MEMORY.set_function(budget.cache.get_usage)
    return budget


class BudgetedOptions(faust_rocksdb.RocksDBOptions):  # type: ignore[misc]
    """faust's options for rocksdict, with the process's shared cache and write buffer
    manager instead of a cache of ``block_cache_size`` per database."""

    def as_options(self) -> Any:
        budget = self.extra_options.get("budget")
        if not self.use_rocksdict or not isinstance(budget, MemoryBudget):
            return super().as_options()
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_open_files(self.max_open_files)
        options.set_write_buffer_size(self.write_buffer_size)
        options.set_target_file_size_base(self.target_file_size_base)
        options.set_max_write_buffer_number(self.max_write_buffer_number)
        options.set_write_buffer_manager(budget.write_buffers)
        options.set_max_log_file_size(INFO_LOG_BYTES)
        options.set_keep_log_file_num(INFO_LOGS_KEPT)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table.set_block_cache(budget.cache)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options


class Store(faust_rocksdb.Store):  # type: ignore[misc]
    """faust's RocksDB store, its databases opened with ``BudgetedOptions``, the
    changelog offset each partition's database is stored up to written at most once a
    second, a deletion made where its event's write would be, and a key's value read on
    each partition.

    faust's deletion removed the key from the partition its key index (an LRU of key to
    the partition it was last read or written on) named, or from every partition when the
    key was not indexed, whatever the event's partition, and never forgot the key's index:
    a read outside any event (the deadline timer's) then looked on that partition alone and
    found nothing, while another partition still held the key (a reference may be on
    several: ADR 0005 addendum). CI, stop 41: a case whose deadline was put back on one
    partition after its key was removed on another was never decided."""

    # How long the offset of a partition's database may lag its data (what a restart
    # after a crash reads of the changelog again, at most).
    OFFSET_WRITTEN_EVERY_S = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # What faust built its own options from (read_only and driver taken out).
        self.rocksdb_options = BudgetedOptions(**self.options, use_rocksdict=self.use_rocksdict)
        # Offsets acknowledged and not written yet, by partition (the last one).
        self._offsets_to_write: dict[int, tuple[TP, int]] = {}

    def _open_for_partition(self, partition: int) -> Any:
        """faust's opening, tried again when another opener removed an info log meanwhile
        (faust tries again only on a message naming a lock): up to ``INFO_LOG_TRIES``
        times, for each process closing or opening the partition's folder in a rebalance
        may remove one."""
        tries = 1
        while True:
            try:
                return super()._open_for_partition(partition)
            except Exception as err:  # rocksdict raises its own errors as Exception
                if tries == INFO_LOG_TRIES or not info_log_vanished(err):
                    raise
                log.info(
                    "table partition %d: an info log went meanwhile (%s): again", partition, err
                )
                tries += 1
                time.sleep(INFO_LOG_PAUSE_S)  # the other opener's deletions are done by then

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        """faust calls this for every changelog write the broker acknowledges (about
        eleven RocksDB writes a declaration, the acknowledgements of one produce response
        seldom two of the same table and partition), and only the last of a partition
        counts: it is written within ``OFFSET_WRITTEN_EVERY_S``. Until then the database
        holds an earlier offset, never a later one (the data was stored before its
        changelog write was sent), so a crash in between has the restore read that much
        of the changelog again, never skip any of it."""
        if not self._offsets_to_write:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop: nothing would write it later
                super().set_persisted_offset(tp, offset)
                return
            loop.call_later(self.OFFSET_WRITTEN_EVERY_S, self.write_offsets)
        self._offsets_to_write[tp.partition] = (tp, offset)

    def write_offsets(self) -> None:
        """Write the offsets acknowledged since the last time."""
        waiting, self._offsets_to_write = self._offsets_to_write, {}
        for tp, offset in waiting.values():
            super().set_persisted_offset(tp, offset)

    def persisted_offset(self, tp: TP) -> int | None:
        self.write_offsets()
        offset: int | None = super().persisted_offset(tp)
        return offset

    def revoke_partitions(self, table: Any, tps: set[TP]) -> None:
        self.write_offsets()  # into the databases about to be let go, not reopened later
        super().revoke_partitions(table, tps)

    async def stop(self) -> None:
        self.write_offsets()
        await super().stop()

    def reset_state(self) -> None:
        self._offsets_to_write.clear()  # offsets of the data being removed
        super().reset_state()

    def _del(self, key: bytes) -> None:
        """``key`` deleted from its event's partition, as faust's ``_set`` writes it
        there (the changelog's tombstone goes to that partition), and forgotten by the key
        index, so a read outside any event looks on every partition again."""
        event = faust.current_event()
        if event is not None and not self.table.is_global and not self.table.use_partitioner:
            self._db_for_partition(event.message.partition).delete(key)
        else:
            super()._del(key)
        self._key_index.pop(key, None)

    def values_by_partition(self, key: bytes) -> list[tuple[int, bytes]]:
        """``key``'s value on each partition this worker holds as active that has it,
        by partition (a standby's copy, or a partition being revoked, is another
        worker's business)."""
        topic = self.table.changelog_topic_name
        actives = self.app.assignor.assigned_actives()
        found: list[tuple[int, bytes]] = []
        for partition, db in sorted(self._dbs.items()):
            if self.table.is_global or TP(topic, partition) in actives:
                value = db.get(key)
                if value is not None:
                    found.append((partition, bytes(value)))
        return found


def values_by_partition(table: Any, key: bytes) -> list[tuple[int | None, bytes]]:
    """``key``'s value on each partition of ``table`` this worker holds, for a read outside
    any event (the deadline timer's): a table on this store answers by partition (a
    reference may be on several: ADR 0005 addendum); any other (faust's in-memory store,
    one mapping for every partition) gives its one value, its partition unknown (None).
    The key as the store holds it: the hub's tables are raw bytes (ADR 0002)."""
    store = getattr(table, "data", None)
    if isinstance(store, Store):
        return list(store.values_by_partition(key))
    value = table.get(key)
    return [] if value is None else [(None, bytes(value))]


def value_on(table: Any, key: bytes, partition: int) -> bytes | None:
    """``key``'s value on ``partition`` of ``table`` (on a store that does not say where
    it holds a key, its one value), for a read outside any event."""
    for held, value in values_by_partition(table, key):
        if held is None or held == partition:
            return value
    return None


def use() -> None:
    """``rocksdb://`` opens this store in this process (faust looks stores up by the
    URL's scheme)."""
    faust.stores.STORES.aliases["rocksdb"] = f"{__name__}:Store"
