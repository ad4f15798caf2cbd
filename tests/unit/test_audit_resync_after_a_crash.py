"""A hub killed between saving its audit head and the broker taking the record (or the
other way round) must not break the chain: the worker that gets the partition goes on
from the last record actually on the audit topic (``AuditTrail.resync``).

Found by the chaos suite: after a SIGKILL, ``audit verify`` reported "record missing".
"""

from __future__ import annotations

from gun_contract.security.keystore import AuditSigner, PublicKey
from tests.unit.test_audit_chain import (
    Clock,
    Topic,
    decision,
    hub_trail,
    run_hub,
    verify,
)


def tail(topic: Topic, partition: int = 0) -> list[bytes]:
    return [r.value for r in topic.log if r.partition == partition][-8:]


def test_a_head_saved_without_its_record_leaves_no_hole(
    signer: AuditSigner,
    public: dict[str, PublicKey],
) -> None:
    clock, topic = Clock(), Topic()
    heads: dict[bytes, bytes] = {}
    trail = hub_trail(signer, clock, heads)
    run_hub(trail, topic, clock, 5)
    trail.append(0, decision(99))  # head saved; killed before the broker took the record
    restarted = hub_trail(signer, clock, heads)
    restarted.resync(0, tail(topic))
    run_hub(restarted, topic, clock, 3)
    report = verify(topic, public, clock.now)
    assert report.intact, [b.describe() for b in report.broken]


def test_a_record_taken_without_its_head_saved_leaves_no_fork(
    signer: AuditSigner,
    public: dict[str, PublicKey],
) -> None:
    clock, topic = Clock(), Topic()
    heads: dict[bytes, bytes] = {}
    trail = hub_trail(signer, clock, heads)
    run_hub(trail, topic, clock, 5)
    saved = dict(heads)
    topic.publish(0, trail.append(0, decision(99)))  # the broker has it...
    heads.clear()
    heads.update(saved)  # ...but the head's changelog write was lost with the worker
    restarted = hub_trail(signer, clock, heads)
    restarted.resync(0, tail(topic))
    run_hub(restarted, topic, clock, 3)
    report = verify(topic, public, clock.now)
    assert report.intact, [b.describe() for b in report.broken]


def test_an_empty_partition_starts_from_the_genesis(
    signer: AuditSigner,
    public: dict[str, PublicKey],
) -> None:
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock, {b"stale": b"x"})
    trail.resync(0, [])
    run_hub(trail, topic, clock, 2)
    assert verify(topic, public, clock.now).intact
