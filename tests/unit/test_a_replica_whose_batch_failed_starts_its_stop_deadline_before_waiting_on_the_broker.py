"""A replica whose batch failed starts its stop deadline (``run(ending=...)``) before it
waits on the broker for the batches still under way (adapters/base/runner.py ``run``; a
second review of the batches under way, its test first).

``run`` promises that ``ending`` is called "as it ends, before its final commit and its
clients' stop, which wait on the broker": the process's stop deadline starts there
(gun_contract/stop_deadline.py), so that a replica ending after a crash exits within a
bound even when the broker never answers again (stop 50, 51: a component still up after
two minutes, never restarted). Since the batches are handled side by side, ``run``'s
``finally`` first waits for every batch under way (``drain_quietly``), and only then
calls ``ending``. A batch whose answers' deliveries the broker never settles holds it
there: the deadline never starts, and the replica whose other batch failed never exits.

Here the first batch's answer is sent and its delivery never settles (the broker gone);
the second batch's answer is refused: it fails, the poll loop ends, and ``run`` waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from adapters.base import load_adapter
from adapters.base import runner as runner_module
from adapters.base.runner import AdapterRunner
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import SecuritySettings, Settings
from tests.adapter_fixtures import PartnerAnsweringByRule
from tests.conftest import envelope_of
from tests.unit.test_a_declaration_read_after_a_slow_one_is_not_held_behind_its_partner_call import (  # noqa: E501
    request_record,
)
from tests.unit.test_a_reservation_in_flight_at_a_revocation_is_named_in_the_commit import (
    GroupConsumer,
)
from tests.unit.test_an_answer_leaves_as_soon_as_it_is_sealed import P0, RESPONSES
from tests.unit.test_state_pending_queue import TOPICS

A = "26FRSTOPDLN000001"
B = "26FRSTOPDLN000002"


class Polled(GroupConsumer):
    """The group gives P0 at the first poll; the polls give ``batches`` in turn, each
    once ``ready()`` allows it."""

    def __init__(self, batches: list[list[ConsumerRecord[bytes, bytes]]]) -> None:
        super().__init__({0: (0, "answered:0")})
        self._batches = batches
        self._listener: ConsumerRebalanceListener | None = None
        self.next_ready = asyncio.Event()
        self.next_ready.set()

    def subscribe(self, topics: list[str], listener: ConsumerRebalanceListener) -> None:
        self._listener = listener

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.on_partitions_assigned({P0})
        await asyncio.sleep(timeout_ms / 1000 / 10)
        if not self._batches or not self.next_ready.is_set():
            return {}
        self.next_ready.clear()
        return {P0: self._batches.pop(0)}

    def pause(self, *partitions: TopicPartition) -> None:
        return None

    def resume(self, *partitions: TopicPartition) -> None:
        return None


class BrokerGone:
    """A's answer is queued and its delivery never settles; B's is refused."""

    def __init__(self) -> None:
        self.a_delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.a_sent = asyncio.Event()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, topic: str, value: bytes, **kwargs: Any) -> asyncio.Future[None]:
        if topic == RESPONSES and kwargs.get("key") == A.encode():
            self.a_sent.set()
            return self.a_delivery
        if topic == RESPONSES and kwargs.get("key") == B.encode():
            raise KafkaError("B's answer refused")
        settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        settled.set_result(None)
        return settled


async def test_the_stop_deadline_starts_before_the_batches_under_way_are_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    settings = Settings(security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / "state"))
    runner = AdapterRunner(
        load_adapter("dga"),
        settings,
        TOPICS,
        envelope_of("dga", TOPICS, keys),
        PartnerAnsweringByRule(),
    )
    consumer = Polled([[request_record(0, A, keys)], [request_record(1, B, keys)]])
    producer = BrokerGone()
    monkeypatch.setattr(runner_module, "AIOKafkaConsumer", lambda **_: consumer)
    monkeypatch.setattr(runner_module, "AIOKafkaProducer", lambda **_: producer)
    ending = asyncio.Event()
    running = asyncio.create_task(runner.run(ending=ending.set))
    try:
        await asyncio.wait_for(producer.a_sent.wait(), 10)  # A answered, never delivered
        consumer.next_ready.set()  # B's batch: its answer refused, it fails
        await asyncio.wait_for(runner._batches.stopping.wait(), 10)
        started = True
        try:
            await asyncio.wait_for(ending.wait(), 3)
        except TimeoutError:
            started = False
        waits_in = [f"{f.f_code.co_name}:{f.f_lineno}" for f in running.get_stack()]
        # A's batch waits for its answer's delivery, B's (failed) for A's to be marked.
        assert runner._batches.under_way == 2
        assert started, (
            "a batch failed and the replica ends, but its stop deadline has not started: "
            "run() waits first for the batch whose answer the broker never acknowledges "
            "(drain_quietly before ending()), and the process never exits; it waits in "
            f"{waits_in}"
        )
    finally:
        if not producer.a_delivery.done():
            producer.a_delivery.set_exception(KafkaError("the broker is gone"))
        with pytest.raises(KafkaError):
            await asyncio.wait_for(running, 10)
