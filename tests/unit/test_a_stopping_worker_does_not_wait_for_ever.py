"""A hub worker that stops, or crashed, ends: nothing it waits for holds it for ever.

Found by CI in stop 50 (``tests/integration/test_secured_broker.py::
test_a_hub_whose_publisher_is_refused_the_decisions_stops_naming_them``, about one run in
thirty under load): the publisher refused, the worker crashed with records in hand, and
faust's stop ("Wait for streams...", ``Consumer.wait_empty``) committed them through the
consumer's thread, which the crash had stopped, and waited for its answer for ever: the
process never ended, its supervisor never restarted it, and the refusal was never said.
After a crash that wait is skipped, at a clean stop it is bounded (what is not settled is
read again at the next start: ADR 0001), and so is the worker's whole stop, whatever else
it may wait on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from gun_hub.cli.hub_worker import HubWorker
from gun_hub.runtime.faust_app import HubApp


class NeverEmpty:
    """A consumer whose records in hand are never acknowledged (their agents are gone)."""

    def __init__(self) -> None:
        self.waited = asyncio.Event()

    async def wait_empty(self) -> None:
        self.waited.set()
        await asyncio.Event().wait()


async def test_fausts_wait_for_the_records_in_hand_is_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = HubApp("stop-test", broker="kafka://127.0.0.1:9", store="memory://", stop_wait_s=0.2)
    consumer = NeverEmpty()
    logger = logging.getLogger("faust.app.base")
    app._stopped.set()  # as at a stop: mode's ``should_stop`` (a revocation's is not bounded)
    with caplog.at_level(logging.WARNING):
        async with asyncio.timeout(30):
            await app._consumer_wait_empty(consumer, logger)
    assert consumer.waited.is_set()
    [warned] = [r for r in caplog.records if "records in hand" in r.getMessage()]
    assert "read again at the next start" in warned.getMessage()


async def test_a_crashed_app_does_not_wait_for_the_records_in_hand(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = HubApp("crash-test", broker="kafka://127.0.0.1:9", store="memory://")
    await app.crash(RuntimeError("the publisher was refused its topic"))
    consumer = NeverEmpty()
    with caplog.at_level(logging.WARNING):
        await app._consumer_wait_empty(consumer, logging.getLogger("faust.app.base"))
    assert not consumer.waited.is_set()
    assert any("crashed: the records in hand" in r.getMessage() for r in caplog.records)


class StuckWorker(HubWorker):
    """A worker whose stop waits on something that never comes."""

    async def stop(self) -> None:
        await asyncio.Event().wait()


@pytest.mark.timeout(60)
def test_a_worker_whose_stop_never_ends_is_shut_down_past_its_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.new_event_loop()
    app: Any = HubApp("stuck-test", broker="kafka://127.0.0.1:9", store="memory://")
    worker = StuckWorker(app, loop=loop, quiet=True, redirect_stdouts=False, stop_within_s=0.5)
    with caplog.at_level(logging.ERROR):
        worker.stop_and_shutdown()
    assert loop.is_closed()
    [said] = [r for r in caplog.records if "did not stop within" in r.getMessage()]
    # Where it waited, for whoever reads the log.
    assert "StuckWorker.stop" in said.getMessage()


async def test_a_revocations_wait_for_the_records_in_hand_is_left_unbounded() -> None:
    """Those records must be done before another worker takes their partitions: the
    bound is a stop's only."""
    app = HubApp("revoke-test", broker="kafka://127.0.0.1:9", store="memory://", stop_wait_s=0.1)
    consumer = NeverEmpty()
    waiting = asyncio.ensure_future(
        app._consumer_wait_empty(consumer, logging.getLogger("faust.app.base"))
    )
    await consumer.waited.wait()
    # Ten times the stop's bound: still waiting.
    done, _ = await asyncio.wait({waiting}, timeout=1.0)
    assert not done
    waiting.cancel()
