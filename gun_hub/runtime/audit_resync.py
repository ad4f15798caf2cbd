"""Each partition's audit chain goes on from the last record actually on the audit topic.

The head table and the audit records reach the broker separately: a worker killed in
between leaves a head with no record, and a chain going on from it points its next link
at a record never written ("record missing", security/audit.py ``resync``). So at each
assignment, once faust's table recovery is about to resume the partitions (its
``on_rebalance_complete``, which it awaits; not inside the group's assignment callback,
where no heartbeat is sent), the worker reads the tails of its audit partitions, then
opens their lanes (audit_lanes.py). While the broker cannot be asked
(it restarts under the rebalance that follows a kill) they are read again; a worker
that still cannot read them stops (an error here crashes the worker, and it starts
again) rather than go on from the table's head. Found by the full chaos run of stop 31,
which went on from the table's.

Where the highest of the hub's links in a tail is below the table's head, the records
before the tail are read too, from the time that link names (security/audit.py
``look_back_from``): copies of an old link appended by anyone able to write the topic
push the real head out of the tail, and the chain must not go back to that link. The
read is bounded (``LOOK_BACK_RECORDS``, ``LOOK_BACK_TIMEOUT_S``): whoever writes the topic
decides how much lies there; past the bound the chain goes on from what was read, and a
warning names the partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from aiokafka.errors import KafkaError

from gun_contract.kafka.admin import CommittedTail, RecordsRead
from gun_hub.runtime.audit_lanes import BATCH, AuditLaneLost, AuditTakingGivenUp, Retake
from gun_hub.security.audit import held_links_landed

log = logging.getLogger(__name__)

# Reads at most this many times, waiting 0.5 s doubling up to 5 s between them (about 30 s
# of waiting, each read up to READ_TIMEOUT_S): longer than a broker takes to restart.
ATTEMPTS = 9
FIRST_WAIT_S = 0.5
LONGEST_WAIT_S = 5.0
READ_TIMEOUT_S = 10.0  # one read of the tails (a broker that answers does in milliseconds)

# The last records of each partition, oldest first: more than an audit lane sends at once
# (runtime/audit_lanes.py), since a link sent again within a batch may land after the
# links that follow it.
TAIL_RECORDS = 4 * BATCH

# A look back reads at most this many offsets before a tail (some tens of MB of audit
# records), within this time; either way the chain then goes on from what was read.
LOOK_BACK_RECORDS = 100_000
LOOK_BACK_TIMEOUT_S = 30.0

Tails = Callable[[list[int]], Awaitable[dict[int, list[bytes]]]]
# Each partition's tail with the offset where it starts (where a look back ends).
PlacedTails = Callable[[list[int]], Awaitable[Mapping[int, CommittedTail]]]
# A partition's committed records from a time up to an offset (at most
# LOOK_BACK_RECORDS of them: gun_contract/kafka/admin.py ``committed_records_since``).
Earlier = Callable[[int, datetime, int], Awaitable[RecordsRead]]
_Read = TypeVar("_Read")
# How many of a lane's held links a partition's committed tail holds; None: the chain
# went on without them (security/audit.py ``held_links_landed``).
Landed = Callable[[int, Sequence[bytes], Sequence[bytes]], int | None]


class Chains(Protocol):
    def look_back_from(self, partition: int, tail: Sequence[bytes]) -> datetime | None: ...

    def resync(self, partition: int, tail: Sequence[bytes]) -> None: ...


class AuditHeadsUnknown(RuntimeError):
    """The audit topic's tails could not be read: the chains cannot safely go on."""


