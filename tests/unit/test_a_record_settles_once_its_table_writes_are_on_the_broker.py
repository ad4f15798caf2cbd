"""A record is marked handled (and so committed over) only once its table writes are on
the broker too, not only the records it sent (runtime/table_writes.py).

faust sends a table write to the table's changelog through a buffer of its own and does
not wait for it: before a commit it flushes that buffer, but gives up after 0.1 s without
a send, and a changelog write the broker refused is only logged. A record marked handled
as soon as its outbox was acknowledged could be committed over while the write of its
case was still in that buffer or refused: after a crash the worker restored a table
without the case, though its requests had left and its answers came back (found by
review in stop 30). A write that fails for good now stops the agent like a failed
delivery, and the record is read again.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka.errors import KafkaTimeoutError
from faust.types import TP, FutureMessage

from gun_contract.settings import Settings
from gun_hub.runtime import table_writes
from gun_hub.runtime.app import _raw_table
from gun_hub.runtime.faust_app import HubApp, as_if_handling
from gun_hub.runtime.settling import Settling

DECLARATIONS = "gun.declarations"
CLAIMS = "gun.claims"


@pytest.fixture(autouse=True)
def _one_app_per_test() -> Iterator[None]:
    """A worker process has one app, whose refused writes every settling sends again
    (table_writes.py); each test here makes an app of its own, never started."""
    yield
    table_writes._WITH_REFUSED_WRITES.clear()
    table_writes._SENT_AGAIN.clear()


def _hub_table() -> tuple[HubApp, Any]:
    """The hub's kind of table, in a faust app that never connects (memory store)."""
    app = HubApp("table-writes-test", broker="kafka://127.0.0.1:9", store="memory://")
    table = _raw_table(app, Settings(), "cases")
    # faust checks once, against the broker's metadata, that the source topic has the
    # changelog's partitions: no broker here (its consumer would start a thread for it).
    table._verified_source_topics_for_partitions.update({DECLARATIONS, CLAIMS})
    return app, table


def _changelog_writes(app: HubApp) -> list[FutureMessage]:
    """What faust's producer buffer holds: the changelog writes not yet sent."""
    pending = app.producer.buffer.pending
    writes = []
    while not pending.empty():
        writes.append(pending.get_nowait())
    return writes


async def _let_tasks_run() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def _acknowledged() -> asyncio.Future[None]:
    done = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


async def test_a_record_is_marked_only_once_the_write_of_its_case_is_acknowledged() -> None:
    app, cases = _hub_table()
    settling = Settling(limit=10)
    marked: list[int] = []
    with as_if_handling(DECLARATIONS, 2, 17):
        cases[b"FR-2026-1"] = b"case: requests sent"
        settling.track(_acknowledged(), lambda: marked.append(17))
    [write] = _changelog_writes(app)
    await _let_tasks_run()
    assert marked == []  # its outbox is on the broker, its case not yet
    write.set_result(None)
    await settling.drained()
    assert marked == [17]


async def test_a_write_made_once_the_outbox_is_delivered_is_awaited_too() -> None:
    """``after_delivery`` writes the case once the broker has the decision (delivery.py):
    the record waits for that write as well."""
    app, cases = _hub_table()
    settling = Settling(limit=10)
    marked: list[int] = []

    async def delivered_then_written() -> None:
        await asyncio.sleep(0)
        cases[b"FR-2026-2"] = b"case: decision announced"

    with as_if_handling(DECLARATIONS, 1, 5):
        settling.track(delivered_then_written(), lambda: marked.append(5))
    await _let_tasks_run()
    [write] = _changelog_writes(app)
    assert marked == []
    write.set_result(None)
    await settling.drained()
    assert marked == [5]


