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
import os
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

from gun_contract.settings import load_settings
from gun_contract.stop_deadline import STOPPED_SHORT, StopDeadline
from gun_hub.cli.hub_worker import HubWorker
from gun_hub.cli.startup import RefusalOnRecord
from gun_hub.runtime.faust_app import HubApp
from gun_hub.runtime.strict_consumer import StrictOffsetsConsumer


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
def test_a_worker_whose_stop_never_ends_is_shut_down_and_then_ended(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two thirds of its deadline on, its loop is shut down where it waited (named in
    the log); at the deadline the process is ended, whatever still runs (here the test's
    stand-in for ``os._exit`` records it)."""
    loop = asyncio.new_event_loop()
    app: Any = HubApp("stuck-test", broker="kafka://127.0.0.1:9", store="memory://")
    ended: list[int] = []
    exited = threading.Event()

    def exit_now(code: int) -> None:
        ended.append(code)
        exited.set()

    deadline = StopDeadline("the test worker", 1.5, exit_now=exit_now)
    worker = StuckWorker(app, loop=loop, quiet=True, redirect_stdouts=False, deadline=deadline)
    with caplog.at_level(logging.ERROR):
        with pytest.raises(SystemExit) as cut:
            worker.stop_and_shutdown()
        assert cut.value.code == STOPPED_SHORT  # not a clean stop's 0 (mode's)
        assert loop.is_closed()
        [said] = [r for r in caplog.records if "did not stop within 1 s" in r.getMessage()]
        # Where it waited, for whoever reads the log.
        assert "StuckWorker.stop" in said.getMessage()
        assert exited.wait(30)
    assert ended == [STOPPED_SHORT]
    assert any(
        "the test worker did not stop within 1.5 s" in r.getMessage() for r in caplog.records
    )


# -- the deadline itself, in processes of their own (it ends them) ----------------------

_STUCK = textwrap.dedent(
    """
    import asyncio, logging, sys, threading
    from gun_contract.stop_deadline import StopDeadline

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    CODE = int(sys.argv[1])
    SENTENCE = sys.argv[2] or None

    async def waits_on_the_broker():
        await asyncio.Event().wait()

    async def main():
        deadline = StopDeadline("the stuck component", 1.0, lambda: (CODE, SENTENCE))
        asyncio.get_running_loop().create_task(waits_on_the_broker())
        await asyncio.sleep(0)
        deadline.start()
        # A non-daemon thread that never ends: the interpreter would wait for it at exit.
        threading.Thread(target=threading.Event().wait, name="consumer-thread").start()
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


@pytest.mark.parametrize(
    ("code", "sentence"),
    [(STOPPED_SHORT, ""), (2, "cannot start: Kafka did not authorise user 'hub' on topic x")],
    ids=["cut-short", "a-refusal-still-said"],
)
def test_a_process_past_its_deadline_ends_saying_where_it_waited(code: int, sentence: str) -> None:
    ended = subprocess.run(
        [sys.executable, "-c", _STUCK, str(code), sentence],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ended.returncode == code
    assert "the stuck component did not stop within 1 s" in ended.stderr
    assert "waits_on_the_broker" in ended.stderr  # the innermost frame of its await
    assert "thread consumer-thread" in ended.stderr  # what would have kept it up
    if sentence:
        assert ended.stderr.strip().splitlines()[-1] == sentence


def test_a_deadline_started_twice_counts_from_the_first_start() -> None:
    ended: list[int] = []
    exited = threading.Event()

    def exit_now(code: int) -> None:
        ended.append(code)
        exited.set()

    deadline = StopDeadline("twice", 0.2, exit_now=exit_now)
    deadline.start()
    deadline.start()
    assert exited.wait(30)
    assert ended == [STOPPED_SHORT]  # once


async def test_a_crashed_consumer_does_not_commit_through_the_thread_the_crash_stopped() -> None:
    """faust's consumer waits for its records in hand and commits them at its own stop
    too, through its thread: after a crash, never answered (the review of this fix)."""
    consumer: Any = object.__new__(StrictOffsetsConsumer)  # its stop only, no broker
    app = HubApp("consumer-stop-test", broker="kafka://127.0.0.1:9", store="memory://")
    await app.crash(RuntimeError("the publisher was refused its topic"))
    consumer.app = app
    never = NeverEmpty()
    consumer.wait_empty = never.wait_empty
    async with asyncio.timeout(30):
        await consumer.on_stop()
    assert not never.waited.is_set()


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


# -- a view or an adapter refused its rights, its cleanup then stuck (stop 51) ----------

_REFUSED_THEN_STUCK = textwrap.dedent(
    """
    import asyncio, sys, threading
    from aiokafka.errors import TopicAuthorizationFailedError
    from gun_contract.settings import load_settings
    from gun_contract.stop_deadline import StopDeadline
    from gun_hub.cli.startup import RefusalOnRecord, refused_rights_stop_the_start

    settings = load_settings()
    refusal = RefusalOnRecord(settings)

    async def run():
        deadline = StopDeadline("the dgal adapter", 1.0, refusal.last_words)
        try:
            with refusal.recording():
                raise TopicAuthorizationFailedError({"gun.requests.dgal"})
        finally:
            deadline.start()
            # The clients' cleanup, waiting on a broker that does not answer:
            threading.Thread(target=threading.Event().wait, name="producer-flush").start()
            await asyncio.Event().wait()

    with refused_rights_stop_the_start(settings):
        asyncio.run(run())
    """
)


def test_a_refused_component_cut_by_its_deadline_still_says_its_refusal() -> None:
    """The adapter's and the view's deadline had no last words: a refusal of their
    rights followed by a cleanup stuck on the broker ended 1, the refusal unsaid (the hub
    worker said it). As the components wire it (cli/components.py)."""
    ended = subprocess.run(
        [sys.executable, "-c", _REFUSED_THEN_STUCK],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "GUN_HUB_KAFKA__SASL_USERNAME": "dgal"},
    )
    assert ended.returncode == 2
    last = ended.stderr.strip().splitlines()[-1]
    assert last.startswith("cannot start: Kafka at ")
    assert "did not authorise user 'dgal' on topic gun.requests.dgal" in last


def test_a_component_cut_short_without_a_refusal_says_nothing_more() -> None:
    refusal = RefusalOnRecord(load_settings())
    with pytest.raises(RuntimeError), refusal.recording():
        raise RuntimeError("not a refusal")
    assert refusal.last_words() == (STOPPED_SHORT, None)