async def resync_audit_heads(
    read_tails: PlacedTails,
    chains: Chains,
    partitions: Sequence[int],
    *,
    read_earlier: Earlier,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Take each of ``partitions``' chain heads from the audit topic's last records
    (``read_tails``: at most ``TAIL_RECORDS`` of each), with the records before them
    where the chain asks for them (``read_earlier``)."""
    wanted = sorted(partitions)
    tails = await read_tails_patiently(read_tails, wanted, sleep=sleep)
    for partition in wanted:
        tail = tails.get(partition, CommittedTail([], 0))
        since = chains.look_back_from(partition, tail.values)
        earlier = [] if since is None else await look_back(read_earlier, partition, since, tail)
        chains.resync(partition, [*earlier, *tail.values])


async def look_back(
    read_earlier: Earlier, partition: int, since: datetime, tail: CommittedTail
) -> list[bytes]:
    """The committed records of ``partition`` from ``since`` up to where ``tail`` starts;
    what could be read when the bound stops the read (or the broker fails it: the tail
    was read a moment ago, and a worker that stopped here would stop again at each
    restart), with a warning: the chain then goes on as the tail alone says."""
    try:
        async with asyncio.timeout(LOOK_BACK_TIMEOUT_S):
            read = await read_earlier(partition, since, tail.start)
    except (KafkaError, OSError, TimeoutError) as error:
        log.warning(
            "audit partition %d: the records before its last %d (from %s) could not be read "
            "(%s): its chain goes on from the hub's highest link among the last ones, "
            "which copies of an older link may have pushed the real head out of",
            partition,
            len(tail.values),
            since.isoformat(),
            type(error).__name__,
        )
        return []
    if not read.complete:
        log.warning(
            "audit partition %d: more than %d records lie between %s and its last %d; only "
            "the latest %d were read: if the head its table holds is among those left, its "
            "chain goes on from a lower link (copies of an older link may have been "
            "appended to push the real head out: compare with gun-hub audit verify)",
            partition,
            LOOK_BACK_RECORDS,
            since.isoformat(),
            len(tail.values),
            LOOK_BACK_RECORDS,
        )
    return read.values


async def read_tails_patiently(
    read_tails: Callable[[list[int]], Awaitable[_Read]],
    wanted: list[int],
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> _Read:
    """``read_tails(wanted)``, read again while the broker cannot be asked
    (``ATTEMPTS`` times); :class:`AuditHeadsUnknown` when it never could."""
    failure: BaseException | None = None
    for attempt in range(ATTEMPTS):
        if attempt:
            await sleep(min(LONGEST_WAIT_S, FIRST_WAIT_S * 2 ** (attempt - 1)))
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                return await read_tails(wanted)
        except (KafkaError, OSError, TimeoutError) as error:
            failure = error
            log.warning(
                "audit tails of partitions %s not read (%s, attempt %d of %d)",
                wanted,
                type(error).__name__,
                attempt + 1,
                ATTEMPTS,
            )
    named = ", ".join(str(p) for p in wanted)
    raise AuditHeadsUnknown(
        f"the audit topic's last records of partitions {named} could not be read: the "
        "worker stops rather than go on from heads that may have no record"
    ) from failure


def retaker(
    take: Callable[[Sequence[int]], Awaitable[None]],
    read_tails: Tails,
    *,
    landed: Landed = held_links_landed,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Retake:
    """How a lane fenced by its transaction coordinator goes on (audit_lanes.py
    ``retake``; review stop 39-Z, Z1): its partition's producer taken again (a new
    InitProducerId, which fences whoever holds the transactional id and ends the
    transaction the coordinator aborted, or any still open), then the committed tail
    read, which tells how many links of the batch the lane held landed. The chain head in
    memory is not touched: it is the head of the links the lane holds, which go on.
    :class:`AuditLaneLost` when the tail does not lead to them: someone else wrote to the
    chain meanwhile, and they must not be sent."""

    async def retake(partition: int, held: Sequence[bytes]) -> int:
        await take([partition])
        tails = await read_tails_patiently(read_tails, [partition], sleep=sleep)
        count = landed(partition, tails.get(partition, []), held)
        if count is None:
            raise AuditLaneLost(
                partition,
                "the chain on the topic went on without the links this worker holds while "
                "its producer was fenced (another worker wrote to it): they are not sent",
            )
        return count

    return retake


async def take_over_chains(
    partitions: Sequence[int],
    *,
    take: Callable[[Sequence[int]], Awaitable[None]],
    release: Callable[[Sequence[int]], Awaitable[None]],
    resync: Callable[[Sequence[int]], Awaitable[None]],
    open_lanes: Callable[[Sequence[int]], None],
    rebalances: Callable[[], object],
    since: object,
) -> bool:
    """Take ``partitions``' chains over: their producers first (fencing any former owner,
    ending its open transaction), then their heads from the tails, then their lanes.
    False, the lanes not opened and the producers let go, when a rebalance came meanwhile
    (``rebalances`` no longer what it was, ``since``, when the assignment was noted: a
    revocation's give-up may have run in between, found by review in stop 33; faust's
    recovery of an assignment goes on after a revocation and still announces its end);
    its own assignment takes them over again. The revocation's give-up also gives a
    taking under way up (``AuditTakingGivenUp``; found by review, stop 36): one given up
    with no rebalance noted is raised."""
    if rebalances() != since:
        return False
    try:
        await take(partitions)
    except AuditTakingGivenUp:
        if rebalances() == since:
            raise
    if rebalances() == since:
        await resync(partitions)
        if rebalances() == since:
            open_lanes(partitions)
            return True
    await release(partitions)
    return False
