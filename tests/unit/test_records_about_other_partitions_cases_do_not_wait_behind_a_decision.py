"""Which records wait behind a decision held until its case is on the broker.

A handling that decided holds its records until its table writes are acknowledged, and
its partition's later records wait behind them (``delivery.StateFirst``). The hold was
keyed by the partition number alone, across every topic: a claims verdict read on claims
partition 3, admitting a declaration of partition 1, waited behind a decision held on
responses partition 3, though nothing orders the two, and the admission and decision of
that declaration with it (review stop 38-sf, SF2). The claims topic's records concern
the cases of other partitions: its partitions have lines of their own now.

The topics co-partitioned with the cases (declarations, each authority's responses,
deadlines, dead letters, operator actions) still share their partition's line: each
builds links on the audit chain of that partition, and a link built after a held one
must not reach the lane before it.

A line is forgotten once its records are queued (SF4): nothing of a partition's last
records, sealed decisions included, stays referenced until the partition is handled
again.
"""

from __future__ import annotations

import asyncio

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.security.keystore import AuditSigner, PublicKey
from gun_hub.runtime.delivery import StateFirst, send_outbox
from tests.unit.test_audit_chain import Clock, Topic, decision, hub_trail, verify
from tests.unit.test_audit_links_reach_the_topic_in_chain_order import AUDIT, DLQ, FAST, Broker

DECISIONS = "gun.hub.decision-outbox"
CLAIMS = "gun.hub.claims"


async def _let_tasks_run() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_claims_verdict_does_not_wait_for_a_decision_on_its_partition_number() -> None:
    broker = Broker()
    case_written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    state = StateFirst(DECISIONS, writes=lambda: case_written, held_apart=frozenset({CLAIMS}))
    decided = Effects()
    decided.add(DECISIONS, b"ref", b"decision")
    held = await send_outbox(
        broker.send, decided, SourcePosition("gun.responses.dgal", 3, 10), DLQ, state_first=state
    )
    verdict = Effects()
    verdict.add(CLAIMS, b"msgid", b"verdict", partition=1)  # to the declaration's partition
    settled = await send_outbox(
        broker.send, verdict, SourcePosition(CLAIMS, 3, 99), DLQ, state_first=state
    )
    await asyncio.wait_for(settled, timeout=5)  # waiting for the decision: a timeout
    assert [r.topic for r in broker.kept] == [CLAIMS]

    case_written.set_result(None)
    await held
    assert [r.topic for r in broker.kept] == [CLAIMS, DECISIONS]


async def test_a_dead_letters_audit_link_waits_behind_the_decision_link_held_on_its_chain(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    """The audit keeper chains a security dead letter read on dead-letter partition 0
    onto chain 0, after a decision held on declarations partition 0."""
    clock, topic, broker = Clock(), Topic(), Broker()
    trail, lanes = hub_trail(signer, clock), broker.lanes()
    case_written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    state = StateFirst(DECISIONS, writes=lambda: case_written, held_apart=frozenset({CLAIMS}))
    decided = Effects()
    decided.add(DECISIONS, b"ref", b"decision")
    for link in trail.append(0, decision(1)):
        decided.add(AUDIT, None, link, partition=0)
    held = await send_outbox(
        broker.send,
        decided,
        SourcePosition("gun.declarations", 0, 5),
        DLQ,
        FAST,
        links=lanes,
        state_first=state,
    )
    clock.advance(1)
    rejection = Effects()
    for link in trail.append(0, {"kind": "SECURITY_REJECTION", "rejection": "UNLISTED"}):
        rejection.add(AUDIT, None, link, partition=0)
    behind = await send_outbox(
        broker.send,
        rejection,
        SourcePosition(DLQ, 0, 8),
        DLQ,
        FAST,
        links=lanes,
        state_first=state,
    )
    await _let_tasks_run()
    assert broker.kept == []

    case_written.set_result(None)
    await asyncio.gather(held, behind)
    broker.onto(topic)
    assert [b.describe() for b in verify(topic, public, clock.now).broken] == []


async def test_a_partitions_line_is_forgotten_once_its_records_are_queued() -> None:
    broker = Broker()
    case_written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    state = StateFirst(DECISIONS, writes=lambda: case_written)
    decided = Effects()
    decided.add(DECISIONS, b"ref", b"decision")
    held = await send_outbox(
        broker.send, decided, SourcePosition("gun.declarations", 2, 1), DLQ, state_first=state
    )
    assert state.holding() == 1

    case_written.set_result(None)
    await held
    assert state.holding() == 0
