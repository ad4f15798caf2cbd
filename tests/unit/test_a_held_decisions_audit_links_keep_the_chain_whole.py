"""A held decision's audit links keep the chain whole and say only what was published.

A handling that decided holds its records, audit links included, until its table writes
are acknowledged (``delivery.StateFirst``): a worker dying in between leaves neither the
decision nor its ``DECISION`` link, and the record read again decides and links it once.

But the trail's head moved past those links when the handler built them, and the
partition's later links are built on them. When the table write failed (a changelog write
refused: a long leader outage), the held links were never handed to their lane: the
chain had a hole there ("record missing", no restart repairs it), and the record read
again, whose entry the trail already held, sent its decision with no ``DECISION`` link at
all (review stop 38-sf, SF1). Now a held handling whose writes failed hands its links to
the lane all the same while its partition is still this worker's: the case stays in the
worker's store, its refused write is sent again, and the record read again announces the
same decision, the one the link attests. A handling whose partition changed hands hands
no link over: the lane was given up, and reopened after a resync it would take links
built on the old head (a fork); the chain goes on from the tail the next owner read.
"""

from __future__ import annotations

import asyncio

import pytest

from gun_contract.effects import Effects
from gun_contract.security.keystore import AuditSigner, PublicKey
from gun_hub.runtime.delivery import StateFirst, send_outbox
from gun_hub.runtime.ownership import PartitionGivenUp
from gun_hub.security.audit import AuditTrail
from tests.unit.test_audit_chain import Clock, Topic, decision, hub_trail, verify
from tests.unit.test_audit_links_reach_the_topic_in_chain_order import (
    AUDIT,
    DLQ,
    FAST,
    SOURCE,
    Broker,
)

DECISIONS = "gun.hub.decision-outbox"


def handling(trail: AuditTrail, n: int, *, decides: bool) -> Effects:
    """What a handling sends: its decision if it decided, a status and its audit link."""
    outbox = Effects()
    if decides:
        outbox.add(DECISIONS, b"ref", b"decision")
    outbox.add("gun.status", b"ref", b"status")
    for link in trail.append(0, decision(n)):
        outbox.add(AUDIT, None, link, partition=0)
    return outbox


def acknowledged() -> asyncio.Future[None]:
    write: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    write.set_result(None)
    return write


def refused() -> asyncio.Future[None]:
    write: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    write.set_exception(RuntimeError("changelog write refused (KafkaTimeoutError)"))
    return write


def links_on_the_topic(broker: Broker) -> int:
    return sum(record.topic == AUDIT for record in broker.kept)


async def _settled(settling: object) -> str:
    try:
        await settling  # type: ignore[misc]
    except RuntimeError as failure:
        return f"failed: {failure}"
    return "ok"


async def test_a_held_decision_whose_case_write_failed_leaves_no_hole_in_the_chain(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic, broker = Clock(), Topic(), Broker()
    trail, lanes = hub_trail(signer, clock), broker.lanes()
    writes = iter([acknowledged, refused])
    state = StateFirst(DECISIONS, writes=lambda: next(writes)())
    settlings = []
    # A decision (its case written), a decision (its case write refused), a later handling.
    for n, decides in enumerate([True, True, False]):
        outbox = handling(trail, n, decides=decides)
        settlings.append(
            await _settled(
                await send_outbox(
                    broker.send, outbox, SOURCE, DLQ, FAST, links=lanes, state_first=state
                )
            )
        )
        clock.advance(1)
    broker.onto(topic)

    assert settlings[1].startswith("failed")
    assert settlings[::2] == ["ok", "ok"]
    assert [b.describe() for b in verify(topic, public, clock.now).broken] == []
    assert [r.topic for r in broker.kept if r.topic == DECISIONS] == [DECISIONS]  # the first


async def test_the_record_read_again_is_published_with_its_decision_link_on_the_trail(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    """The trail holds the entry already (``AuditTrail.append`` skips it when the record
    is read again): the link the failed handling built is the decision's only one."""
    clock, topic, broker = Clock(), Topic(), Broker()
    trail, lanes = hub_trail(signer, clock), broker.lanes()
    state = StateFirst(DECISIONS, writes=refused)
    failed = await send_outbox(
        broker.send,
        handling(trail, 1, decides=True),
        SOURCE,
        DLQ,
        FAST,
        links=lanes,
        state_first=state,
    )
    with pytest.raises(RuntimeError, match="refused"):
        await failed

    state.writes = acknowledged
    read_again = handling(trail, 1, decides=True)
    assert [r.topic for r in read_again.records if r.topic == AUDIT] == []
    await (
        await send_outbox(
            broker.send, read_again, SOURCE, DLQ, FAST, links=lanes, state_first=state
        )
    )
    broker.onto(topic)

    assert sum(r.topic == DECISIONS for r in broker.kept) == 1
    assert links_on_the_topic(broker) == 1
    assert verify(topic, public, clock.now).intact


async def test_a_decision_link_waits_with_its_decision_for_the_case_write(
    signer: AuditSigner,
) -> None:
    """A worker dying before the broker has the case leaves no link attesting a decision
    that the record read again, deciding from scratch, may make otherwise."""
    clock, broker = Clock(), Broker()
    trail, lanes = hub_trail(signer, clock), broker.lanes()
    case_written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    state = StateFirst(DECISIONS, writes=lambda: case_written)
    settling = await send_outbox(
        broker.send,
        handling(trail, 1, decides=True),
        SOURCE,
        DLQ,
        FAST,
        links=lanes,
        state_first=state,
    )
    settled = asyncio.ensure_future(settling)
    for _ in range(20):
        await asyncio.sleep(0)
    assert (broker.kept, settled.done()) == ([], False)

    case_written.set_result(None)
    await settled
    assert [r.topic for r in broker.kept] == [DECISIONS, "gun.status", AUDIT]


async def test_held_handlings_whose_partition_changed_hands_hand_no_link_to_the_lane(
    signer: AuditSigner,
) -> None:
    """The lane is given up at the revocation; reopened after a resync (the partition
    given straight back), it would put links built on the old head after the tail the
    resync read: a fork."""
    clock, broker = Clock(), Broker()
    trail, lanes = hub_trail(signer, clock), broker.lanes()
    ours = [True]
    case_written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    state = StateFirst(DECISIONS, writes=lambda: case_written, tenure=lambda: lambda: ours[0])
    settlings = [
        await send_outbox(
            broker.send,
            handling(trail, n, decides=n == 0),
            SOURCE,
            DLQ,
            FAST,
            links=lanes,
            state_first=state,
        )
        for n in range(2)
    ]
    ours[0] = False  # revoked (and maybe given straight back: a new generation)
    case_written.set_exception(RuntimeError("changelog write refused"))

    for settling in settlings:
        with pytest.raises(PartitionGivenUp):
            await settling
    assert broker.kept == []
