"""The adapter polls on while earlier batches are handled (adapters/base/batch_pipeline.py),
and keeps what handling one batch at a time gave for free:

* a declaration's later request, read in a later batch, is asked and answered only once
  its earlier one was (a version never overtakes the one before at the partner, nor in
  the answers the hub reads);
* no batch says a partition handled past a request an earlier batch still handles,
  though it was answered first: a commit never passes that request (a replica that
  dies then leaves it to its next owner, never lost).

A's version 1 is held at the partner; B's reservation comes in a second batch, A's
version 2 in a third. The loop is driven as ``AdapterRunner.run`` drives it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

from adapters.base.runner import _Rebalance
from gun_contract.consume import consume
from gun_contract.model.exchange import (
    AuthorityRequest,
    AuthorityResponse,
    DocumentAnswer,
)
from tests.adapter_fixtures import PartnerAnsweringByRule
from tests.conftest import envelope_of
from tests.unit.test_a_declaration_read_after_a_slow_one_is_not_held_behind_its_partner_call import (  # noqa: E501
    Appending,
    Noting,
    dga_runner,
    request_record,
)
from tests.unit.test_an_answer_leaves_as_soon_as_it_is_sealed import P0, RESPONSES
from tests.unit.test_state_pending_queue import TOPICS

A = "26FRSIDEBY0000001"
B = "26FRSIDEBY0000002"


class HeldForA(PartnerAnsweringByRule):
    """A's version 1 is held until the test lets it go; every call is noted as it begins
    and ends."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, str, int]] = []
        self._asking = asyncio.Event()
        self.a_reserving = asyncio.Event()
        self.let_a_go = asyncio.Event()

    async def until_asked(self, reference: str) -> None:
        """Until ``reference`` was asked (any version)."""
        while not any(what == "begins" and ref == reference for what, ref, _ in self.events):
            self._asking.clear()
            await self._asking.wait()

    async def asked_within(self, reference: str, seconds: float) -> bool:
        """Whether ``reference`` was asked within ``seconds``."""
        try:
            await asyncio.wait_for(self.until_asked(reference), seconds)
        except TimeoutError:
            return False
        return True

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        self.events.append(("begins", request.reference, request.version))
        self._asking.set()
        if request.reference == A and request.version == 1:
            self.a_reserving.set()
            await self.let_a_go.wait()
        answers = await super().answer(request)
        self.events.append(("ends", request.reference, request.version))
        return answers


class NotingB(Noting):
    """Says when B's answer was sent, and when a key's second one was."""

    def __init__(self) -> None:
        super().__init__()
        self.b_answered = asyncio.Event()
        self._answered: dict[bytes, int] = {}
        self._twice: dict[bytes, asyncio.Event] = {}

    async def send(self, topic: str, value: bytes, **kwargs: Any) -> Any:
        sent = await super().send(topic, value, **kwargs)
        if topic == RESPONSES:
            key = kwargs["key"]
            self._answered[key] = self._answered.get(key, 0) + 1
            if self._answered[key] == 2:
                self._twice.setdefault(key, asyncio.Event()).set()
        if B.encode() in self.left_at:
            self.b_answered.set()
        return sent

    async def answered_twice(self, reference: str) -> None:
        await self._twice.setdefault(reference.encode(), asyncio.Event()).wait()


async def test_a_later_batch_keeps_the_declarations_order_and_the_commit_waits_for_the_earlier(
    tmp_path: Path,
) -> None:
    partner = HeldForA()
    runner, keys = dga_runner(tmp_path, partner)
    consumer = Appending([request_record(0, A, keys)], [request_record(1, B, keys)])
    producer = NotingB()
    runner._producer = producer
    marks: list[int] = []  # how far each batch said P0 was handled, in the order said
    handled = runner.ownership.handled

    def noting(offsets: Any, generation: int, answered: Any = None) -> None:
        marks.append(offsets[0])
        handled(offsets, generation, answered)

    runner.ownership.handled = noting  # type: ignore[method-assign]
    stopping = asyncio.Event()
    try:
        await _Rebalance(runner, consumer).on_partitions_assigned({P0})
        appending = asyncio.create_task(consumer.append_b())
        polling = asyncio.create_task(
            consume(
                cast(Any, consumer),
                lambda batch: runner._admitted(batch, cast(Any, producer), cast(Any, consumer)),
                commit=False,
                stopping=stopping,
                timeout_ms=50,
                max_records=500,
            )
        )
        await asyncio.wait_for(partner.a_reserving.wait(), 10)
        await appending
        await asyncio.wait_for(producer.b_answered.wait(), 10)
        # B answered while A's reservation is held: the later batch was handled.
        assert ("ends", B, 1) in partner.events
        # A third batch: A's version 2, quoting another licence (one document's calls
        # are in order anyway: replay.py holds each document).
        consumer.append([request_record(2, A, keys, version=2, licence="FR-LEMG-2026-OTHER")])
        await asyncio.wait_for(consumer.handed_out(2), 10)
        assert runner._batches.under_way == 3  # B's waits for its turn to be marked
        partner.let_a_go.set()
        await asyncio.wait_for(producer.answered_twice(A), 10)
        stopping.set()
        await asyncio.wait_for(polling, 10)
        await runner._batches.drain()
        assert runner.ownership.to_commit()[0] == 3, "every request handled: committed past all"
    finally:
        runner.pending.close()
    hub = envelope_of("hub", TOPICS, keys)
    a_answered = [
        AuthorityResponse.model_validate_json(hub.open(sent["value"], topic=RESPONSES).payload)
        for sent in producer.sent
        if sent["topic"] == RESPONSES and sent["key"] == A.encode()
    ]
    assert [answer.version for answer in a_answered] == [1, 2]
    a_events = [(what, version) for what, ref, version in partner.events if ref == A]
    assert a_events == [("begins", 1), ("ends", 1), ("begins", 2), ("ends", 2)], (
        "A's version 2 was asked while its version 1 was still at the partner"
    )
    assert marks == [1, 2, 3], (
        f"marked out of the fetch order ({marks}): B's batch, answered first, said P0 "
        "handled past A's reservation, which the batch before still handled"
    )
