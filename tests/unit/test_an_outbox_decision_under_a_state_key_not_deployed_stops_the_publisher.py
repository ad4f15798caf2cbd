"""An outbox record sealed with a state key this worker does not hold is a deployment to
finish, not a record that does not open (ADR 0022's addendum of stop 41).

Found by the review of stop 40: ``_seal_for_clearance`` caught ``StateUnreadable``, of
which ``StateKeyMissing`` is a kind, so a worker that missed ``gun-hub keys rotate hub
--state`` dead-lettered (OUTBOX_UNREADABLE) every decision another worker had sealed with
the new key, and committed past it: decisions lost for the clearance system. Now its
transaction is aborted (nothing dead-lettered, nothing committed), the batch is read again
while the key file may still be on its way (the agents wait as long), then the publisher
stops, naming the key; a value that truly does not open is dead-lettered as before.

The lane is driven through ``_publish_batch`` with a producer that keeps what each
transaction sent and whether it committed (no broker: tests/integration/
test_the_publisher_outlives_its_producers_failures.py runs it on one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from gun_contract.dead_letter import HEADER_ERROR_KIND, header_value
from gun_contract.envelope import ContentType
from gun_contract.security.keystore import StateKey
from gun_contract.security.state_cipher import (
    KEY_MISSING_PATIENCE_S,
    StateCipher,
    StateKeyMissing,
)
from gun_hub.cli.hub_worker import ExpectedEndsWithoutTraceback
from gun_hub.pipeline.decision_outbox import HEADER_VERSION, OUTBOX_STATE, outbox_record_key
from gun_hub.runtime.published_memory import PublishedMemory
from gun_hub.runtime.publisher import (
    OUTBOX_UNREADABLE,
    DecisionPublisher,
    _PartitionPublisher,
)

OUTBOX = "gun.hub.decision-outbox"
DECISIONS = "gun.decisions"
DLQ = "gun.dlq"
DEPLOYED = StateKey("hub-state-20260101T000000-aaaaaa", os.urandom(32))
ROTATED = StateKey("hub-state-20991231T000000-bbbbbb", os.urandom(32))  # not deployed here
NEXT = StateKey("hub-state-21000101T000000-cccccc", os.urandom(32))  # nor this one


class _Envelope:
    """Seals for the clearance system by saying so (the envelope is not under test)."""

    def seal(
        self, payload: bytes, *, recipient: str, topic: str, content_type: ContentType
    ) -> bytes:
        return b"sealed for " + recipient.encode() + b": " + payload


class _Producer:
    """A transactional producer without a broker: what each transaction sent and the
    offsets it committed are kept only if it committed (an exception aborts it)."""

    def __init__(self) -> None:
        self.committed: list[tuple[str, bytes, list[tuple[str, bytes]]]] = []
        self.offsets: list[dict[TopicPartition, int]] = []
        self.aborted = 0
        self._open: list[tuple[str, bytes, list[tuple[str, bytes]]]] = []
        self._open_offsets: list[dict[TopicPartition, int]] = []
        self.said: list[str] = []  # each commit's metadata, committed or not

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self._open, self._open_offsets = [], []
        try:
            yield
        except BaseException:
            self.aborted += 1
            raise
        self.committed.extend(self._open)
        self.offsets.extend(self._open_offsets)

    async def send(
        self, topic: str, value: bytes, *, headers: Any = (), **_: Any
    ) -> asyncio.Future[object]:
        self._open.append((topic, value, list(headers or [])))
        delivered: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        delivered.set_result(SimpleNamespace(offset=len(self.committed) + len(self._open) - 1))
        return delivered

    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, tuple[int, str]], _group: str
    ) -> None:
        # The offsets here; what the commit says of the origins' windows in ``said``
        # (tests/unit/test_each_origins_latest_decisions_are_remembered_apart.py).
        self._open_offsets.append({tp: offset for tp, (offset, _) in offsets.items()})
        self.said.extend(said for _, said in offsets.values())

    def topics(self) -> list[str]:
        return [topic for topic, _, _ in self.committed]


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _OutboxRecord:
    def __init__(self, reference: bytes, value: bytes, offset: int) -> None:
        self.topic = OUTBOX
        self.partition = 0
        self.key = reference
        self.value = value
        self.headers = [(HEADER_VERSION, b"1")]
        self.offset = offset


def _sealed(keys: list[StateKey], reference: bytes, offset: int) -> _OutboxRecord:
    """A decision as a hub worker holding ``keys`` writes it (the last one seals)."""
    value = StateCipher.of(keys).seal(
        OUTBOX_STATE, outbox_record_key(reference, b"1"), b"<Decision/>"
    )
    return _OutboxRecord(reference, value, offset)


class _Lane:
    """One outbox partition's publisher, on a worker holding ``keys`` (changeable: a key
    file deployed while it waits)."""

    def __init__(self, keys: list[StateKey]) -> None:
        self.keys = keys
        self.clock = _Clock()
        self.publisher = DecisionPublisher(
            connect=None,  # type: ignore[arg-type]
            outbox_topic=OUTBOX,
            decisions_topic=DECISIONS,
            app_id="gun-hub",
            envelope=_Envelope(),  # type: ignore[arg-type]
            outbox_cipher=StateCipher(lambda: self.keys),
            dead_letters=DLQ,
            clock=self.clock,
        )
        self.producer = _Producer()
        self.memory = PublishedMemory(100)
        self._partition = _PartitionPublisher(0, self.producer, self.memory)

    async def publish(self, records: list[_OutboxRecord]) -> bool:
        return await self.publisher._publish_batch(
            self._partition,
            None,
            TopicPartition(OUTBOX, 0),
            records,
        )


@pytest.mark.asyncio
async def test_a_decision_under_a_state_key_not_deployed_is_neither_dead_lettered_nor_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lane = _Lane([DEPLOYED])
    # A decision this worker sealed, then one another worker sealed after a rotation.
    batch = [_sealed([DEPLOYED], b"26FRKEY00000000001", 6)]
    batch.append(_sealed([DEPLOYED, ROTATED], b"26FRKEY00000000002", 7))

    assert not await lane.publish(batch)  # read again: the key may be on its way
    assert lane.producer.aborted == 1
    assert lane.producer.committed == []  # no dead letter, and neither decision
    assert lane.producer.offsets == []  # nothing committed past it
    assert len(lane.memory) == 0  # the first decision is published with it, later
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(ROTATED.kid in r.getMessage() for r in warnings)

    lane.clock.now += KEY_MISSING_PATIENCE_S - 1
    assert not await lane.publish(batch)
    assert lane.producer.committed == []

    lane.clock.now += 1  # the agents' patience: the key is not coming, the worker stops
    with pytest.raises(StateKeyMissing) as missing:
        await lane.publish(batch)
    assert missing.value.kid == ROTATED.kid
    assert lane.producer.aborted == 3
    assert lane.producer.committed == []
    assert lane.producer.offsets == []
    [stops] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert f"deploy the state key {ROTATED.kid!r} to it" in stops.getMessage()
    assert "outbox partition 0 offset 7:" in stops.getMessage()  # where to step past it
    assert stops.exc_info is None  # an expected end, said in a sentence


@pytest.mark.asyncio
async def test_the_state_key_deployed_while_the_publisher_waits_publishes_the_decision() -> None:
    lane = _Lane([DEPLOYED])
    batch = [_sealed([DEPLOYED, ROTATED], b"26FRKEY00000000003", 7)]
    assert not await lane.publish(batch)

    lane.keys = [DEPLOYED, ROTATED]  # the key file deployed (read again at the next open)
    lane.clock.now += KEY_MISSING_PATIENCE_S - 1
    assert await lane.publish(batch)
    assert lane.producer.topics() == [DECISIONS]
    assert lane.producer.offsets == [{TopicPartition(OUTBOX, 0): 8}]

    # The wait is over with it: a key missing later is waited for as long again.
    lane.clock.now += KEY_MISSING_PATIENCE_S
    assert not await lane.publish([_sealed([ROTATED, NEXT], b"26FRKEY00000000004", 8)])


def _header_of(kid: bytes) -> bytes:
    return b"GS1" + bytes((len(kid),)) + kid


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"not sealed with the hub's state key", id="not sealed"),
        pytest.param(_header_of(b"no key id") + os.urandom(40), id="names no key id"),
        pytest.param(_header_of(DEPLOYED.kid.encode())[:-1], id="truncated"),
    ],
)
@pytest.mark.asyncio
async def test_an_outbox_record_that_does_not_open_is_still_dead_lettered(value: bytes) -> None:
    lane = _Lane([DEPLOYED])
    assert await lane.publish([_OutboxRecord(b"26FRKEY00000000005", value, 3)])
    [(topic, _, headers)] = lane.producer.committed
    assert topic == DLQ
    assert header_value(headers, HEADER_ERROR_KIND) == OUTBOX_UNREADABLE
    assert lane.producer.offsets == [{TopicPartition(OUTBOX, 0): 4}]


@pytest.mark.asyncio
async def test_a_value_altered_under_a_key_this_worker_holds_is_dead_lettered() -> None:
    lane = _Lane([DEPLOYED])
    record = _sealed([DEPLOYED], b"26FRKEY00000000006", 3)
    record.value = record.value[:-1] + bytes((record.value[-1] ^ 1,))
    assert await lane.publish([record])
    assert [header_value(h, HEADER_ERROR_KIND) for _, _, h in lane.producer.committed] == [
        OUTBOX_UNREADABLE
    ]


def _raise(error: BaseException) -> None:
    raise error


def _crash_record(error: BaseException) -> logging.LogRecord:
    """What mode logs as the worker crashes (``Service.crash``: ``log.exception``)."""
    try:
        _raise(error)
    except BaseException as raised:  # noqa: BLE001 - its traceback is the point
        exc_info = (type(raised), raised, raised.__traceback__)
    return logging.LogRecord("faust", logging.ERROR, __file__, 1, "Crashed", (), exc_info)


def test_a_worker_ending_for_a_missing_state_key_logs_no_traceback() -> None:
    ends = ExpectedEndsWithoutTraceback()
    missing = StateKeyMissing(
        "decision-outbox: sealed with state key 'K'", table=OUTBOX_STATE, key=b"R|1", kid="K"
    )
    crashed = _crash_record(missing)
    assert ends.filter(crashed)
    assert crashed.exc_info is None
    teardown = _crash_record(RuntimeError("Event loop is closed"))
    assert ends.filter(teardown)
    assert teardown.exc_info is None
