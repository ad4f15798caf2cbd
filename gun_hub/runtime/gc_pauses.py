"""How long Python's cyclic garbage collector stops the hub: ``gun_hub_gc_pause_seconds``.

While it runs, nothing else in the process does (the GIL): a full collection (generation
2) over a heap of a few hundred thousand objects takes tens of milliseconds or more, and
every record waiting meanwhile waits that long. prometheus_client counts collections
(``python_gc_collections_total``) but not how long they take; this is what tells a
latency spike caused by the collector from one caused elsewhere.

A full collection walks every object the collector tracks, most of them made at start-up
and kept for the process's life (modules, faust's and aiokafka's runtime, pydantic's
validators): ``freeze``, called by the hub once the worker runs
(``hub.gc_freeze_after_start``), moves those out of its reach (``gc.freeze``). What is
made later is collected as before; what was frozen is still freed by reference counting,
only a cycle among frozen objects would stay.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from gun_hub import metrics

# One collection at a time in the whole process (the collector does not nest), whichever
# thread triggers it: one start time is enough.
_started: float | None = None


def on_collection(phase: str, info: dict[str, Any]) -> None:
    """``gc.callbacks`` hook: times each collection from its start to its stop."""
    global _started  # the collector's own state, once per process
    if phase == "start":
        _started = time.perf_counter()
    elif _started is not None:
        elapsed = time.perf_counter() - _started
        _started = None
        metrics.GC_PAUSE_SECONDS.labels(generation=str(info["generation"])).observe(elapsed)


def freeze() -> int:
    """Collect what is garbage now, then freeze what is left; the number frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def watch() -> None:
    """Measure every collection from now on (once, however often asked)."""
    if on_collection not in gc.callbacks:
        gc.callbacks.append(on_collection)
