"""A publisher refused its rights ends the worker naming the refusal, whatever else failed.

Outside audit of stop 51 (a helper, on the secured broker, 200 declarations waiting):
the principal refused Write on the decisions, one outbox lane failed with the refusal
and another, at the same moment, with aiokafka's own assertion of a producer the refusal
had left out of its transaction (``assert self.is_in_transaction()``). The publisher
kept the first failure it saw, the assertion, so the worker ended 1 with neither the
refusal's sentence nor a traceback (``gun-hub hub`` says a refusal as ``cannot start:``,
exit 2). A refusal of rights is now kept over any other failure; and the worker finds
it in its app's crash when its own is what failed after. A CI run with 200
declarations waiting still ended 1 once after both; reproduced under load, by two paths:
a later crash, faust's fetcher's, replaced the app's reason as well as the worker's (the
worker now keeps the first refusal any crash reached it with); and every lane met the
refusal only inside aiokafka's transaction, then its assertion, so no lane raised the
refusal (a lane's transaction now raises the error aiokafka ended it with).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import TopicAuthorizationFailedError
from aiokafka.producer.producer import TransactionContext
from aiokafka.producer.transaction_manager import TransactionManager

from gun_contract.kafka.client import ClientConfig
from gun_contract.kafka.refusals import rights_refusal
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import StateCipher
from gun_contract.topics import topic_registry
from gun_hub.cli.hub_worker import HubWorker
from gun_hub.runtime.faust_app import HubApp
from gun_hub.runtime.published_memory import PublishedMemory
from gun_hub.runtime.publisher import DecisionPublisher, _PartitionPublisher
from tests.conftest import envelope_of
from tests.unit.test_an_outbox_decision_under_a_state_key_not_deployed_stops_the_publisher import (
    DEPLOYED,
    DLQ,
    OUTBOX,
    _Envelope,
    _sealed,
)

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


async def test_the_refusal_is_kept_when_a_later_crash_replaces_the_apps_and_the_workers() -> None:
    """The path left open: the app crashed refused, and its crash marked its producer
    crashed too, so faust's fetcher, still handing the backlog to the agents, found the
    producer's buffer over its size and not running (``Cannot flush: Producer not
    Running``) and crashed in turn. mode marks every service from the one that crashed up
    to the worker with the later reason: the app's refusal was replaced as the worker's
    was, and the worker ended 1 without its sentence."""
    app: Any = HubApp("refused-test", broker="kafka://127.0.0.1:9", store="memory://")
    worker = HubWorker(app, loop=asyncio.get_running_loop(), quiet=True, redirect_stdouts=False)
    for service in worker.on_init_dependencies():  # as its start does: the app its child
        worker.add_dependency(service)
    refusal = TopicAuthorizationFailedError({TOPICS.decisions})
    try:
        await app.crash(refusal)
        stopped = RuntimeError("Cannot flush: Producer not Running")
        await app._fetcher.crash(stopped)
        assert (worker.crash_reason, app.crash_reason) == (stopped, stopped)  # mode's doing
        assert worker.refusal() is refusal
    finally:
        app.consumer._thread.thread_loop.close()  # made with the consumer, never started here


class _RefusedTheDecisions:
    """aiokafka's transactional producer as a broker refusing the decisions answers it:
    the partition a first send adds to the transaction is refused (aiokafka keeps the
    refusal in its transaction manager, the transaction in its abortable error), and a
    send after it, opening a batch, fails aiokafka's own assertion."""

    def __init__(self) -> None:
        self._txn_manager = TransactionManager("gun-hub-publisher-0", 60000)
        self._txn_manager.set_pid_and_epoch(1, 0)

    def transaction(self) -> TransactionContext:
        return TransactionContext(self)

    async def begin_transaction(self) -> None:
        self._txn_manager.begin_transaction()

    async def abort_transaction(self) -> None:
        self._txn_manager.aborting_transaction()
        self._txn_manager.complete_transaction()

    async def commit_transaction(self) -> None:
        self._txn_manager.committing_transaction()

    async def send(self, topic: str, _value: bytes, *, partition: int, **_: Any) -> Any:
        manager = self._txn_manager
        manager.maybe_add_partition_to_txn(TopicPartition(topic, partition))  # a new batch
        manager.error_transaction(TopicAuthorizationFailedError({topic}))  # the broker's answer
        return asyncio.get_running_loop().create_future()  # never delivered


async def test_a_refusal_aiokafka_keeps_in_its_transaction_is_raised_not_its_assertion() -> None:
    """The fourth path (the helper's repro, 200 declarations waiting, under load): every
    lane met the refusal only inside aiokafka, as the answer to the partition its first
    send added to the transaction, and failed on its next send, with aiokafka's
    ``assert self.is_in_transaction()``; no lane raised the refusal, the publisher raised
    the assertion, and the worker ended 1 (its log: "Future exception was never
    retrieved ... TopicAuthorizationFailedError", then "Crashed reason=AssertionError()")."""
    publisher = DecisionPublisher(
        connect=None,  # type: ignore[arg-type]
        outbox_topic=OUTBOX,
        decisions_topic=TOPICS.decisions,
        app_id="gun-hub",
        envelope=_Envelope(),  # type: ignore[arg-type]
        outbox_cipher=StateCipher.of([DEPLOYED]),
        dead_letters=DLQ,
    )
    lane = _PartitionPublisher(0, _RefusedTheDecisions(), PublishedMemory(100))
    batch = [_sealed([DEPLOYED], f"26FRSECPUB{i:08d}".encode(), i) for i in range(2)]
    with pytest.raises(TopicAuthorizationFailedError) as refused:
        await publisher._publish_batch(lane, None, TopicPartition(OUTBOX, 0), batch)
    assert refused.value.args == ({TOPICS.decisions},)
