"""An adapter's answer leaves as soon as its request is handled, not with its batch.

Found by the review of late readers (stop 53): an adapter sealed each answer when its
partner call returned, but sent the answers of a batch only once *every* request of the
batch was handled
(``AdapterRunner._process``: ``outboxes`` gathered, then ``producer.send``). The hub judges
an answer's ``iat`` against the record's log-append time within the skew (300 s,
``JoseEnvelope._check_claims``). So when a batch takes longer than the skew (an adapter
back after lunch reads its backlog 500 requests a poll, ``max_in_flight`` of them at a
time: about 8 rounds of up to ~40 s each with a slow partner, 20 s of turn waits plus a
call's attempts; or a reference with several requests in the batch, handled in order),
the answers sealed early in the batch reach the broker more than the skew after their
``iat``: the hub refuses them IAT_SKEW, dead-letters them as security rejections, and the
reservations the partner made for them are never known to the hub.

The gap adds to the adapter's own clock offset (an adapter behind the broker by X dates
its answers X earlier; nothing checks an adapter's clock), so with the defaults (worst
batch near 280 s) an adapter a minute behind is enough. Nothing bounds the time between
sealing and sending against the skew.

Here ``max_in_flight=1`` stands in for the rounds of a full batch: the first request is
answered at once, the next nine take 40 s each at the partner (a clock the test moves).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from adapters.base import load_adapter
from adapters.base.runner import AdapterRunner, _Rebalance
from gun_contract.envelope import LOG_APPEND_TIME, ContentType, EnvelopeRejected
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from gun_contract.security import jose_envelope
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import AdapterSettings, SecuritySettings, Settings
from tests.adapter_fixtures import PartnerAnsweringByRule
from tests.conftest import envelope_of
from tests.unit.test_a_sealed_message_is_read_only_as_the_type_it_was_sealed_as import (
    sealed_by_the_hub,
)
from tests.unit.test_adapter_pending_operations_outlive_the_request_log import FakeConsumer
from tests.unit.test_state_pending_queue import TOPICS, dga

REQUESTS = TOPICS.requests("dga")
RESPONSES = TOPICS.responses("dga")
P0 = TopicPartition(REQUESTS, 0)
SLOW_S = 40.0
COUNT = 10


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now


class SlowPartner(PartnerAnsweringByRule):
    """Answers the first request at once, each later one after SLOW_S (the test's clock)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        if self.asked:
            self.clock.now += SLOW_S
        await asyncio.sleep(0)
        return await super().answer(request)


class StampingProducer:
    """Takes every record at once; notes the broker time it would be appended at."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[dict[str, Any]] = []

    async def send(self, topic: str, value: bytes, **kwargs: Any) -> Awaitable[None]:
        self.sent.append({"topic": topic, "value": value, "at": self.clock.now, **kwargs})

        async def delivered() -> None:
            return None

        return delivered()

    async def send_and_wait(self, topic: str, value: bytes, **kwargs: Any) -> None:
        await (await self.send(topic, value, **kwargs))


class GroupConsumer(FakeConsumer):
    def __init__(self) -> None:
        super().__init__({0: 0}, {0: (0, "answered:0")}, partitions={0})
        self.log_ends = {0: COUNT}

    def assignment(self) -> set[TopicPartition]:
        return {P0}

    async def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        return None


async def test_every_answer_of_a_long_batch_still_opens_at_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    clock = Clock()
    # The envelope's clock (``iat`` of what it seals; ``now`` where no broker time is given).
    monkeypatch.setattr(jose_envelope, "time", SimpleNamespace(time=clock.time))
    settings = Settings(
        security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / "state"),
        adapter=AdapterSettings(max_in_flight=1),
    )
    partner = SlowPartner(clock)
    runner = AdapterRunner(
        load_adapter("dga"), settings, TOPICS, envelope_of("dga", TOPICS, keys), partner
    )
    try:
        records = []
        clock.now -= 3600  # the hub sealed and sent them an hour ago
        for offset in range(COUNT):
            request = dga(Operation.RESERVE, reference=f"26FRSTATEQ000001{offset:02d}")
            sealed = sealed_by_the_hub(request, keys, ContentType.JSON)
            records.append(
                ConsumerRecord(
                    REQUESTS,
                    0,
                    offset,
                    int(clock.now * 1000),  # the broker's log-append time
                    LOG_APPEND_TIME,
                    request.reference.encode(),
                    sealed,
                    None,
                    0,
                    0,
                    [],
                )
            )
        clock.now += 3600  # the adapter, back after lunch, reads them now
        consumer = GroupConsumer()
        producer = StampingProducer(clock)
        runner._producer = producer
        await _Rebalance(runner, consumer).on_partitions_assigned({P0})
        await asyncio.wait_for(runner._process({P0: records}, producer, consumer), 30)

        answers = [s for s in producer.sent if s["topic"] == RESPONSES]
        assert len(answers) == COUNT, producer.sent
        hub = envelope_of("hub", TOPICS, keys)
        refused = []
        for n, answer in enumerate(answers):
            try:
                hub.open(
                    answer["value"],
                    topic=RESPONSES,
                    position=f"{RESPONSES}/0/{n}",
                    accepted_at=answer["at"],  # the broker's time when it is sent
                )
            except EnvelopeRejected as rejection:
                refused.append(f"{rejection.kind.value}: {rejection}")
        assert refused == [], f"{len(refused)} of {COUNT} answers refused by the hub: {refused[:2]}"
    finally:
        runner.pending.close()
