"""The adapter's partner connections are shared fairly between requests (call_turns.py): one
request holds at most its share, a free slot goes to the waiting requests in turn, and a call
whose turn does not come before its request's deadline is not sent (review stop 40, W2)."""

from __future__ import annotations

import asyncio

import pytest

from adapters.base.call_turns import CallTurns, NoTurnInTime, RequestTurns

LONG_S = 60.0


async def hold(turns: RequestTurns, started: list[str], name: str, done: asyncio.Event) -> None:
    async with turns.turn():
        started.append(name)
        await done.wait()


async def settled() -> None:
    """Let every task that can run, run (each step here wakes the next in one loop turn)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_one_request_holds_no_more_than_its_share() -> None:
    slots = CallTurns(4, per_request=2)
    large = slots.request(LONG_S)
    started: list[str] = []
    done = asyncio.Event()
    calls = [asyncio.create_task(hold(large, started, f"L{n}", done)) for n in range(6)]
    await settled()
    assert started == ["L0", "L1"]
    assert large.held == 2
    assert slots.free == 2
    done.set()
    await asyncio.gather(*calls)
    assert started == [f"L{n}" for n in range(6)]
    assert (large.held, slots.free) == (0, 4)


async def test_a_free_slot_goes_to_the_requests_waiting_in_turn() -> None:
    """The large request asked for 3 calls first, then two small ones asked for one each:
    as its first call ends, the small ones (never served) get the next slots, before its own
    next calls."""
    slots = CallTurns(1, per_request=1)
    large, small_a, small_b = (slots.request(LONG_S) for _ in range(3))
    started: list[str] = []
    ends = {name: asyncio.Event() for name in ["L0", "L1", "L2", "A", "B"]}
    calls = [asyncio.create_task(hold(large, started, f"L{n}", ends[f"L{n}"])) for n in range(3)]
    await settled()
    calls.append(asyncio.create_task(hold(small_a, started, "A", ends["A"])))
    calls.append(asyncio.create_task(hold(small_b, started, "B", ends["B"])))
    await settled()
    for name in ["L0", "A", "B", "L1", "L2"]:
        assert started[-1] == name
        ends[name].set()
        await settled()
    await asyncio.gather(*calls)
    assert started == ["L0", "A", "B", "L1", "L2"]


async def test_a_call_whose_turn_does_not_come_by_the_deadline_is_not_sent() -> None:
    slots = CallTurns(1, per_request=1)
    busy = slots.request(LONG_S)
    done = asyncio.Event()
    started: list[str] = []
    holder = asyncio.create_task(hold(busy, started, "busy", done))
    await settled()
    late = slots.request(0.05)
    with pytest.raises(NoTurnInTime):
        async with late.turn():
            started.append("late")
    assert started == ["busy"]
    assert late.not_sent == 1
    assert late.held == 0
    done.set()
    await holder
    assert slots.free == 1  # the call given up left nothing behind


async def test_a_cancelled_wait_gives_its_place_up() -> None:
    slots = CallTurns(1, per_request=1)
    first, second, third = (slots.request(LONG_S) for _ in range(3))
    started: list[str] = []
    done = {name: asyncio.Event() for name in ["1", "2", "3"]}
    holder = asyncio.create_task(hold(first, started, "1", done["1"]))
    await settled()
    cancelled = asyncio.create_task(hold(second, started, "2", done["2"]))
    waiting = asyncio.create_task(hold(third, started, "3", done["3"]))
    await settled()
    cancelled.cancel()
    await settled()
    done["1"].set()
    done["3"].set()
    await asyncio.gather(holder, waiting)
    assert cancelled.cancelled()
    assert started == ["1", "3"]
    assert slots.free == 1


def test_a_share_larger_than_the_connections_is_the_connections() -> None:
    slots = CallTurns(3, per_request=10)
    assert slots._per_request == 3
