"""The agents' delivery window (runtime/settling.py): a record is marked handled only once
its effects are on the broker, the agent goes on meanwhile, at most ``limit`` records are
in flight, and a delivery that failed for good stops the agent once."""

from __future__ import annotations

import asyncio

import pytest

from gun_hub.runtime.delivery import DeliveryFailed
from gun_hub.runtime.settling import Settling


async def test_a_record_is_marked_only_once_its_effects_are_acknowledged() -> None:
    settling = Settling(limit=10)
    acknowledged = asyncio.get_running_loop().create_future()
    marked: list[str] = []
    settling.track(acknowledged, lambda: marked.append("record 1"))
    await asyncio.sleep(0)  # the agent goes on: nothing is marked yet
    assert marked == []
    assert len(settling) == 1
    acknowledged.set_result(None)
    await settling.drained()
    assert marked == ["record 1"]
    assert len(settling) == 0


async def test_no_more_than_the_limit_is_in_flight() -> None:
    settling = Settling(limit=2)
    loop = asyncio.get_running_loop()
    acks = [loop.create_future() for _ in range(3)]
    for ack in acks[:2]:
        settling.track(ack, lambda: None)
    waiting = asyncio.ensure_future(settling.room())
    await asyncio.sleep(0)
    assert not waiting.done()  # two in flight: the agent waits
    acks[0].set_result(None)
    await asyncio.wait_for(waiting, 1)
    acks[1].set_result(None)
    await settling.drained()


async def test_a_delivery_that_failed_for_good_stops_the_agent_once_and_marks_nothing() -> None:
    settling = Settling(limit=10)
    marked: list[str] = []
    let_go: list[str] = []

    async def refused() -> None:
        raise DeliveryFailed("1 record(s) refused after 8 attempts")

    settling.track(refused(), lambda: marked.append("never"), lambda: let_go.append("record"))
    with pytest.raises(DeliveryFailed):
        await settling.drained()
    assert marked == []
    # No longer on its way: the offset watchdog may read it again.
    assert let_go == ["record"]
    settling.check()  # raised once: the agent restarted by its supervisor goes on
    await settling.room()
