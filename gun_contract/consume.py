"""The one consume loop of every Kafka reader outside faust (issue 14): poll a batch,
hand it to a handler, commit past it, until told to stop.

Variants, by parameter rather than by copy:

* **Group consumer or reader without a group.** ``commit=True``: once the handler
  returned, the loop commits the offset after each partition's last record of the batch
  (the adapters, the clearance reader's group). ``commit=False``: a reader that assigned
  itself its partitions (``gun_contract.kafka.client.read_without_group``: the operations view,
  the rollout modes) keeps its own position, or a transaction commits it (the decision
  publisher sends its offsets to its transaction, and seeks back a batch it could not
  publish: only the poll is the loop's).
* **Per batch or per record.** The handler takes a batch (the adapter runner handles a
  batch's declarations concurrently; the publisher, a partition's records in one
  transaction); :func:`each_record` makes one from a per-record handler.

Failure of one record never stops a reader. With :func:`each_record`, whatever handling a
record raises is logged and given to ``failed``: :class:`DeadLetters` sends its dead
letter (kind ``UNHANDLED_ERROR``, the error's class and where it was raised as reason)
and waits for the broker to take it, then the next record is handled; the batch is
committed past the record only then, so a record is never committed unhandled and never
dead-lettered twice but after a crash between the two (at-least-once). A reader without a
group does not dead-letter: every worker reads every record, and one record would make as many dead
letters as workers (rollout_follower.py, ops/feed.py); its handler decides (skip and
count, or read again).

What is not one record's fault ends the loop: the handler raising (a broker lost while
sending, a database gone), or a dead letter that cannot be sent. Nothing of the batch is
committed; the caller stops, and its records are read again when it starts over. A
commit the group refuses after a rebalance is logged, not raised: the partitions' new
owners read the batch again from the last commit, which at-least-once allows.

The loop stops cleanly between two polls once ``stopping`` is set or ``until()`` holds
(at most ``timeout_ms`` after), or at once when its task is cancelled; closing the
consumer stays its owner's (it started it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias, TypeVar

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError

from gun_contract.dead_letter import ErrorClass, SourcePosition, dead_letter_record
from gun_contract.effects import OutgoingRecord
from gun_contract.validation import unhandled_reason

log = logging.getLogger(__name__)

UNHANDLED_ERROR = "UNHANDLED_ERROR"
"""The dead-letter kind of a record whose handling raised what its handler did not expect."""

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
Batch: TypeAlias = "Mapping[TopicPartition, Sequence[Record]]"
BatchHandler: TypeAlias = "Callable[[Batch], Awaitable[None]]"
RecordHandler: TypeAlias = "Callable[[Record], Awaitable[None]]"
Failed: TypeAlias = "Callable[[Record, Exception], Awaitable[None]]"


class Polled(Protocol):
    """What the loop needs of a consumer (an ``AIOKafkaConsumer``; a fake in unit tests)."""

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = ..., max_records: int | None = ...
    ) -> Any: ...

    async def commit(self, offsets: Any = ...) -> None: ...

    def assignment(self) -> set[TopicPartition]: ...


def next_offsets(batch: Batch) -> dict[TopicPartition, int]:
    """The offset to commit after ``batch``: one past each partition's last record."""
    return {tp: records[-1].offset + 1 for tp, records in batch.items() if records}


async def consume(
    consumer: Polled,
    handle: BatchHandler,
    *,
    commit: bool,
    stopping: asyncio.Event | None = None,
    until: Callable[[], bool] | None = None,
    timeout_ms: int = 500,
    max_records: int | None = None,
    before_poll: Callable[[], object] | None = None,
    after_poll: Callable[[], Awaitable[None]] | None = None,
    committed: Callable[[dict[TopicPartition, int]], object] | None = None,
) -> None:
    """Poll ``consumer``, give each non-empty batch to ``handle``, commit past it when
    ``commit``; until ``stopping`` is set or ``until()`` holds (see the module docstring).
    ``before_poll`` runs before each poll (pausing partitions), ``after_poll`` after each,
    the empty ones too (a caught-up check, housekeeping); ``committed`` is told each
    commit the broker confirmed (a replay memory forgets by it)."""

    def done() -> bool:
        return (stopping is not None and stopping.is_set()) or (until is not None and until())

    while not done():
        if before_poll is not None:
            before_poll()
        batch: Batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        if batch:
            await handle(batch)
            if commit:
                confirmed = await _commit(consumer, next_offsets(batch))
                if committed is not None and confirmed:
                    committed(confirmed)
        if after_poll is not None:
            await after_poll()


