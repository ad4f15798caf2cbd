"""A publisher refused its rights ends the worker naming the refusal, whatever else failed.

Outside audit of stop 51 (a helper, on the secured broker, 200 declarations waiting):
the principal refused Write on the decisions, one outbox lane failed with the refusal
and another, at the same moment, with aiokafka's own assertion of a producer the refusal
had left out of its transaction (``assert self.is_in_transaction()``). The publisher
kept the first failure it saw, the assertion, so the worker ended 1 with neither the
refusal's sentence nor a traceback (``gun-hub hub`` says a refusal as ``cannot start:``,
exit 2). A refusal of rights is now kept over any other failure; and the worker finds
it in its app's crash when its own is what failed after. (A CI run with 200
declarations waiting still ended 1 once after both: a path not found yet, left open.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiokafka.errors import TopicAuthorizationFailedError

from gun_contract.kafka.client import ClientConfig
from gun_contract.kafka.refusals import rights_refusal
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import StateCipher
from gun_contract.topics import topic_registry
from gun_hub.cli.hub_worker import HubWorker
from gun_hub.runtime.faust_app import HubApp
from gun_hub.runtime.publisher import DecisionPublisher
from tests.conftest import envelope_of

TOPICS = topic_registry("gun", ["cites", "dga", "dgal"])


def _publisher(keys_dir: Path) -> DecisionPublisher:
    return DecisionPublisher(
        ClientConfig("127.0.0.1:9"),
        TOPICS.decision_outbox,
        TOPICS.decisions,
        "hub",
        envelope=envelope_of(HUB_PARTY, TOPICS, keys_dir),
        outbox_cipher=StateCipher.load(keys_dir, HUB_PARTY),
    )


async def _failed(error: BaseException) -> asyncio.Task[None]:
    async def fail() -> None:
        raise error

    task = asyncio.ensure_future(fail())
    await asyncio.wait({task})
    return task


async def test_a_refusal_after_another_failure_is_the_one_kept(keys_dir: Path) -> None:
    publisher = _publisher(keys_dir)
    publisher._note_failure(await _failed(AssertionError()))
    publisher._note_failure(await _failed(TopicAuthorizationFailedError({TOPICS.decisions})))
    assert rights_refusal(publisher._failure) is not None


async def test_the_first_refusal_is_kept_over_later_failures(keys_dir: Path) -> None:
    publisher = _publisher(keys_dir)
    refusal = TopicAuthorizationFailedError({TOPICS.decisions})
    publisher._note_failure(await _failed(refusal))
    publisher._note_failure(await _failed(AssertionError()))
    publisher._note_failure(await _failed(RuntimeError("a bug")))
    assert publisher._failure is refusal


def test_the_workers_refusal_is_its_apps_when_something_else_failed_stopping_it() -> None:
    """The app crashed refused; stopping it, faust's fetcher failed flushing a producer
    the crash had stopped, and that was the worker's own crash: exit 1, no sentence."""
    loop = asyncio.new_event_loop()
    try:
        app: Any = HubApp("refused-test", broker="kafka://127.0.0.1:9", store="memory://")
        worker = HubWorker(app, loop=loop, quiet=True, redirect_stdouts=False)
        refusal = TopicAuthorizationFailedError({TOPICS.decisions})
        loop.run_until_complete(app.crash(refusal))
        worker.crash_reason = RuntimeError("Cannot flush: Producer not Running")
        assert worker.refusal() is refusal
    finally:
        loop.close()