async def test_a_write_the_broker_refused_lets_the_record_go_and_stops_the_agent() -> None:
    app, cases = _hub_table()
    settling = Settling(limit=10)
    marked: list[int] = []
    let_go: list[int] = []
    with as_if_handling(DECLARATIONS, 0, 9):
        cases[b"FR-2026-3"] = b"case"
        settling.track(_acknowledged(), lambda: marked.append(9), lambda: let_go.append(9))
    [write] = _changelog_writes(app)
    write.set_exception(KafkaTimeoutError())
    with pytest.raises(KafkaTimeoutError):
        await settling.drained()
    assert marked == []
    assert let_go == [9]  # read again (the offset watchdog), never committed over


async def test_each_record_waits_for_its_own_writes_only() -> None:
    app, cases = _hub_table()
    settling = Settling(limit=10)
    marked: list[int] = []
    for offset in (1, 2):
        with as_if_handling(DECLARATIONS, 3, offset):
            cases[f"FR-2026-{offset}".encode()] = b"case"
            settling.track(_acknowledged(), functools.partial(marked.append, offset))
    first, second = _changelog_writes(app)
    second.set_result(None)
    await _let_tasks_run()
    assert marked == [2]
    first.set_result(None)
    await settling.drained()
    assert marked == [2, 1]


async def test_records_settled_in_one_event_each_wait_for_all_of_its_writes() -> None:
    """A verdict on the claims topic admits several declarations within its one event
    (gun_hub/runtime/app.py ``admit``): the second must not be marked on the strength of
    writes the first is still waiting for."""
    app, cases = _hub_table()
    settling = Settling(limit=10)
    marked: list[str] = []
    with as_if_handling(CLAIMS, 1, 4):
        cases[b"FR-2026-1"] = b"case"
        settling.track(_acknowledged(), lambda: marked.append("FR-2026-1"))
        cases[b"FR-2026-2"] = b"case"
        settling.track(_acknowledged(), lambda: marked.append("FR-2026-2"))
    first, second = _changelog_writes(app)
    first.set_result(None)
    await _let_tasks_run()
    assert marked == []
    second.set_result(None)
    await settling.drained()
    assert sorted(marked) == ["FR-2026-1", "FR-2026-2"]


async def test_a_write_already_refused_still_holds_the_record() -> None:
    """An event whose handler returned nothing to await (runtime/faust_app.py
    ``handled_agent``) is settled through its writes while any is not acknowledged,
    including one the broker already refused: never marked on the strength of it."""
    app, cases = _hub_table()
    with as_if_handling(DECLARATIONS, 4, 2):
        cases[b"FR-2026-4"] = b"case"
        event = faust.current_event()
    [write] = _changelog_writes(app)
    assert table_writes.pending(event)
    write.set_exception(KafkaTimeoutError())
    assert table_writes.pending(event)  # refused: the settling raises it
    with pytest.raises(KafkaTimeoutError):
        await table_writes.written(event)


def _a_write_on_its_way(
    partition: int, offset: int, key: bytes
) -> tuple[HubApp, Any, Settling, FutureMessage]:
    """A hub table whose write of ``key``, made by the record at ``partition``/``offset``,
    is on its way (in faust's buffer), its record settling."""
    app, cases = _hub_table()
    settling = Settling(limit=10)
    with as_if_handling(DECLARATIONS, partition, offset):
        cases[key] = b"case"
        settling.track(_acknowledged(), lambda: None)
    [write] = _changelog_writes(app)
    return app, cases, settling, write


async def _a_case_refused(
    partition: int, offset: int, key: bytes, value: bytes = b"case"
) -> tuple[HubApp, Any, Settling]:
    """A hub table whose write of ``key``, made by the record at ``partition``/``offset``,
    the broker refused for good; the agent stopped, the record to be read again."""
    app, cases = _hub_table()
    settling = Settling(limit=10)
    with as_if_handling(DECLARATIONS, partition, offset):
        cases[key] = value
        settling.track(_acknowledged(), lambda: None)
    await _refused(app, settling)
    return app, cases, settling


async def _refused(app: HubApp, settling: Settling) -> None:
    """The one write faust's buffer holds is refused for good; the agent stops."""
    [write] = _changelog_writes(app)
    write.set_exception(KafkaTimeoutError())
    with pytest.raises(KafkaTimeoutError):
        await settling.drained()


