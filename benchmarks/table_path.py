"""Instructions of one operation on the hub's table path, for callgrind (stop 41).

N operations through the real faust table on the RocksDB store, in a hub app that never
connects, its sensors those faust adds at start (``app.monitor``). Run it twice under
callgrind and divide the difference by the difference of N: what starting Python and
the app costs drops out.

    read    ``table.get``: a 1.9-kB value, half of the keys found
    write   ``table[key] = value``, 1.9 kB: the store's write and the changelog record
            put in faust's producer buffer (key and value encoded)
    record  the sensor calls faust makes for one record fetched and handled by an agent
            (end offset, message in, stream event in and out, message out) and for one
            record sent (send initiated, completed)

Run (from the checkout):

    for n in 2000 12000; do PYTHONHASHSEED=0 valgrind --tool=callgrind \\
        --callgrind-out-file=cg.$n.out .venv/bin/python -m benchmarks.table_path read $n; done
    # (Ir of cg.12000.out - Ir of cg.2000.out) / 10000: instructions per read

Not one of ``./tasks``: a measure of one path before and after a change, not a figure
of the hub (docs/benchmark.md, stop 41).
"""

from __future__ import annotations

import sys
import tempfile

from faust.types import TP, Message

from gun_contract.settings import Settings
from gun_hub.runtime import table_store
from gun_hub.runtime.app import _raw_table
from gun_hub.runtime.faust_app import HubApp, as_if_handling


class _AgentTask:
    """Stands for the agent's task owning a stream (faust keeps it by a weak reference)."""


mode, n = sys.argv[1], int(sys.argv[2])
# The loops stay at module level, as measured: moved into a function, their variables
# would be fast locals and every figure a little lower.
with tempfile.TemporaryDirectory() as folder:
    table_store.use()
    app = HubApp("table-path", broker="kafka://127.0.0.1:9", store="rocksdb://", datadir=folder)
    app.sensors.add(app.monitor)  # as faust does at start (App.on_init_dependencies)
    table = _raw_table(app, Settings(), "cases")
    table._verified_source_topics_for_partitions.add("gun.declarations")
    value = b"x" * 1900
    done = 0
    with as_if_handling("gun.declarations", 1, 1):
        for k in range(100):
            table[b"FR-%d" % k] = value
        if mode == "read":
            for i in range(n):
                done += table.get(b"FR-%d" % (i % 200)) is not None
        elif mode == "write":
            pending = app.producer.buffer.pending
            for i in range(n):
                table[b"FR-%d" % (i % 200)] = value
                if pending.qsize() > 1000:  # the producer's drain, not measured apart
                    while pending.qsize():
                        pending.get_nowait()
                done += 1
        elif mode == "record":
            topic = app.topic("gun.declarations", key_serializer="raw", value_serializer="raw")
            stream = topic.stream()
            stream.task_owner = _AgentTask()
            sensors, monitor = app.sensors, app.monitor
            tp = TP("gun.declarations", 1)
            for i in range(n):
                message = Message("gun.declarations", 1, i, 0.0, 0, None, b"FR-1", value, None)
                monitor.track_tp_end_offset(tp, i + 1)
                sensors.on_message_in(tp, i, message)
                state = sensors.on_stream_event_in(tp, i, stream, None)
                sensors.on_stream_event_out(tp, i, stream, None, state)
                sensors.on_message_out(tp, i, message)
                sent = sensors.on_send_initiated(None, "gun.decisions", None, 4, 1900)
                sensors.on_send_completed(None, sent, None)
                done += 1
print("ok", mode, n, done)
