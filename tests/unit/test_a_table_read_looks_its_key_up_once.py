"""A read of a hub table asks its store once (runtime/table_writes.py ``WriteAwaitedTable.get``).

faust's table answers ``get`` through ``Mapping.get``, ``__getitem__`` and ``__missing__``:
``key in store`` and then ``store[key]``, two RocksDB lookups (each finding the event's
partition, encoding the key, reading the database) for every case, open-case entry, audit
head and message id the hub reads, several per declaration. One lookup answers the same:
the value, or None for a key that is not there, from the store of the event's partition,
and faust's sensors still told of the read.

The tests are coroutines: a faust table made outside a running event loop asks for the
current loop, and after some async test files there is none ("There is no current event
loop": these tests failed when run after
test_a_worker_that_lost_a_partition_writes_nothing_to_its_changelog.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gun_contract.settings import Settings
from gun_hub.runtime import table_writes
from gun_hub.runtime.app import _raw_table, _TableStore
from gun_hub.runtime.faust_app import HubApp, as_if_handling

DECLARATIONS = "gun.declarations"


@pytest.fixture(autouse=True)
def _one_app_per_test() -> Iterator[None]:
    yield
    table_writes._WITH_REFUSED_WRITES.clear()
    table_writes._SENT_AGAIN.clear()


def _table(store: str, folder: Path) -> tuple[HubApp, Any]:
    """The hub's kind of table in an app that never connects; its changelog writes stay
    in faust's producer buffer."""
    app = HubApp("table-read-test", broker="kafka://127.0.0.1:9", store=store, datadir=str(folder))
    table = _raw_table(app, Settings(), "cases")
    table._verified_source_topics_for_partitions.add(DECLARATIONS)
    return app, table


class _CountedReads:
    """Counts the store's own lookups (``_get`` and ``_contains`` of faust's RocksDB store)."""

    def __init__(self, store: Any) -> None:
        self.lookups = 0
        for name in ("_get", "_contains"):
            self._wrap(store, name)

    def _wrap(self, store: Any, name: str) -> None:
        original = getattr(store, name)

        def counted(key: bytes) -> Any:
            self.lookups += 1
            return original(key)

        setattr(store, name, counted)


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_a_table_read_gives_the_value_or_none_as_before(store: str, tmp_path: Path) -> None:
    _app, table = _table(store, tmp_path)
    with as_if_handling(DECLARATIONS, 2, 7):
        table[b"FR-2026-1"] = b"case one"
        assert table.get(b"FR-2026-1") == b"case one"
        assert table.get(b"FR-2026-2") is None
        assert table.get(b"FR-2026-2", b"absent") == b"absent"
        del table[b"FR-2026-1"]
        assert table.get(b"FR-2026-1") is None


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_a_table_store_pops_what_it_holds_and_leaves_a_tombstone(
    store: str, tmp_path: Path
) -> None:
    app, table = _table(store, tmp_path)
    entries = _TableStore(table)
    with as_if_handling(DECLARATIONS, 1, 3):
        entries[b"FR-2026-3"] = b"entry"
        assert entries.pop(b"FR-2026-3") == b"entry"
        assert entries.get(b"FR-2026-3") is None
        assert entries.pop(b"FR-2026-3", b"gone") == b"gone"
    pending = app.producer.buffer.pending
    sent = [pending.get_nowait().message for _ in range(pending.qsize())]
    # The write, then its deletion: a tombstone in the changelog, and nothing for the pop
    # of a key that was not there.
    assert [(m.key, m.value) for m in sent] == [(b"FR-2026-3", b"entry"), (b"FR-2026-3", None)]


async def test_a_rocksdb_table_read_asks_the_store_once(tmp_path: Path) -> None:
    _app, table = _table("rocksdb://", tmp_path)
    with as_if_handling(DECLARATIONS, 0, 1):
        table[b"FR-2026-4"] = b"case"
        reads = _CountedReads(table.data)
        assert table.get(b"FR-2026-4") == b"case"
        assert table.get(b"FR-2026-5") is None
        assert _TableStore(table).pop(b"FR-2026-4") == b"case"
    assert reads.lookups == 3  # faust's own reading: 6 (is it there? then read it)


async def test_a_table_read_is_still_told_to_faust_s_sensors(tmp_path: Path) -> None:
    _app, table = _table("memory://", tmp_path)
    told: list[object] = []
    table._sensor_on_get = lambda _table, key: told.append(key)
    with as_if_handling(DECLARATIONS, 0, 1):
        table.get(b"FR-2026-6")
    assert told == [b"FR-2026-6"]


async def test_a_table_with_a_default_still_makes_it_for_a_missing_key(tmp_path: Path) -> None:
    """faust's ``default``: a missing key reads as a new default value. The hub's tables
    have none, but the one lookup must not skip it for a table that has."""
    _app, table = _table("memory://", tmp_path)
    table.default = lambda: b"made"
    with as_if_handling(DECLARATIONS, 0, 1):
        assert table.get(b"FR-2026-7") == b"made"
