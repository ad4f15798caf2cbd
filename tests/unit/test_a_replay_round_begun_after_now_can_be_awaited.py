"""A replay round that begins after a caller asks can be awaited, instead of sleeping
longer than the replay interval (review stop 37, T7: on a loaded machine a sleep of one
interval and a bit may end before any round ran, and the test then proved nothing).

A round already under way when the caller asks does not count: it may have listed the
pending queue before what the caller did."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from adapters.base.replay import Rounds
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import AdapterSettings, SecuritySettings, Settings
from tests.adapter_fixtures import adapter_runner
from tests.unit.test_state_pending_queue import TOPICS


async def let_the_loop_run() -> None:
    """Give every ready task its turn (no time passes: the loop only runs what is ready,
    so a waiter that could go on has gone on after this)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_round_under_way_when_asked_is_not_the_one_awaited() -> None:
    rounds = Rounds()
    rounds.begin()  # under way: it may have listed the queue already
    waiting = asyncio.create_task(rounds.one_begun_after_now())
    await let_the_loop_run()
    rounds.end()
    await let_the_loop_run()
    assert not waiting.done()

    rounds.begin()
    await let_the_loop_run()
    assert not waiting.done()
    rounds.end()
    await asyncio.wait_for(waiting, 1)


async def test_asked_between_rounds_the_next_round_is_awaited() -> None:
    rounds = Rounds()
    rounds.begin()
    rounds.end()
    waiting = asyncio.create_task(rounds.one_begun_after_now())
    await let_the_loop_run()
    assert not waiting.done()  # the round that ended before the call does not count
    rounds.begin()
    rounds.end()
    await asyncio.wait_for(waiting, 1)


async def test_the_adapters_replay_loop_marks_each_round_a_failing_one_too(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    settings = Settings(
        security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / "state"),
        adapter=AdapterSettings(replay_interval_s=0.01),
    )
    runner = adapter_runner("dga", settings, TOPICS)
    rounds_run = 0

    async def a_failing_round(_: object) -> None:
        nonlocal rounds_run
        rounds_run += 1
        raise RuntimeError("a bug in one round")

    runner._replay_once = a_failing_round  # type: ignore[method-assign,assignment]
    loop = asyncio.create_task(runner._replay_pending(None))
    try:
        await asyncio.wait_for(runner.replay_rounds.one_begun_after_now(), 10)
        assert rounds_run >= 1
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        runner.pending.close()
