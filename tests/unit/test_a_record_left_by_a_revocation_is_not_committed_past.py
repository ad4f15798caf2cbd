"""A record a revocation left unhandled is not committed past (found while reviewing stop
53's change; there since stop 45, failing first).

A revocation that waits for the batch in flight takes the partition out of ``_owned`` at
once, so ``_handle_in_order`` stops before the partition's next records ("left to its
next owner"). But the batch ended within the wait, and ``PartitionOwnership.handled``
marked the *whole* batch handled for a partition being left (``waited_for``): the
hand-over commit went past records nobody asked nor answered, and the next owner started
after them: a reservation or a deletion lost."""

from __future__ import annotations

import asyncio
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
from tests.unit.test_a_sealed_message_is_read_only_as_the_type_it_was_sealed_as import (
    sealed_by_the_hub,
)
from tests.unit.test_an_answer_leaves_as_soon_as_it_is_sealed import (
    P0,
    REQUESTS,
    Clock,
    GroupConsumer,
    StampingProducer,
)
from tests.unit.test_state_pending_queue import TOPICS, dga


def request_read(
    keys: Path, request: AuthorityRequest, offset: int
) -> ConsumerRecord[bytes, bytes]:
    """``request`` sealed by the hub, as the adapter reads it at ``offset`` of partition 0."""
    sealed = sealed_by_the_hub(request, keys, ContentType.JSON)
    return ConsumerRecord(
        REQUESTS,
        0,
        offset,
        int(Clock().now * 1000),
        LOG_APPEND_TIME,
        request.reference.encode(),
        sealed,
        None,
        0,
        0,
        [],
    )


class RevokedDuringTheFirstCall(PartnerAnsweringByRule):
    def __init__(self) -> None:
        super().__init__()
        self.runner: AdapterRunner | None = None
        self.revocation: asyncio.Future[bool] | None = None

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        if self.revocation is None and self.runner is not None:
            # The group rebalances while the partner answers; the revocation waits.
            self.revocation = asyncio.ensure_future(self.runner.ownership.leaving({0}, 30))
            await asyncio.sleep(0)
        return await super().answer(request)


async def test_records_not_handled_after_a_revocation_are_not_committed_past(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    settings = Settings(security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / "state"))
    partner = RevokedDuringTheFirstCall()
    runner = AdapterRunner(
        load_adapter("dga"), settings, TOPICS, envelope_of("dga", TOPICS, keys), partner
    )
    partner.runner = runner
    try:
        ref = "26FRSTATEQ00000100"
        records = []
        for offset, version in ((0, 1), (1, 2)):
            request = dga(Operation.RESERVE, reference=ref, version=version)
            records.append(request_read(keys, request, offset))
        consumer = GroupConsumer()
        consumer.log_ends = {0: 2}
        producer = StampingProducer(Clock())
        runner._producer = producer
        await _Rebalance(runner, consumer).on_partitions_assigned({P0})
        await asyncio.wait_for(runner._process({P0: records}, producer, consumer), 10)
        assert partner.revocation is not None
        await asyncio.wait_for(partner.revocation, 5)
        assert len(partner.asked) == 1, "version 2 was left to the next owner"
        marks = runner.ownership.to_commit()
        assert marks.get(0, 0) <= 1, (
            f"the hand-over commit goes to {marks}: past version 2's reservation (offset 1), "
            "which nobody asked; the next owner starts after it "
            f"({runner.ownership.commit_metadata(0)})"
        )
    finally:
        runner.pending.close()
