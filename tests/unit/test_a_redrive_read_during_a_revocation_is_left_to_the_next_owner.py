"""A redrive whose log reads outlast a revocation is not asked by the replica that gave
the partition up: its next owner reads it again from the hand-over commit.

Found by review stop 40-G (G1): an adapter reads the log before honouring a redrive (the
original back, then up to 50,000 records of its declaration between the two), after the
check that it still owns the partition and before its call is known as under way. A
revocation waits at most ``partner_timeout_s + 1`` and then commits
``answered:N;handed-over:<generation>`` naming nothing of it; the replica then sent the
redriven reservation, and the next owner, believing the marker, asked it as a first
attempt: a 409 (the partner still at the first call) read as a refusal, the P1 outcome
(review stop 39) the hand-over marker exists to prevent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from adapters.base import load_adapter
from adapters.base.ownership import PartitionOwnership
from adapters.base.pending import PendingOperations
from adapters.base.runner import AdapterRunner, _Rebalance
from gun_contract.envelope import LOG_APPEND_TIME, ContentType
from gun_contract.kafka.log_reader import LoggedRecord
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import AdapterSettings, SecuritySettings, Settings
from tests.adapter_fixtures import PartnerAnsweringByRule
from tests.conftest import envelope_of
from tests.unit.test_a_sealed_message_is_read_only_as_the_type_it_was_sealed_as import (
    sealed_by_the_hub,
)
from tests.unit.test_adapter_pending_operations_outlive_the_request_log import (
    FakeConsumer,
    FakeProducer,
)
from tests.unit.test_an_adapter_judges_a_redrive_as_its_original import Log
from tests.unit.test_state_pending_queue import TOPICS, dga

REQUESTS = TOPICS.requests("dga")
P0 = TopicPartition(REQUESTS, 0)


class SlowLog(Log):
    """The broker gives the records between back only when the test lets it."""

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()
        self.reading = asyncio.Event()

    async def read_between(
        self,
        topic: str,
        partition: int,
        first: int,
        end: int,
        *,
        key: bytes | None,
        within_s: float | None = None,
    ) -> list[LoggedRecord] | None:
        self.reading.set()
        await self.go.wait()
        return await super().read_between(topic, partition, first, end, key=key, within_s=within_s)


class TimedPartner(PartnerAnsweringByRule):
    def __init__(self) -> None:
        super().__init__()
        self.asked_at: list[float] = []

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        self.asked_at.append(time.monotonic())
        return await super().answer(request)


class GroupConsumer(FakeConsumer):
    def __init__(self, commits: dict[int, tuple[int, str]]) -> None:
        super().__init__({0: 0}, commits, partitions={0})
        self.commits = commits
        self.log_ends = {0: 6}  # the redrive is appended after the assignment
        self.committed_at: list[tuple[float, int, str]] = []

    def assignment(self) -> set[TopicPartition]:
        return {P0}

    async def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        for tp, (offset, metadata) in offsets.items():
            self.commits[tp.partition] = (offset, metadata)
            self.committed_at.append((time.monotonic(), offset, metadata))


async def test_a_redrive_read_during_a_revocation_is_left_to_the_next_owner(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    settings = Settings(
        security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / "state"),
        adapter=AdapterSettings(partner_timeout_s=0.2),  # revocation waits 1.2 s
    )
    log = SlowLog()
    partner = TimedPartner()
    runner = AdapterRunner(
        load_adapter("dga"),
        settings,
        TOPICS,
        envelope_of("dga", TOPICS, keys),
        partner,
        record_reader=log,
    )
    try:
        request = dga(Operation.RESERVE)
        sealed = sealed_by_the_hub(request, keys, ContentType.JSON)
        now = time.time()
        key = request.reference.encode()
        log.put(5, key, sealed, now - 60)  # the original (dead-lettered, e.g. UNHANDLED_ERROR)
        log.put(6, key, sealed, now, redrive_of=5)  # the redrive
        redrive = ConsumerRecord(
            REQUESTS,
            0,
            6,
            int(now * 1000),
            LOG_APPEND_TIME,
            key,
            sealed,
            None,
            0,
            0,
            [("gun.redrive.of", f"{REQUESTS}/0/5".encode())],
        )
        consumer = GroupConsumer({0: (6, "answered:6")})
        producer = FakeProducer()
        runner._producer = producer
        rebalance = _Rebalance(runner, consumer)
        await rebalance.on_partitions_assigned({P0})  # generation 1

        batch = asyncio.create_task(runner._process({P0: [redrive]}, producer, consumer))
        await asyncio.wait_for(log.reading.wait(), 5)  # reading what lies between
        await asyncio.wait_for(rebalance.on_partitions_revoked({P0}), 10)  # gives up waiting
        handed_over = consumer.commits[0]

        log.go.set()  # the broker answers the read now
        await asyncio.wait_for(batch, 10)

        # The next owner, generation 2, reads the hand-over commit.
        owner = PartitionOwnership(PendingOperations(tmp_path / "next.sqlite"))
        offset, metadata = handed_over
        owner.assigned(
            {0},
            {0: metadata},
            committed={0: offset},
            log_starts={0: 0},
            log_ends={0: 7},
            group_generation=2,
        )

        assert metadata.endswith(";handed-over:1")
        assert offset == 6  # the redrive is read again by the next owner
        assert partner.asked == [], (
            f"the redriven reservation was sent to the partner {len(partner.asked)} time(s) "
            f"after the replica's hand-over commit {handed_over!r}, which does not name it; "
            f"the next owner asks it as a first attempt (sent_before={owner.sent_before(0, 6)})"
        )
    finally:
        runner.pending.close()
