"""What the hub's transactional producers share: the decision publisher's (one per outbox
partition, publisher.py) and the audit lanes' (one per audit partition, audit_lanes.py).
"""

from __future__ import annotations

import asyncio

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
    manager = producer._txn_manager
    waiter = getattr(manager, "_transaction_waiter", None)
    if waiter is not None and waiter.done() and not waiter.cancelled():
        waiter.exception()


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
