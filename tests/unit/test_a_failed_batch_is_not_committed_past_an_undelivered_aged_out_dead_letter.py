"""Review r6 (ab882f5): a failed batch is marked handled from its first record on, past
the gap retention made before it, although the dead letter naming that gap
(REQUEST_AGED_OUT, sent first in the batch) never reached the broker. The stop commit
goes past the gap; the next owner sees no gap, and the requests deleted unread are
never dead-lettered (their declarations wait FOLLOW_UP_PENDING with nothing said)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaError

from adapters.base.runner import _Rebalance
from gun_contract.model.exchange import Operation
from gun_contract.security.keystore import KeystoreFolder
from tests.adapter_fixtures import PartnerAnsweringByRule
from tests.unit.test_a_record_left_by_a_revocation_is_not_committed_past import request_read
from tests.unit.test_an_answer_leaves_as_soon_as_it_is_sealed import (
    P0,
    Clock,
    GroupConsumer,
    StampingProducer,
)
from tests.unit.test_state_pending_queue import dga
from tests.unit.test_what_a_batch_answered_past_a_record_it_left_is_not_asked_again import (
    B,
    runner_for,
)


class BrokerFailing(StampingProducer):
    """Every delivery fails (the broker lost); B's send is refused outright."""

    async def send(self, topic: str, value: bytes, **kwargs: Any) -> Any:
        if kwargs.get("key") == B.encode():
            raise KafkaError("refused")
        self.sent.append({"topic": topic, "value": value, **kwargs})

        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(KafkaError("not delivered"))
        return failed


async def test_a_failed_batch_is_not_committed_past_an_undelivered_aged_out_dead_letter(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    runner = runner_for(tmp_path, keys, "first", PartnerAnsweringByRule())
    try:
        consumer = GroupConsumer()  # committed at 0
        consumer.log_ends = {0: 6}
        producer = BrokerFailing(Clock())
        runner._producer = producer
        await _Rebalance(runner, consumer).on_partitions_assigned({P0})
        # Retention deleted offsets 0..4 before any replica read them: the fetch was
        # reset to the log start, 5.
        consumer.log_starts = {0: 5}
        records = [request_read(keys, dga(Operation.RESERVE, reference=B, version=1), 5)]
        with pytest.raises(KafkaError):
            await asyncio.wait_for(runner._process({P0: records}, producer, consumer), 10)
        assert producer.sent, "precondition: the aged-out dead letter was sent (not delivered)"
        await runner.ownership.leaving(runner.ownership.partitions)  # the replica stops
        at = runner.ownership.to_commit().get(0, 0)
    finally:
        runner.pending.close()
    assert at <= 0, (
        f"the stop commit goes to {at}, past offsets 0..4 deleted unread, whose dead letter "
        "never reached the broker: the next owner sees no gap, and they are never said"
    )
