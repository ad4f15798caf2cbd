"""The rules of the adapter's batch pipeline, as pure logic (adapters/base/batch_pipeline.py):
batches are marked in the order they were fetched, a batch that left records holds every
later batch's mark there, and a failure stops them all and ends the poll loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from adapters.base.batch_pipeline import BatchPipeline, Turn


async def test_a_batch_that_ends_first_is_marked_after_the_one_fetched_before_it() -> None:
    pipeline = BatchPipeline()
    first_may_end = asyncio.Event()
    second_done = asyncio.Event()
    marked: list[str] = []

    def batch(name: str, ends: asyncio.Event) -> Callable[[Turn], Awaitable[None]]:
        async def handle(turn: Turn) -> None:
            await ends.wait()
            if name == "second":
                second_done.set()
            await turn.wait()
            marked.append(name)
            pipeline.capped({0: 1}, {0: 1}, 1, turn)

        return handle

    at_once = asyncio.Event()
    at_once.set()
    first = pipeline.start(batch("first", first_may_end))
    second = pipeline.start(batch("second", at_once))
    await asyncio.wait_for(second_done.wait(), 5)  # its work done, it waits for its turn
    assert marked == []
    assert not second.done()
    first_may_end.set()
    await asyncio.gather(first, second)
    assert marked == ["first", "second"]


async def test_records_a_batch_left_hold_every_later_mark_of_their_partition() -> None:
    pipeline = BatchPipeline()
    turns = [Turn(None) for _ in range(4)]
    # A batch of records 10 to 14 of partition 0 left them from 12 (revoked meanwhile).
    assert pipeline.capped({0: 12, 1: 7}, {0: 15, 1: 7}, 5, turns[0]) == {0: 12, 1: 7}
    # A later batch handled 15 to 19 whole: said handled to 12 only, partition 1 free.
    assert pipeline.capped({0: 20, 1: 9}, {0: 20, 1: 9}, 5, turns[1]) == {0: 12, 1: 9}
    # A batch that marks nothing holds the later ones at its first records.
    pipeline.left({1: 9}, 5, turns[2])
    assert pipeline.capped({0: 25, 1: 11}, {0: 25, 1: 11}, 5, turns[3]) == {0: 12, 1: 9}
    # After a rebalance the partitions are read from their commit: nothing held.
    assert pipeline.capped({0: 30}, {0: 30}, 6, Turn(None)) == {0: 30}
    assert all(turn.settled for turn in turns)


async def test_a_failed_batch_stops_those_under_way_and_ends_the_loop() -> None:
    pipeline = BatchPipeline(most=2)
    other_saw_stop = asyncio.Event()

    async def fails(turn: Turn) -> None:
        raise RuntimeError("a send refused")

    async def goes_on(turn: Turn) -> None:
        await pipeline.stopping.wait()
        other_saw_stop.set()

    pipeline.start(goes_on)
    pipeline.start(fails)
    await asyncio.wait_for(other_saw_stop.wait(), 5)
    with pytest.raises(RuntimeError, match="a send refused"):
        await pipeline.drain()
    with pytest.raises(RuntimeError, match="a send refused"):
        await pipeline.room()  # the poll loop's next batch: the replica stops


async def test_no_more_batches_are_under_way_than_the_most() -> None:
    pipeline = BatchPipeline(most=2)
    release = asyncio.Event()

    async def held(turn: Turn) -> None:
        await release.wait()

    pipeline.start(held)
    pipeline.start(held)
    waiting = asyncio.ensure_future(pipeline.room())
    await asyncio.wait({waiting}, timeout=0.2)  # it would have returned by now
    assert not waiting.done()
    assert pipeline.under_way == 2
    release.set()
    await asyncio.wait_for(waiting, 5)
    await pipeline.drain()
    assert pipeline.under_way == 0
