"""faust's ``Monitor`` in the hub's worker keeps only what faust reads (runtime/faust_monitor.py).

faust calls its monitor for every record, event, table access and send, and it counted
them for web pages the hub never serves. What faust itself reads from it, the time each
partition last handed an event to a stream (its livelock detector's "stream stopped
processing" log), is still kept, and cleared at a rebalance as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faust.sensors import Monitor
from faust.types import TP, Message

from gun_contract.settings import Settings
from gun_hub.runtime import table_writes
from gun_hub.runtime.app import _raw_table
from gun_hub.runtime.faust_app import HubApp, as_if_handling
from gun_hub.runtime.faust_monitor import LivelockMonitor

DECLARATIONS = "gun.declarations"


@pytest.fixture(autouse=True)
def _one_app_per_test() -> Iterator[None]:
    yield
    table_writes._WITH_REFUSED_WRITES.clear()
    table_writes._SENT_AGAIN.clear()


class _AgentTask:
    """Stands for the agent's task owning a stream (faust keeps it by a weak reference)."""


def _started(tmp_path: Path) -> tuple[HubApp, Any]:
    """The hub's app with the sensors faust gives it at start (``on_init_dependencies``)."""
    app = HubApp(
        "monitor-test", broker="kafka://127.0.0.1:9", store="memory://", datadir=str(tmp_path)
    )
    app.sensors.add(app.monitor)
    return app, app.topic(DECLARATIONS, key_serializer="raw", value_serializer="raw")


def _one_record_through(app: HubApp, topic: Any, tp: TP, offset: int) -> None:
    """The sensor calls faust makes for a record fetched, handled by an agent, and one sent."""
    stream = topic.stream()
    stream.task_owner = _AgentTask()
    message = Message(tp.topic, tp.partition, offset, 0.0, 0, None, b"FR-2026-1", b"v", None)
    app.monitor.track_tp_end_offset(tp, offset + 1)
    app.sensors.on_message_in(tp, offset, message)
    state = app.sensors.on_stream_event_in(tp, offset, stream, None)
    app.sensors.on_stream_event_out(tp, offset, stream, None, state)
    app.sensors.on_message_out(tp, offset, message)
    sent = app.sensors.on_send_initiated(None, "gun.decisions", None, 9, 1)
    app.sensors.on_send_completed(None, sent, None)


def test_the_hub_s_monitor_is_faust_s_own_kind(tmp_path: Path) -> None:
    app, _topic = _started(tmp_path)
    assert isinstance(app.monitor, LivelockMonitor)
    assert isinstance(app.monitor, Monitor)  # what faust's consumer and web pages expect
    assert list(app.sensors) == [app.monitor]


def test_when_a_partition_last_handed_an_event_to_a_stream_is_kept(tmp_path: Path) -> None:
    app, topic = _started(tmp_path)
    tp = TP(DECLARATIONS, 3)
    _one_record_through(app, topic, tp, 40)
    first = app.monitor.stream_inbound_time[tp]
    _one_record_through(app, topic, tp, 41)
    assert app.monitor.stream_inbound_time[tp] >= first
    assert set(app.monitor.stream_inbound_time) == {tp}
    app.sensors.on_rebalance_end(app, app.sensors.on_rebalance_start(app))
    assert app.monitor.stream_inbound_time == {}  # as faust's: a new assignment, anew


async def test_records_table_accesses_and_sends_are_not_counted(tmp_path: Path) -> None:
    app, topic = _started(tmp_path)
    table = _raw_table(app, Settings(), "cases")
    table._verified_source_topics_for_partitions.add(DECLARATIONS)
    for offset in range(3):
        _one_record_through(app, topic, TP(DECLARATIONS, 0), offset)
    with as_if_handling(DECLARATIONS, 0, 2):
        table[b"FR-2026-1"] = b"case"
        assert table.get(b"FR-2026-1") == b"case"
        del table[b"FR-2026-1"]
    monitor = app.monitor
    counted = (
        monitor.messages_received_total,
        monitor.events_total,
        monitor.messages_sent,
        len(monitor.send_latency),
        len(monitor.tables),
        len(monitor.tp_read_offsets),
        len(monitor.tp_end_offsets),
    )
    assert counted == (0, 0, 0, 0, 0, 0, 0)


async def test_faust_s_own_monitor_counted_them(tmp_path: Path) -> None:
    """The control: the same calls, faust's monitor, every one counted."""
    app = HubApp(
        "monitor-test",
        broker="kafka://127.0.0.1:9",
        store="memory://",
        datadir=str(tmp_path),
        Monitor=Monitor,
    )
    app.sensors.add(app.monitor)
    topic = app.topic(DECLARATIONS, key_serializer="raw", value_serializer="raw")
    table = _raw_table(app, Settings(), "cases")
    table._verified_source_topics_for_partitions.add(DECLARATIONS)
    for offset in range(3):
        _one_record_through(app, topic, TP(DECLARATIONS, 0), offset)
    with as_if_handling(DECLARATIONS, 0, 2):
        table[b"FR-2026-1"] = b"case"
        table.get(b"FR-2026-1")
    monitor = app.monitor
    assert type(monitor) is Monitor
    assert (monitor.messages_received_total, monitor.events_total, monitor.messages_sent) == (
        3,
        3,
        3,
    )
    assert monitor.tables["cases"].keys_retrieved == 1
    assert monitor.tables["cases"].keys_updated == 1
