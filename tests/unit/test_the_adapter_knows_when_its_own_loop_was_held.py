"""The adapter sums how long its own event loop was held (adapters/base/loop_stalls.py),
so that a partner call timing out meanwhile is not held against the partner
(tests/unit/test_a_large_request_does_not_push_others_into_degraded_mode.py shows that
with a real partner)."""

from __future__ import annotations

import asyncio
import time

from adapters.base.loop_stalls import LoopStalls


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _turns(count: int = 20) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_held_loop_is_counted_and_ordinary_wake_ups_are_not() -> None:
    clock = Clock()
    told: list[float] = []  # what the operators' metric is given
    stalls = LoopStalls(tick_s=0.0, clock=clock, on_held=told.append)
    stalls.watch()
    try:
        await _turns()
        assert stalls.stalled_s == 0.0, "wake-ups on time count nothing"
        mark = stalls.stalled_s
        clock.now += 1.5  # the loop held a second and a half between two wake-ups
        await _turns()
        assert stalls.since(mark) == 1.5
        clock.now += 0.01  # late by less than the tolerance: the loop's own business
        await _turns()
        assert stalls.since(mark) == 1.5
    finally:
        await stalls.close()
    assert told == [1.5]


async def test_a_real_hold_is_counted_before_a_call_it_timed_out_handles_its_timeout() -> None:
    """The watcher's timer was set before any deadline the hold made pass: once the loop
    runs again, it counts the hold before a call (a task with a deadline, as aiohttp's)
    handles the timeout the hold caused."""
    stalls = LoopStalls(tick_s=0.05)
    stalls.watch()
    seen: list[float] = []

    async def call() -> None:
        try:
            async with asyncio.timeout(0.3):
                await asyncio.sleep(10)  # the partner's answer, never read in time
        except TimeoutError:
            seen.append(stalls.stalled_s)

    try:
        await asyncio.sleep(0.06)  # the watcher is sleeping its tick
        calling = asyncio.create_task(call())
        await asyncio.sleep(0)  # the call is out, its deadline set
        time.sleep(0.5)  # noqa: ASYNC251 - the loop held past that deadline, on purpose
        await calling
    finally:
        await stalls.close()
    assert len(seen) == 1, "the call timed out"
    assert seen[0] >= 0.4, seen
