"""The deadline timer looks at a reference's ``open-cases`` entry on every partition holding
one, and a deletion removes the key from its event's partition only.

A reference may have an entry on more than one partition: the producer chooses the
partition (ADR 0005 and its addendum: cases stay per partition), and bytes written under a
reference's key on every partition of the changelog are restored on each (review stop 40,
open item 1: the tick of such an entry removes it where no case is, and puts the case's own
deadline in its place where one is).

The timer reads outside any event. faust's RocksDB store answers such a read from the one
partition its key index (an LRU of key to partition) last saw the key on, which a deletion
never forgets, else from the first partition holding the key. So once the entry that did
not read was removed on another partition after the case's deadline was put back, the
timer found nothing and forgot the due deadline: the case stayed undecided (CI, stop 41:
``tests/e2e/test_a_deadline_entry_that_does_not_read_leaves_no_case_undecided.py`` timed
out when the case's partition was not the last to handle its tick); with a readable entry
on another partition, the timer looked at that one (not due) and forgot this one until the
index was read again, half an hour later. And faust's deletion removed the key from the
partition of its key index (from every partition when not indexed), not from the event's:
a worker's store lost another partition's entry, the changelog kept it.

The retention timer read the case-retention table the same way: a case due to leave on one
partition was not ticked while another partition held the reference's entry.

These run the hub's store (runtime/table_store.py) in a faust app that never connects.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP

from gun_contract.settings import Settings
from gun_hub.pipeline.answer_progress import AnswerProgress
from gun_hub.pipeline.deadlines import DeadlineIndex
from gun_hub.pipeline.hub_context import OpenCaseEntry
from gun_hub.pipeline.retention import RETENTION_TICK, RetentionEntry, RetentionIndex
from gun_hub.runtime import table_store, table_writes
from gun_hub.runtime.app import _raw_table, _TableStore
from gun_hub.runtime.deadline_sweep import DeadlineSweep
from gun_hub.runtime.faust_app import HubApp, as_if_handling
from gun_hub.runtime.retention_sweep import RetentionSweep
from tests.deadline_fixtures import TimerApp, holding
from tests.unit.test_deadline_sweep_reads_what_is_due import TOPICS

KEY = b"26FRSPLIT00000001"
NOW = 1_800_000_000.0
DUE = OpenCaseEntry(version=1, due=NOW - 1, partition=0).to_bytes()  # its case's, on 0
LATER = OpenCaseEntry(version=2, due=NOW + 600, partition=1).to_bytes()
NOT_A_DEADLINE = bytes(range(0x80, 0xC0))


@pytest.fixture(autouse=True)
def _one_app_per_test() -> Iterator[None]:
    yield
    table_writes._WITH_REFUSED_WRITES.clear()
    table_writes._SENT_AGAIN.clear()


def open_cases_on(tmp_path: Path, *partitions: int) -> Any:
    """The hub's open-cases table on its RocksDB store, in a worker holding ``partitions``
    (the changelog writes stay in faust's producer buffer)."""
    table_store.use()
    app = HubApp(
        "split-test", broker="kafka://127.0.0.1:9", store="rocksdb://", datadir=str(tmp_path)
    )
    table = _raw_table(app, Settings(), "open-cases")
    table._verified_source_topics_for_partitions.add(TOPICS.deadlines)
    changelog = table.changelog_topic.get_topic_name()
    actives = {TP(changelog, p) for p in partitions}
    app.assignor.assigned_actives = lambda: actives
    return table


def write(table: Any, partition: int, value: bytes) -> None:
    with as_if_handling(TOPICS.deadlines, partition, 0):
        table[KEY] = value


def on(table: Any, partition: int) -> bytes | None:
    """What a tick handled on ``partition`` reads (its event's store)."""
    with as_if_handling(TOPICS.deadlines, partition, 0):
        value: bytes | None = table.get(KEY)
        return value


def remove(table: Any, partition: int) -> None:
    """As a tick's handler removes an entry (``_TableStore.pop``: read, then delete)."""
    with as_if_handling(TOPICS.deadlines, partition, 0):
        _TableStore(table).pop(KEY)


async def ticks(table: Any) -> list[tuple[bytes, bytes, int | None]]:
    app = TimerApp(assignor=holding(0, 1))
    sweep = DeadlineSweep(app, TOPICS, table, AnswerProgress(), DeadlineIndex(), lambda: NOW)
    await sweep.run()
    return sorted(app.producer.sent, key=repr)


# -- the store ------------------------------------------------------------------------------


async def test_an_entry_removed_on_one_partition_leaves_the_other_s_found(tmp_path: Path) -> None:
    table = open_cases_on(tmp_path, 0, 1)
    write(table, 0, DUE)
    write(table, 1, NOT_A_DEADLINE)
    remove(table, 1)
    assert table.get(KEY) == DUE  # outside any event, as the timer reads
    assert table_store.values_by_partition(table, KEY) == [(0, DUE)]


async def test_a_deletion_removes_the_key_from_its_event_s_partition_only(tmp_path: Path) -> None:
    table = open_cases_on(tmp_path, 0, 1)
    write(table, 0, DUE)
    write(table, 1, LATER)  # faust's key index: partition 1
    with as_if_handling(TOPICS.deadlines, 0, 0):
        del table[KEY]
    assert (on(table, 0), on(table, 1)) == (None, LATER)


async def test_each_active_partition_s_value_is_given_with_its_partition(tmp_path: Path) -> None:
    table = open_cases_on(tmp_path, 0, 1)  # partition 2 is a standby's, or being revoked
    write(table, 0, DUE)
    write(table, 1, LATER)
    write(table, 2, NOT_A_DEADLINE)
    assert table_store.values_by_partition(table, KEY) == [(0, DUE), (1, LATER)]
    assert table_store.values_by_partition(table, b"26FRNOSUCHCASE001") == []


async def test_a_table_on_another_store_gives_its_one_value_with_no_partition() -> None:
    """The in-memory stand-ins of the unit tests: one value per key, partition unknown."""
    assert table_store.values_by_partition({KEY: DUE}, KEY) == [(None, DUE)]
    assert table_store.values_by_partition({}, KEY) == []


# -- the timer ------------------------------------------------------------------------------


async def test_the_case_s_deadline_put_back_is_ticked_after_the_other_partition_s_is_removed(
    tmp_path: Path,
) -> None:
    """The e2e test's failure, in small: the entry that did not read was removed on
    partition 1 after the case's deadline was put back on partition 0."""
    table = open_cases_on(tmp_path, 0, 1)
    write(table, 0, NOT_A_DEADLINE)
    write(table, 1, NOT_A_DEADLINE)
    write(table, 0, DUE)  # the tick handled on the case's partition first
    remove(table, 1)  # then on the other
    assert await ticks(table) == [(KEY, b"1", 0)]


async def test_a_due_deadline_and_another_partition_s_unreadable_entry_are_both_ticked(
    tmp_path: Path,
) -> None:
    table = open_cases_on(tmp_path, 0, 1)
    write(table, 0, DUE)
    write(table, 1, NOT_A_DEADLINE)
    # The one that does not read, on its own partition only: it names none, its store does.
    assert await ticks(table) == [(KEY, b"0", 1), (KEY, b"1", 0)]


async def test_a_due_deadline_is_ticked_whatever_another_partition_holds_for_its_reference(
    tmp_path: Path,
) -> None:
    table = open_cases_on(tmp_path, 0, 1)
    write(table, 0, DUE)
    write(table, 1, LATER)  # another case of the reference, due in ten minutes
    assert await ticks(table) == [(KEY, b"1", 0)]


# -- the retention timer, which reads the case-retention table the same way -----------------


async def test_a_case_due_to_leave_is_ticked_whatever_another_partition_holds_for_it(
    tmp_path: Path,
) -> None:
    table = open_cases_on(tmp_path, 0, 1)  # a raw table on the store, as case-retention is
    write(table, 1, RetentionEntry(NOW - 1, 1).to_bytes())  # due to leave, on 1
    write(table, 0, RetentionEntry(NOW + 600, 0).to_bytes())  # another case, on 0
    app = TimerApp(assignor=holding(0, 1))
    await RetentionSweep(app, TOPICS, table, RetentionIndex(), lambda: NOW).run()
    assert app.producer.sent == [(KEY, RETENTION_TICK, 1)]
