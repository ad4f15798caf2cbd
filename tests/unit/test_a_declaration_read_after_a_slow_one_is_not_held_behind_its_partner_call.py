"""A declaration is not held behind another declaration's slow partner call.

docs/adapters.md, "Order per declaration": records of one key are handled one after the
other, *different declarations run concurrently*, up to ``max_in_flight``. That holds
inside one fetched batch only. The adapter's loop (``AdapterRunner.run``: ``consume`` with
``self._process``) awaits the whole batch before it polls again, so a request appended
while a batch is being handled is not fetched until the batch's slowest declaration is
done: one declaration whose partner call takes its full deadline and retries (about 16 s
with the defaults, plus up to ``partner_queue_wait_s``) holds every declaration lodged
meanwhile, on every partition, though the partner answers those at once. The hub's own
30 s answer deadline runs from when it sent them: they go to degraded mode (documentary
control) with the partner healthy, and the heartbeat says ``closed``.

Here A's reservation takes 3 s at the partner; B's is appended 0.2 s later and the
partner answers it at once. The loop is driven as ``run`` drives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any, cast

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from adapters.base import PartnerPort, load_adapter
from adapters.base.runner import AdapterRunner, _Rebalance
from gun_contract.consume import consume
from gun_contract.envelope import LOG_APPEND_TIME, ContentType
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import SecuritySettings, Settings
from tests.adapter_fixtures import PartnerAnsweringByRule
from tests.conftest import envelope_of
from tests.unit.test_a_sealed_message_is_read_only_as_the_type_it_was_sealed_as import (
    sealed_by_the_hub,
)
from tests.unit.test_an_answer_leaves_as_soon_as_it_is_sealed import (
    P0,
    RESPONSES,
    Clock,
    GroupConsumer,
    StampingProducer,
)
from tests.unit.test_state_pending_queue import TOPICS, dga

A = "26FRSLOWHOL000001"
B = "26FRSLOWHOL000002"
A_AT_THE_PARTNER_S = 3.0
B_APPENDED_AFTER_S = 0.2


class SlowForA(PartnerAnsweringByRule):
    """A's reservation takes A_AT_THE_PARTNER_S; every other call is answered at once."""

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        if request.reference == A:
            await asyncio.sleep(A_AT_THE_PARTNER_S)
        return await super().answer(request)


def dga_runner(tmp_path: Path, partner: PartnerPort) -> tuple[AdapterRunner, Path]:
    """DGA's adapter runner over ``partner``, with keys made for the test (and their
    folder), as the tests of the batches under way build it."""
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    settings = Settings(security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / "state"))
    envelope = envelope_of("dga", TOPICS, keys)
    return AdapterRunner(load_adapter("dga"), settings, TOPICS, envelope, partner), keys


def request_record(
    offset: int,
    reference: str,
    keys: Path,
    operation: Operation = Operation.RESERVE,
    version: int = 1,
    licence: str | None = None,
) -> ConsumerRecord[bytes, bytes]:
    """The hub's request of ``operation`` on ``reference`` at ``offset`` of P0 (quoting
    ``licence``, else the usual one)."""
    request = dga(operation, reference=reference, version=version)
    if licence is not None:
        [item] = request.items
        [document] = item.documents
        other = document.model_copy(update={"reference": licence})
        request = request.model_copy(
            update={"items": (item.model_copy(update={"documents": (other,)}),)}
        )
    sealed = sealed_by_the_hub(request, keys, ContentType.JSON)
    return ConsumerRecord(
        P0.topic,
        P0.partition,
        offset,
        int(time.time() * 1000),
        LOG_APPEND_TIME,
        reference.encode(),
        sealed,
        None,
        0,
        len(sealed),
        [],
    )


class Appending(GroupConsumer):
    """``first`` in the log at the start; ``later`` appended B_APPENDED_AFTER_S later.
    ``getmany`` gives what was appended since the last one, waiting as aiokafka does."""

    def __init__(
        self,
        first: list[ConsumerRecord[bytes, bytes]],
        later: list[ConsumerRecord[bytes, bytes]],
    ) -> None:
        super().__init__()
        self.log_ends = {0: 0}
        self._log = list(first)
        self._later = later
        self._read = 0
        self._appended = asyncio.Event()
        self.b_appended_at: float | None = None
        self.handed: list[int] = []  # the offsets getmany gave
        self.handing = asyncio.Event()  # set at each hand-out

    async def handed_out(self, offset: int) -> None:
        """Until ``offset`` was given: the loop then admits its batch before it awaits
        anything (adapters/base/runner.py ``_admit``)."""
        while offset not in self.handed:
            self.handing.clear()
            await self.handing.wait()

    async def append_b(self) -> None:
        await asyncio.sleep(B_APPENDED_AFTER_S)
        self.append(self._later)
        self.b_appended_at = time.monotonic()

    def append(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        self._log += records
        self._appended.set()

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        if self._read == len(self._log):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._appended.wait(), timeout_ms / 1000)
        fetched = self._log[self._read :]
        self._read = len(self._log)
        self._appended.clear()
        if fetched:
            self.handed += [record.offset for record in fetched]
            self.handing.set()
        return {P0: fetched} if fetched else {}

    def pause(self, *partitions: TopicPartition) -> None:
        return None

    def resume(self, *partitions: TopicPartition) -> None:
        return None


class Noting(StampingProducer):
    """Notes when each answer leaves (monotonic), by its key (the first of each)."""

    def __init__(self) -> None:
        super().__init__(Clock())
        self.left_at: dict[bytes, float] = {}
        self.both_answered = asyncio.Event()

    async def send(self, topic: str, value: bytes, **kwargs: Any) -> Any:
        if topic == RESPONSES:
            self.left_at.setdefault(kwargs["key"], time.monotonic())
            if len(self.left_at) == 2:
                self.both_answered.set()
        return await super().send(topic, value, **kwargs)


async def test_a_declaration_read_after_a_slow_one_is_answered_without_waiting_for_it(
    tmp_path: Path,
) -> None:
    runner, keys = dga_runner(tmp_path, SlowForA())
    consumer = Appending([request_record(0, A, keys)], [request_record(1, B, keys)])
    producer = Noting()
    runner._producer = producer
    stopping = asyncio.Event()
    try:
        await _Rebalance(runner, consumer).on_partitions_assigned({P0})
        appending = asyncio.create_task(consumer.append_b())

        async def until_both_answered() -> None:
            await producer.both_answered.wait()
            stopping.set()

        watching = asyncio.create_task(until_both_answered())
        # As AdapterRunner.run drives it (its other arguments: the pending bound, commits).
        await asyncio.wait_for(
            consume(
                cast(Any, consumer),
                lambda batch: runner._admitted(batch, cast(Any, producer), cast(Any, consumer)),
                commit=False,
                stopping=stopping,
                timeout_ms=250,
                max_records=500,
            ),
            A_AT_THE_PARTNER_S + 10,
        )
        await runner._batches.drain()  # as run() does once the loop ends
        await appending
        await watching
    finally:
        runner.pending.close()
    assert consumer.b_appended_at is not None
    b_waited_s = producer.left_at[B.encode()] - consumer.b_appended_at
    assert b_waited_s < 1.0, (
        f"B, answered at once by the partner, left {b_waited_s:.1f} s after it was appended: "
        f"held behind A's {A_AT_THE_PARTNER_S:.0f} s partner call (the loop polls again only "
        "once the whole batch is handled)"
    )
