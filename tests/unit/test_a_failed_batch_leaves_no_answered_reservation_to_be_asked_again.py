"""Found by the review of stop 54's changes:
stop 54's ``answered-also:`` covers a batch that left records on a
revocation, not one that failed. Each key's records are handled side by side, so when one
key's answer cannot be sent (the producer refuses it: the batch fails and the replica
stops) other declarations' records further on the partition were answered already. The
stop commit says ``answered:`` the batch's start and nothing else; the next owner asks A's
reservation (answered UNAVAILABLE, the partner down) again, the partner applies it now,
and A's deletion, answered ``02`` before, meets the partner's remembered answer: held for
ever, the shape stop 54 closed for revocations."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaError

from adapters.base.runner import _Rebalance
from gun_contract.model.exchange import AuthorityRequest, DocumentAnswer, Operation
from gun_contract.model.verdicts import Verdict
from gun_contract.security.keystore import KeystoreFolder
from tests.adapter_fixtures import PartnerAnsweringByRule
from tests.unit.test_an_answer_leaves_as_soon_as_it_is_sealed import (
    P0,
    Clock,
    GroupConsumer,
    StampingProducer,
)
from tests.unit.test_what_a_batch_answered_past_a_record_it_left_is_not_asked_again import (
    A,
    B,
    b_then_a,
    next_owner,
    runner_for,
)


class DownForA(PartnerAnsweringByRule):
    """A's reservation: the partner down (UNAVAILABLE, not taken). B's reservation is
    slow: it ends once A's two requests were answered."""

    def __init__(self) -> None:
        super().__init__(
            lambda r: (
                Verdict.UNAVAILABLE
                if (r.reference, r.operation) == (A, Operation.RESERVE)
                else Verdict.VALID
            )
        )
        self.a_answered = asyncio.Event()

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        if (request.reference, request.operation) == (B, Operation.RESERVE):
            await asyncio.wait_for(self.a_answered.wait(), 5)
        answers = await super().answer(request)
        if (request.reference, request.operation) == (A, Operation.DELETE):
            self.a_answered.set()
        return answers


class RefusingB(StampingProducer):
    """The broker refuses B's answer (a record too large, an authorisation lost...)."""

    async def send(self, topic: str, value: bytes, **kwargs: Any) -> Any:
        if kwargs.get("key") == B.encode():
            raise KafkaError("refused")
        return await super().send(topic, value, **kwargs)


async def test_a_failed_batch_does_not_leave_answered_reservations_to_be_asked_again(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    records = b_then_a(keys)
    partner = DownForA()
    first = runner_for(tmp_path, keys, "first", partner)
    try:
        consumer = GroupConsumer()
        consumer.log_ends = {0: 4}
        producer = RefusingB(Clock())
        first._producer = producer
        await _Rebalance(first, consumer).on_partitions_assigned({P0})
        with pytest.raises(KafkaError):
            await asyncio.wait_for(first._process({P0: records}, producer, consumer), 10)
        a_answers = [s for s in producer.sent if s.get("key") == A.encode()]
        assert len(a_answers) == 2, "precondition: A's reservation and deletion were answered"
        await first.ownership.leaving(first.ownership.partitions)  # the replica stops
        at = first.ownership.to_commit().get(0, 0)
        metadata = first.ownership.commit_metadata(0)
    finally:
        first.pending.close()
    owner = next_owner(tmp_path, at, metadata)
    assert owner.answered_before(0, 2), (
        f"the stop commit at {at} ({metadata!r}) leaves A's reservation (offset 2), answered "
        "UNAVAILABLE with its deletion answered too, to be asked again by the next owner: "
        "applied after its deletion, held for ever"
    )
