"""The hub measures how long Python's cyclic garbage collector stops it
(``gun_hub_gc_pause_seconds``, runtime/gc_pauses.py): every record waiting meanwhile
waits that long, and prometheus_client counts collections but not their length."""

from __future__ import annotations

import gc

from prometheus_client import REGISTRY

from gun_hub.runtime import gc_pauses


def pauses(generation: int) -> tuple[float, float]:
    labels = {"generation": str(generation)}
    count = REGISTRY.get_sample_value("gun_hub_gc_pause_seconds_count", labels) or 0.0
    total = REGISTRY.get_sample_value("gun_hub_gc_pause_seconds_sum", labels) or 0.0
    return count, total


def cycles(n: int) -> None:
    """Garbage only the cyclic collector can free."""
    for _ in range(n):
        a: list[object] = []
        b: list[object] = [a]
        a.append(b)


def test_a_full_collection_is_measured_with_its_generation() -> None:
    gc_pauses.watch()
    gc.disable()  # only the collection below: an automatic one may run among the cycles
    try:
        count, total = pauses(2)
        cycles(10_000)
        gc.collect(2)
        after_count, after_total = pauses(2)
    finally:
        gc.enable()
    assert after_count == count + 1
    assert after_total > total


def test_watching_twice_measures_each_collection_once() -> None:
    gc_pauses.watch()
    gc_pauses.watch()
    assert gc.callbacks.count(gc_pauses.on_collection) == 1
    count, _ = pauses(1)
    gc.collect(1)
    assert pauses(1)[0] == count + 1


def test_what_the_started_worker_holds_is_frozen_out_of_a_full_collections_walk() -> None:
    """After ``freeze`` a full collection no longer walks what existed then (the
    modules, the runtime: most of a worker's objects); what is made later it does."""
    held = [[n] for n in range(50_000)]  # long-lived, tracked by the collector
    try:
        frozen = gc_pauses.freeze()
        assert frozen >= len(held)
        walked = gc.get_objects(generation=2)
        assert not any(item is held[0] for item in walked)
        made_later = [[n] for n in range(1_000)]
        gc.collect()
        assert any(item is made_later[0] for item in gc.get_objects(generation=2))
    finally:
        gc.unfreeze()  # the other tests' process as it was
