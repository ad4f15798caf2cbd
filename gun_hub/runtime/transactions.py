"""What the hub's transactional producers share: the decision publisher's (one per outbox
partition, publisher.py) and the audit lanes' (one per audit partition, audit_lanes.py):
their retry backoff, their fatal state, their pacing, and how a fence is told apart from
another worker's takeover.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiokafka import AIOKafkaProducer

# A transaction starts as soon as the previous one is committed, while the broker may
# still be writing that one's markers. Since KIP-890 (Kafka 3.6), the leader of a
# partition checks each transactional produce with the coordinator, and answers
# "concurrent transactions" to a client of aiokafka's age as NOT_ENOUGH_REPLICAS, which
# aiokafka retries after its retry backoff: 100 ms by default, added to the records of
# that transaction (bench-steady: 181 in 5 minutes at 12.4 declarations/s). 20 ms is what
# the Java client and aiokafka wait on the same conflict when adding a partition to a
# transaction (KAFKA-5477).
TRANSACTION_RETRY_BACKOFF_MS = 20


# A producer fenced while the group still assigns its partition to this worker is taken
# again after this long. The fence does not say who fenced it: aiokafka raises
# ProducerFenced ("a newer producer ... or transaction timeout occurred") both when
# another worker took the partition (its InitProducerId bumped the epoch) and when the
# transaction coordinator aborted a transaction older than its timeout (it bumps the
# epoch too: a broker frozen or unreachable longer than that, a long pause of this
# worker). The group tells them apart: another worker that took the partition has the
# group revoke it from this one within a heartbeat (3 s) of its rebalance, so a partition
# still assigned after 30 s was fenced by its coordinator, and nobody else writes it.
RETAKE_FENCED_AFTER_S = 30.0


async def fenced_by_its_coordinator(
    still_assigned: Callable[[], bool],
    after_s: float = RETAKE_FENCED_AFTER_S,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> bool:
    """Whether a producer fenced while its partition was assigned here was fenced by its
    transaction coordinator, not by another worker taking the partition: the partition is
    ``still_assigned`` ``after_s`` later (see ``RETAKE_FENCED_AFTER_S``). True: it is this
    worker's to take again (a fresh producer: InitProducerId ends what the old one left
    open). The decision publisher's and the audit lanes' rule (review stop 39-Z, Z1: the
    lanes took every fence for another worker's and crashed the worker)."""
    await sleep(after_s)
    return still_assigned()


def fenced_while_assigned(what: str, after_s: float) -> str:
    """The log line of a producer fenced while ``what`` is still assigned here."""
    return (
        f"{what}: producer fenced while still assigned here (another worker took it, or "
        "the transaction coordinator aborted a transaction older than its timeout: the "
        f"broker stalled or unreachable that long); taken again in {after_s:g} s if the "
        "group still assigns it here then"
    )


def retaken_after_a_fence(what: str, after_s: float) -> str:
    """The log line of a fenced ``what`` taken again, still assigned ``after_s`` later."""
    return (
        f"{what}: still assigned {after_s:g} s after its producer was fenced, so fenced by "
        "its transaction coordinator (a transaction older than its timeout), not by "
        "another worker; taken again with a new producer"
    )


def producer_is_broken(producer: AIOKafkaProducer) -> bool:
    """A producer aiokafka put in its fatal state (fenced, or an error it cannot recover
    from outside a transaction): like the Java client's, it can only be closed; the next
    transaction would fail an assertion, not raise a Kafka error. aiokafka has no public
    test of it."""
    manager = producer._txn_manager
    return manager is not None and bool(manager.is_fatal_error())


def retrieve_fatal_error(producer: AIOKafkaProducer) -> None:
    """Take the error aiokafka keeps in its transaction waiter once fatal, which only a
    next transaction would await: a producer dropped with it unread has asyncio log
    "Future exception was never retrieved" when it is collected."""
    transaction_error(producer)  # reading it is taking it


def transaction_error(producer: AIOKafkaProducer) -> BaseException | None:
    """The error aiokafka ended the producer's transaction with (its abortable or fatal
    state), kept in its transaction waiter, which only a commit would raise; None while
    the transaction stands."""
    manager = getattr(producer, "_txn_manager", None)  # aiokafka has no public reading of it
    waiter = getattr(manager, "_transaction_waiter", None)
    if waiter is None or not waiter.done() or waiter.cancelled():
        return None
    return waiter.exception()  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def transaction(producer: AIOKafkaProducer) -> AsyncIterator[None]:
    """``producer.transaction()``, a failure inside it raised as the error aiokafka had
    ended the transaction with, when it had. A request of the transaction the broker
    refuses (the partition a send adds to it: no Write on the topic) moves aiokafka's
    transaction to its abortable error, kept where only the commit reads it; a send
    after it fails aiokafka's own assertion (``assert self.is_in_transaction()``) or
    IllegalOperation, and the abort drops the error unread ("Future exception was never
    retrieved"). A publisher refused the decisions with 200 declarations waiting raised
    the assertion on every lane, and the worker ended 1 without naming the refusal."""
    async with producer.transaction():
        try:
            yield
        except Exception as failure:
            ended = transaction_error(producer)
            if ended is None or ended is failure:
                raise
            raise ended from failure


async def paced(began: float, interval_s: float, *, full: bool) -> float:
    """When a lane's next transaction begins (the loop's clock): ``interval_s`` after its
    last one ``began``, or at once when it is idle that long or already ``full``. A
    transaction costs the broker some five requests and a marker whatever it holds; one
    per record at saturation made the audit lanes and the publisher the busiest of the
    hub's Kafka traffic (stop 33). What arrives meanwhile goes into the next one."""
    loop = asyncio.get_running_loop()
    wait = began + interval_s - loop.time()
    if wait > 0 and not full:
        await asyncio.sleep(wait)
    return loop.time()
