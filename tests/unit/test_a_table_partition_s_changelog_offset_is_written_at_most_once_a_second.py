"""The changelog offset a table partition has stored up to is written to its RocksDB
database at most once a second, not once per acknowledged changelog write
(runtime/table_store.py ``Store.set_persisted_offset``).

faust writes it (``set_persisted_offset``) in the callback of every changelog write the
broker acknowledges: about eleven RocksDB writes a declaration, for a value of which only
the last counts. At a restart faust reads the changelog from just past it. The value a
partition's database holds may lag its store's data by that second (the data is written
before its changelog write is even sent): a crash then reads that much again, as a crash
between an acknowledgement and faust's own write always could, never skips a record.
Read back (``persisted_offset``), given up (a revocation) or stopped, the latest is
written first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.stores import rocksdb as faust_rocksdb
from faust.types import TP

from gun_contract.settings import HubSettings, Settings
from gun_hub.runtime import table_store, table_writes
from gun_hub.runtime.app import _raw_table
from gun_hub.runtime.faust_app import HubApp

CHANGELOG = "table-offsets-test-cases-changelog"


@pytest.fixture(autouse=True)
def _one_app_per_test() -> Iterator[None]:
    yield
    table_writes._WITH_REFUSED_WRITES.clear()
    table_writes._SENT_AGAIN.clear()


def _store(folder: Path) -> Any:
    """The hub's RocksDB store of one table, in an app that never connects."""
    table_store.use()
    app = HubApp(
        "table-offsets-test", broker="kafka://127.0.0.1:9", store="rocksdb://", datadir=str(folder)
    )
    table = _raw_table(app, Settings(hub=HubSettings(app_id="table-offsets-test")), "cases")
    store = table.data
    assert isinstance(store, table_store.Store)
    return store


def _written(store: Any, partition: int) -> int | None:
    """What partition's database holds now, read past the store."""
    value = store._db_for_partition(partition).get(store.offset_key)
    return None if value is None else int(value)


class _CountedWrites:
    """Counts the offset writes that reach RocksDB (faust's ``set_persisted_offset``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writes: list[tuple[int, int]] = []
        original = faust_rocksdb.Store.set_persisted_offset

        def counted(store: Any, tp: TP, offset: int) -> None:
            self.writes.append((tp.partition, offset))
            original(store, tp, offset)

        monkeypatch.setattr(faust_rocksdb.Store, "set_persisted_offset", counted)


class _Timers:
    """The event loop's ``call_later`` as the store uses it, run when the test says: what
    is written within the interval is told apart without racing a real timer (tests'
    review of stop 48: sleeps of 10 and 60 ms around a 50-ms timer)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.due: list[tuple[float, Callable[[], None]]] = []
        loop = SimpleNamespace(
            call_later=lambda delay, callback: self.due.append((delay, callback))
        )
        monkeypatch.setattr(asyncio, "get_running_loop", lambda: loop)

    def run_due(self) -> list[float]:
        """Run every timer set so far; their delays."""
        due, self.due = self.due, []
        for _, callback in due:
            callback()
        return [delay for delay, _ in due]


def test_the_acknowledgements_of_an_interval_write_each_partition_s_offset_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    timers = _Timers(monkeypatch)
    counted = _CountedWrites(monkeypatch)
    for offset in (10, 11, 12):
        store.set_persisted_offset(TP(CHANGELOG, 2), offset)
    store.set_persisted_offset(TP(CHANGELOG, 3), 40)
    assert counted.writes == []  # within the interval
    assert timers.run_due() == [store.OFFSET_WRITTEN_EVERY_S]  # one timer for them all
    assert sorted(counted.writes) == [(2, 12), (3, 40)]
    assert (_written(store, 2), _written(store, 3)) == (12, 40)
    store.set_persisted_offset(TP(CHANGELOG, 2), 13)  # a later interval writes again
    assert _written(store, 2) == 12
    assert timers.run_due() == [store.OFFSET_WRITTEN_EVERY_S]
    assert _written(store, 2) == 13


async def test_the_offset_read_back_is_the_latest_even_before_the_turn_ends(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path)
    store.set_persisted_offset(TP(CHANGELOG, 1), 5)
    assert store.persisted_offset(TP(CHANGELOG, 1)) == 5
    assert _written(store, 1) == 5


def test_a_partition_given_up_has_its_offset_written_before_its_database_is_let_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    timers = _Timers(monkeypatch)
    store.set_persisted_offset(TP(CHANGELOG, 0), 7)
    database = store._db_for_partition(0)
    store.revoke_partitions(store.table, {TP(CHANGELOG, 0)})
    assert 0 not in store._dbs
    assert int(database.get(store.offset_key)) == 7
    timers.run_due()  # the interval's timer, set before the revocation, runs later
    assert 0 not in store._dbs  # nothing left to write opens it again


async def test_a_stopped_store_has_every_offset_written(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.set_persisted_offset(TP(CHANGELOG, 3), 21)
    database = store._db_for_partition(3)
    await store.stop()
    assert int(database.get(store.offset_key)) == 21


def test_outside_an_event_loop_the_offset_is_written_at_once(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.set_persisted_offset(TP(CHANGELOG, 2), 3)
    assert _written(store, 2) == 3
