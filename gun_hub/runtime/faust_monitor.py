"""faust's ``Monitor`` sensor, keeping only what faust itself reads in the hub's worker.

faust adds its ``Monitor`` to every app's sensors and calls it for each record consumed,
each event an agent handles, each table read, write and deletion and each record sent:
it counts them by topic, table, stream and task, times them, keeps the offsets read and
the end offsets seen. Those figures are served only by faust's web statistics and
``/performance`` pages, which the hub never serves (``web_stats_enabled`` follows
``debug``, off; ``web_metrics_enabled=False``), and read by nothing else: the hub's
metrics are its own (gun_hub/metrics.py), its lag the lag monitor's (ops/lag_monitor.py).
In the hub's worker that counting was 0.8 % of py-spy's samples (docs/benchmark.md,
stop 40).

One thing faust does read from it: the time each partition last handed an event to a
stream (``stream_inbound_time``), by which its livelock detector logs a partition whose
stream stopped processing (``verify_event_path`` of its aiokafka consumer, every 2.5 s).
``LivelockMonitor`` keeps that, cleared at each rebalance as faust's does, and counts
nothing else at the hooks called per record, event, table access and send. The rare
hooks (rebalances, assignments, commits, web requests, send errors) are faust's own.
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from faust.sensors import Monitor
from faust.types import TP


class LivelockMonitor(Monitor):  # type: ignore[misc]
    """faust's ``Monitor``, its per-record hooks keeping only what faust's livelock
    detector reads: when each partition last handed an event to a stream."""

    def on_stream_event_in(self, tp: TP, offset: int, stream: Any, event: Any) -> None:
        self.stream_inbound_time[tp] = monotonic()

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        pass

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        pass

    def on_message_out(self, tp: TP, offset: int, message: Any) -> None:
        pass

    def track_tp_end_offset(self, tp: TP, offset: int) -> None:
        pass  # called by faust's consumer for every record fetched

    def on_table_get(self, table: Any, key: Any) -> None:
        pass

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        pass

    def on_table_del(self, table: Any, key: Any) -> None:
        pass

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> None:
        pass

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        pass
