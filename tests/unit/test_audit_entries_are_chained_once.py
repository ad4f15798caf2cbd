"""An entry is chained once, even when the record it comes from is read again
(gun_hub/security/audit.py ``AuditTrail``).

Left open by stop 32: the hub handles records at least once, and a record read again (by
the partition's next owner after a rebalance, or by the offset watchdog) chained its entry
a second time: the same decision, dead letter or officer action twice in the trail. The
chain stayed intact, but an auditor counting decisions counted some twice. The audit
lanes' transactions (stop 33) make it likelier: an event settles, and its record is
committed over, only once its link's transaction is in, up to 250 ms later.

Now a trail remembers the entries of each partition's chain (those of the tail read at a
resync, those it chained since) and chains an entry again only once it has forgotten it.
"""

from __future__ import annotations

import json

from gun_contract.security.keystore import AuditSigner, PublicKey
from tests.unit.test_audit_chain import (
    Clock,
    Topic,
    decision,
    hub_trail,
    verify,
)


def entries(topic: Topic) -> list[str]:
    """The references of the decisions on the trail, in order."""
    return [
        json.loads(r.value)["reference"]
        for r in topic.log
        if json.loads(r.value).get("kind") == "DECISION"
    ]


def test_an_entry_this_worker_chained_is_not_chained_again(
    signer: AuditSigner,
    public: dict[str, PublicKey],
) -> None:
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    topic.publish(0, trail.append(0, decision(1)))
    assert trail.append(0, decision(1)) == []  # its record read again by the watchdog
    topic.publish(0, trail.append(0, decision(2)))
    assert entries(topic) == ["REF00001", "REF00002"]
    assert verify(topic, public, clock.now).intact


def test_an_entry_on_the_tail_is_not_chained_again_by_the_partitions_next_owner(
    signer: AuditSigner,
    public: dict[str, PublicKey],
) -> None:
    """Its link was in, its record not yet committed over when the partition moved."""
    clock, topic = Clock(), Topic()
    former = hub_trail(signer, clock)
    for n in (1, 2):
        topic.publish(0, former.append(0, decision(n)))
    later = hub_trail(signer, clock, {})
    later.resync(0, [r.value for r in topic.log])
    assert later.append(0, decision(2)) == []
    clock.advance(1)
    topic.publish(0, later.append(0, decision(3)))
    assert entries(topic) == ["REF00001", "REF00002", "REF00003"]
    assert verify(topic, public, clock.now).intact


def test_an_entry_whose_link_was_undone_is_chained_when_handled_again(
    signer: AuditSigner,
) -> None:
    """Undone: its handler failed and its outbox was discarded, the link never sent."""
    trail = hub_trail(signer, Clock())
    mark = trail.mark()
    trail.append(0, decision(1))
    trail.undo(mark)
    assert len(trail.append(0, decision(1))) >= 1


def test_an_entry_of_a_partition_given_up_and_not_on_its_tail_is_chained_again(
    signer: AuditSigner,
) -> None:
    """A link cancelled with its lane when the partition was given up never reached the
    trail: the tail read when the partition comes back is what counts."""
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    topic.publish(0, trail.append(0, decision(1)))
    trail.append(0, decision(2))  # cancelled with its lane
    trail.release(0)
    trail.resync(0, [r.value for r in topic.log])
    assert len(trail.append(0, decision(2))) >= 1
    assert trail.append(0, decision(1)) == []


def test_the_same_entry_on_two_partitions_is_chained_on_each(
    signer: AuditSigner,
) -> None:
    trail = hub_trail(signer, Clock())
    assert trail.append(0, decision(1))
    assert trail.append(1, decision(1))


def test_a_trail_remembers_a_bounded_number_of_entries(signer: AuditSigner) -> None:
    """Memory is bounded: an entry read again long after (more entries chained since than
    it remembers) is chained again, a duplicate, never a gap."""
    trail = hub_trail(signer, Clock(), remembered=3)
    for n in range(4):
        trail.append(0, decision(n))
    assert trail.append(0, decision(0))  # forgotten
    assert trail.append(0, decision(3)) == []


def test_a_tail_record_that_is_no_link_is_skipped_not_a_crash(signer: AuditSigner) -> None:
    """Valid JSON that is not an object (found by review in stop 33: every worker taking
    the partition crashed on it, for good, since no owner could append past it)."""
    trail = hub_trail(signer, Clock())
    trail.resync(0, [b"null", b"[]", b"1", b'"x"', b'{"kind": "DECISION"}'])
    assert len(trail.append(0, decision(1))) >= 1