async def test_a_refused_write_is_sent_again_when_its_record_is_read_again() -> None:
    """The refused value stays in the worker's own store: the record read again finds its
    case there and writes nothing. Without a new write, the changelog would never get
    the case, and the next worker to own the partition would restore a table without it
    (found by review in stop 31). The current value is sent again, and the record waits
    for it."""
    app, cases, settling = await _a_case_refused(5, 9, b"FR-2026-3", b"case: requests sent")

    marked: list[int] = []
    with as_if_handling(DECLARATIONS, 5, 9):  # read again: nothing left to write
        assert cases[b"FR-2026-3"] == b"case: requests sent"
        settling.track(_acknowledged(), lambda: marked.append(9))
    await _let_tasks_run()
    [again] = _changelog_writes(app)
    assert (again.message.key, again.message.value) == (b"FR-2026-3", b"case: requests sent")
    assert again.message.partition == 5
    assert marked == []
    again.set_result(None)
    await settling.drained()
    assert marked == [9]
    assert _changelog_writes(app) == []  # sent again once, not at every record


async def test_a_refused_deletion_is_sent_again_as_a_deletion() -> None:
    app, cases = _hub_table()
    settling = Settling(limit=10)
    with as_if_handling(DECLARATIONS, 1, 3):
        cases[b"FR-2026-8"] = b"case"
    _changelog_writes(app)[0].set_result(None)
    with as_if_handling(DECLARATIONS, 1, 4):
        del cases[b"FR-2026-8"]
        settling.track(_acknowledged(), lambda: None)
    await _refused(app, settling)

    with as_if_handling(DECLARATIONS, 1, 4):
        settling.track(_acknowledged(), lambda: None)
    await _let_tasks_run()
    [again] = _changelog_writes(app)
    assert (again.message.key, again.message.value) == (b"FR-2026-8", None)
    again.set_result(None)
    await settling.drained()


async def test_a_record_with_no_writes_of_its_own_waits_for_a_refused_write_sent_again() -> None:
    """A handler that returned nothing to await is settled through the table writes
    while one is sent again (runtime/faust_app.py ``handled_agent`` asks ``pending``)."""
    _app, _cases, _settling = await _a_case_refused(2, 1, b"FR-2026-5")
    with as_if_handling(DECLARATIONS, 2, 2):
        event = faust.current_event()
    assert table_writes.pending(event)


async def test_a_refused_write_of_a_partition_this_worker_gave_up_is_forgotten() -> None:
    """Its next owner restored the partition from the changelog and wrote its own value;
    this worker's copy is dropped with the partition, and sending it again would
    overwrite the owner's."""
    app, cases, _settling = await _a_case_refused(6, 2, b"FR-2026-6")
    changelog = next(iter(cases.changelog_topic.topics))
    await cases.on_rebalance(set(), {TP(changelog, 6)}, set())

    with as_if_handling(DECLARATIONS, 0, 1):
        event = faust.current_event()
    assert not table_writes.pending(event)
    await table_writes.written(event)
    assert _changelog_writes(app) == []


async def test_a_refused_write_is_sent_again_from_its_own_partition_s_store(
    tmp_path: Path,
) -> None:
    """faust's RocksDB store looks a key up in the store of the partition of the event
    being handled: sent again while another partition's record settles, the case must
    still be found in its own (not taken for deleted)."""
    app = HubApp(
        "table-writes-rocksdb-test",
        broker="kafka://127.0.0.1:9",
        store="rocksdb://",
        datadir=str(tmp_path),
    )
    cases = _raw_table(app, Settings(), "cases")
    cases._verified_source_topics_for_partitions.update({DECLARATIONS, CLAIMS})
    settling = Settling(limit=10)
    with as_if_handling(DECLARATIONS, 5, 9):
        cases[b"FR-2026-7"] = b"case: requests sent"
        settling.track(_acknowledged(), lambda: None)
    await _refused(app, settling)

    with as_if_handling(DECLARATIONS, 2, 40):  # another partition's record settles
        settling.track(_acknowledged(), lambda: None)
    await _let_tasks_run()
    [again] = _changelog_writes(app)
    assert (again.message.key, again.message.value) == (b"FR-2026-7", b"case: requests sent")
    assert again.message.partition == 5
    again.set_result(None)
    await settling.drained()