async def _commit(
    consumer: Polled, offsets: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    return await commit_assigned(consumer, offsets)


# An offset to commit, or an offset and the commit's metadata.
Offset = TypeVar("Offset", int, tuple[int, str])


async def commit_assigned(
    consumer: Polled, offsets: dict[TopicPartition, Offset]
) -> dict[TopicPartition, Offset]:
    """Commit ``offsets`` (each an offset, or an offset and metadata) of the partitions
    still assigned; what was committed (nothing when the group refused it after a
    rebalance)."""
    # Only partitions still ours: one revoked while its batch was handled is read again
    # by its new owner from the last commit (aiokafka refuses to commit it at all).
    assigned = consumer.assignment()
    offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
    if not offsets:
        return {}
    try:
        await consumer.commit(offsets)
    except CommitFailedError:
        # The group rebalanced meanwhile: the partitions' new owners read the batch again
        # from the last commit (at-least-once; every handler here is idempotent).
        log.warning("commit refused after a rebalance; the batch is read again by its owner")
        return {}
    return offsets


def each_record(handle: RecordHandler, failed: Failed) -> BatchHandler:
    """A batch handler that hands each record to ``handle`` in order (a partition after
    another); a record whose handling raises is logged and given to ``failed`` (its dead
    letter, :class:`DeadLetters`), and the next one is handled."""

    async def handle_batch(batch: Batch) -> None:
        for records in batch.values():
            for record in records:
                try:
                    await handle(record)
                except Exception as error:  # one record's failure: dead-lettered, not fatal
                    log.exception(
                        "unexpected %s handling the record at %s/%d/%d",
                        type(error).__name__,
                        record.topic,
                        record.partition,
                        record.offset,
                    )
                    await failed(record, error)

    return handle_batch


def unhandled_dead_letter(
    dlq_topic: str, component: str, record: Record, error: Exception
) -> OutgoingRecord:
    """The dead letter of ``record``, whose handling raised ``error``: the original bytes,
    kind ``UNHANDLED_ERROR``, the error's class and where it was raised as reason, never
    its text (gun_contract/validation.py ``unhandled_reason``)."""
    return dead_letter_record(
        dlq_topic,
        record.value or b"",
        error_class=ErrorClass.PERMANENT,
        kind=UNHANDLED_ERROR,
        reason=unhandled_reason(error),
        source=SourcePosition(record.topic, record.partition, record.offset, record.key),
        component=component,
    )


class Sender(Protocol):
    """What dead letters are sent with (an ``AIOKafkaProducer``)."""

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = ...,
        key: bytes | None = ...,
        partition: int | None = ...,
        timestamp_ms: int | None = ...,
        headers: Any = ...,
    ) -> Any: ...


class DeadLetters:
    """The ``failed`` of :func:`each_record` for a group consumer: sends the record's
    dead letter (:func:`unhandled_dead_letter`) on ``dlq_topic`` and waits until the
    broker took it, before the loop goes on (and commits past the record). ``producer``:
    idempotent, ``acks="all"``, like every record that must not be lost."""

    def __init__(self, producer: Sender, dlq_topic: str, component: str) -> None:
        self._producer = producer
        self._dlq_topic = dlq_topic
        self._component = component
        self.sent = 0

    async def __call__(self, record: Record, error: Exception) -> None:
        letter = unhandled_dead_letter(self._dlq_topic, self._component, record, error)
        await self._producer.send_and_wait(
            letter.topic, letter.value, key=letter.key, headers=letter.headers
        )
        self.sent += 1
