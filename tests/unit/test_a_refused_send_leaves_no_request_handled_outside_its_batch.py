"""A send the producer refuses fails the batch only once its other declarations stopped,
and they send nothing more (review of stop 53's change, failing first).

Each answer is sent as soon as its request is handled (``_handle_in_order``). When the
producer refused one (a buffer that stays full past ``request_timeout_ms``, the producer
closed), that key's coroutine raised out of ``_process``'s ``asyncio.gather``, which does
not cancel the others: ``_process`` left ``ownership.handling()`` (a revocation no longer
waited for anything) while the batch's other declarations went on being asked at the
partner and answered, outside any batch, during the replica's stop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from adapters.base import load_adapter
from adapters.base.runner import AdapterRunner, _Rebalance
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import SecuritySettings, Settings
from tests.adapter_fixtures import PartnerAnsweringByRule
from tests.conftest import envelope_of
from tests.unit.test_a_record_left_by_a_revocation_is_not_committed_past import request_read
from tests.unit.test_an_answer_leaves_as_soon_as_it_is_sealed import (
    P0,
    Clock,
    GroupConsumer,
    StampingProducer,
)
from tests.unit.test_state_pending_queue import TOPICS, dga

FAST, SLOW = "26FRSTATEQ00000100", "26FRSTATEQ00000200"


class SlowForOne(PartnerAnsweringByRule):
    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        if request.reference == SLOW:
            await self.go.wait()
        return await super().answer(request)


class RefusingTheFirst(StampingProducer):
    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.refused = asyncio.Event()

    async def send(self, topic: str, value: bytes, **kwargs: Any) -> Any:
        if not self.sent:
            self.sent.append({"topic": topic, "refused": True})
            self.refused.set()
            raise KafkaTimeoutError("the producer's buffer stayed full")
        return await super().send(topic, value, **kwargs)


async def test_a_refused_send_leaves_no_request_handled_after_its_batch_failed(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    settings = Settings(security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / "state"))
    partner = SlowForOne()
    runner = AdapterRunner(
        load_adapter("dga"), settings, TOPICS, envelope_of("dga", TOPICS, keys), partner
    )
    try:
        records = []
        for offset, ref in enumerate((FAST, SLOW)):
            records.append(request_read(keys, dga(Operation.RESERVE, reference=ref), offset))
        consumer = GroupConsumer()
        consumer.log_ends = {0: 2}
        producer = RefusingTheFirst(Clock())
        runner._producer = producer
        await _Rebalance(runner, consumer).on_partitions_assigned({P0})
        batch = asyncio.ensure_future(runner._process({P0: records}, producer, consumer))
        await producer.refused.wait()  # the fast declaration's answer refused
        partner.go.set()  # the slow one's partner answers now
        with pytest.raises(KafkaTimeoutError):
            await asyncio.wait_for(batch, 10)  # the batch fails with the refusal
        for _ in range(20):  # whatever the replica still did now would be outside it
            await asyncio.sleep(0)
        after = [s for s in producer.sent if not s.get("refused")]
        assert after == [], (
            f"{len(after)} record(s) sent after the batch failed, outside ownership.handling() "
            f"(idle: {runner.ownership._idle.is_set()}); the partner asked {len(partner.asked)}"
        )
    finally:
        runner.pending.close()
