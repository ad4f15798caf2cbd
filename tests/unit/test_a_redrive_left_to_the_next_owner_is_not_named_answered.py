"""Found by the review of stop 54's changes:
a redrive the replica did not ask (its partition revoked while the log was
read, stop 40-G G1: "its next owner reads it again") is noted as answered by
``_handle_in_order`` all the same. Past a record the batch left, the commit names it in
``answered-also:``, and the next owner takes it for answered: the redriven reservation is
asked by nobody and never answered."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiokafka.structs import ConsumerRecord

from adapters.base import load_adapter
from adapters.base.runner import AdapterRunner, _Rebalance
from gun_contract.envelope import LOG_APPEND_TIME, ContentType
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import SecuritySettings, Settings
from tests.adapter_fixtures import PartnerAnsweringByRule
from tests.conftest import envelope_of
from tests.unit.test_a_redrive_read_during_a_revocation_is_left_to_the_next_owner import (
    P0,
    REQUESTS,
    GroupConsumer,
    SlowLog,
)
from tests.unit.test_a_sealed_message_is_read_only_as_the_type_it_was_sealed_as import (
    sealed_by_the_hub,
)
from tests.unit.test_adapter_pending_operations_outlive_the_request_log import FakeProducer
from tests.unit.test_state_pending_queue import TOPICS, dga
from tests.unit.test_what_a_batch_answered_past_a_record_it_left_is_not_asked_again import (
    next_owner,
)

A = "26FRREVIEWR4000002"  # the redriven reservation's declaration
B = "26FRREVIEWR4000001"  # a slow reservation, then its deletion (left)


def record(
    offset: int,
    key: bytes,
    sealed: bytes,
    at: float,
    headers: list[tuple[str, bytes]] | None = None,
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        REQUESTS,
        0,
        offset,
        int(at * 1000),
        LOG_APPEND_TIME,
        key,
        sealed,
        None,
        0,
        0,
        headers or [],
    )


class SlowForB(PartnerAnsweringByRule):
    """B's reservation runs while A's redrive reads the log; the group revokes the
    partition then (a revocation that waits for the batch), and the log answers."""

    def __init__(self, log: SlowLog) -> None:
        super().__init__()
        self.log = log
        self.runner: AdapterRunner | None = None
        self.revocation: asyncio.Future[bool] | None = None

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        if (request.reference, request.operation) == (B, Operation.RESERVE):
            await asyncio.wait_for(self.log.reading.wait(), 5)
            assert self.runner is not None
            self.revocation = asyncio.ensure_future(self.runner.ownership.leaving({0}, 30))
            await asyncio.sleep(0)
            self.log.go.set()
            await asyncio.sleep(0.05)
        return await super().answer(request)


async def test_a_redrive_left_to_the_next_owner_is_not_named_answered(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    settings = Settings(security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / "state"))
    log = SlowLog()
    partner = SlowForB(log)
    runner = AdapterRunner(
        load_adapter("dga"),
        settings,
        TOPICS,
        envelope_of("dga", TOPICS, keys),
        partner,
        record_reader=log,
    )
    partner.runner = runner
    try:
        now = time.time()
        b_reserve = sealed_by_the_hub(dga(Operation.RESERVE, reference=B), keys, ContentType.JSON)
        b_delete = sealed_by_the_hub(dga(Operation.DELETE, reference=B), keys, ContentType.JSON)
        a_reserve = sealed_by_the_hub(dga(Operation.RESERVE, reference=A), keys, ContentType.JSON)
        log.put(2, A.encode(), a_reserve, now - 60)  # A's original (dead-lettered earlier)
        log.put(3, A.encode(), a_reserve, now, redrive_of=2)  # its redrive
        batch = [
            record(0, B.encode(), b_reserve, now),
            record(1, B.encode(), b_delete, now),
            record(3, A.encode(), a_reserve, now, [("gun.redrive.of", f"{REQUESTS}/0/2".encode())]),
        ]
        consumer = GroupConsumer({0: (0, "answered:0")})
        consumer.log_ends = {0: 4}
        producer = FakeProducer()
        runner._producer = producer
        await _Rebalance(runner, consumer).on_partitions_assigned({P0})
        await asyncio.wait_for(runner._process({P0: batch}, producer, consumer), 10)
        assert partner.revocation is not None
        assert await asyncio.wait_for(partner.revocation, 5)  # the batch ended within the wait
        assert f"{A}/1/dga/RESERVE" not in partner.asked, "precondition: redrive not asked"
        at = runner.ownership.to_commit().get(0, 0)
        metadata = runner.ownership.commit_metadata(0)
        assert at <= 1  # B's deletion was left

        owner = next_owner(tmp_path, at, metadata)
        assert not owner.answered_before(0, 3), (
            f"the hand-over commit at {at} ({metadata!r}) names the redrive at offset 3 as "
            "answered, though its replica never asked nor answered it (revoked during its "
            "log reads): the next owner skips it, and the redriven reservation is never answered"
        )
    finally:
        runner.pending.close()