async def test_every_record_waits_for_a_refused_write_sent_again_until_it_is_acknowledged() -> None:
    """Whichever record's settling sends it again, the record that made it (read again,
    nothing left to write) is not marked before it is on the broker (found by review in
    stop 32: it was awaited by the record that happened to send it only)."""
    app, _cases, settling = await _a_case_refused(5, 9, b"FR-2026-3", b"case: requests sent")
    marked: list[str] = []
    with as_if_handling(DECLARATIONS, 0, 1):  # another record settles first: sends it again
        settling.track(_acknowledged(), lambda: marked.append("other"))
    await _let_tasks_run()
    [again] = _changelog_writes(app)
    with as_if_handling(DECLARATIONS, 5, 9):  # the record read again: nothing to write
        event = faust.current_event()
        assert table_writes.pending(event)
        settling.track(_acknowledged(), lambda: marked.append("read again"))
    await _let_tasks_run()
    assert marked == []
    again.set_result(None)
    await settling.drained()
    assert sorted(marked) == ["other", "read again"]
    assert not table_writes.pending(event)


async def test_a_write_refused_again_fails_every_record_waiting_for_it_and_is_sent_anew() -> None:
    app, _cases, settling = await _a_case_refused(5, 9, b"FR-2026-3")
    let_go: list[int] = []
    for offset in (1, 2):
        with as_if_handling(DECLARATIONS, 0, offset):
            settling.track(_acknowledged(), lambda: None, functools.partial(let_go.append, offset))
    await _let_tasks_run()
    [again] = _changelog_writes(app)
    again.set_exception(KafkaTimeoutError())
    with pytest.raises(KafkaTimeoutError):
        await settling.drained()
    assert sorted(let_go) == [1, 2]
    with as_if_handling(DECLARATIONS, 0, 1):
        settling.track(_acknowledged(), lambda: None)
    await _let_tasks_run()
    [anew] = _changelog_writes(app)
    assert anew.message.key == b"FR-2026-3"
    anew.set_result(None)
    await settling.drained()


async def test_a_write_refused_after_its_partition_was_given_up_is_not_sent_again() -> None:
    """Refused after the revocation (or a resend in flight then): remembered, it would be
    sent again from this worker's stale copy (or as a deletion) into the changelog of a
    partition another worker now owns (found by review in stop 32)."""
    app, cases, settling, write = _a_write_on_its_way(6, 2, b"FR-2026-6")
    changelog = next(iter(cases.changelog_topic.topics))
    await cases.on_rebalance(set(), {TP(changelog, 6)}, set())
    write.set_exception(KafkaTimeoutError())
    with pytest.raises(KafkaTimeoutError):
        await settling.drained()
    with as_if_handling(DECLARATIONS, 0, 1):
        event = faust.current_event()
    assert not table_writes.pending(event)
    await table_writes.written(event)
    assert _changelog_writes(app) == []


async def test_a_write_refused_while_its_partition_is_being_revoked_is_not_sent_again() -> None:
    """Told at revocation, before faust waits for its agents (runtime/faust_app.py)."""
    _app, cases, settling, write = _a_write_on_its_way(6, 2, b"FR-2026-6")
    changelog = next(iter(cases.changelog_topic.topics))
    cases.give_up({TP(changelog, 6)})
    write.set_exception(KafkaTimeoutError())
    with pytest.raises(KafkaTimeoutError):
        await settling.drained()
    with as_if_handling(DECLARATIONS, 0, 1):
        event = faust.current_event()
    assert not table_writes.pending(event)
