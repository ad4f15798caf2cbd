"""A worker taking a partition over never goes back to an old link of the hub's because
copies of it fill the tail it reads (security/audit.py ``look_back_from``,
runtime/audit_resync.py ``resync_audit_heads``; found by review).

The resync goes on from the highest of the hub's own links among the last
``TAIL_RECORDS`` records of the partition. Anyone able to write ``gun.audit`` could append
``TAIL_RECORDS`` exact copies of a genuine link from the past (MAC and all) after the real
head: the next owner went on from that link, forking the chain, and once its branch
passed the real head ``audit verify`` called the genuine links above the copied one
orphans left by a crash, and exited 0. On a chain upgraded from before MACs, copies of a
forged link without a MAC, below the place where MACs began, were even taken as the hub's.

Now, when the highest of the hub's links in the tail is below the head the worker's table
holds, the records before the tail are read too (from the time the link names, or as far
back as the read's bound goes for a link without a MAC): the real head is found after the
original of the copied link. When the links above it really never landed (a worker killed
before its lane's transaction committed), nothing above it is found, and the chain goes on
from the last link that landed, as before.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gun_contract.kafka.admin import CommittedTail, RecordsRead
from gun_contract.security.keystore import AuditSigner, PublicKey
from gun_hub.runtime.audit_resync import LOOK_BACK_RECORDS, TAIL_RECORDS, resync_audit_heads
from gun_hub.security.audit import (
    FROM_THE_START,
    LOOK_BACK_MARGIN_S,
    AuditTrail,
    canonical,
)
from tests.unit.test_audit_resync_goes_on_from_the_hubs_own_links import (
    decision,
    forged_after,
    former_version_log,
    verify,
    worker,
)


class AuditPartition:
    """Partition 0 of the audit topic as a resync reads it: committed records, each with
    the time its producer stamped, found by time as the broker's index finds them."""

    def __init__(self) -> None:
        self.records: list[tuple[datetime, bytes]] = []
        self.looked_back: list[tuple[datetime, int]] = []
        self.most = LOOK_BACK_RECORDS

    def written_by_the_hub(self, values: list[bytes]) -> None:
        """Stamped when sent, a moment after the worker built each link."""
        for value in values:
            self.records.append((datetime.fromisoformat(json.loads(value)["at"]), value))

    def written_by_anyone(self, values: list[bytes]) -> None:
        now = datetime.now(UTC) + timedelta(hours=1)  # later than anything the hub wrote
        self.records += [(now, value) for value in values]

    def values(self) -> list[bytes]:
        return [value for _, value in self.records]

    async def tails(self, partitions: list[int]) -> dict[int, CommittedTail]:
        start = max(0, len(self.records) - TAIL_RECORDS)
        return {0: CommittedTail(self.values()[start:], start)} if 0 in partitions else {}

    async def earlier(self, partition: int, since: datetime, until: int) -> RecordsRead:
        assert partition == 0
        self.looked_back.append((since, until))
        first = next((n for n, (at, _) in enumerate(self.records) if at >= since), until)
        complete = until - first <= self.most
        first = max(first, until - self.most)
        return RecordsRead(self.values()[first:until], complete)


async def taken_over(
    signer: AuditSigner, heads: dict[bytes, bytes], log: AuditPartition
) -> AuditTrail:
    """The next owner of partition 0, its chain resynced as the hub resyncs it."""
    successor = worker(signer, heads)
    await resync_audit_heads(log.tails, successor, [0], read_earlier=log.earlier)
    return successor


def links(values: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(value) for value in values]


async def test_copies_of_an_old_genuine_link_do_not_take_the_chain_back(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    heads: dict[bytes, bytes] = {}
    first = worker(signer, heads)
    log = AuditPartition()
    log.written_by_the_hub([r for n in range(50) for r in first.append(0, decision(n))])
    real_head = links(log.values())[-1]
    copied = log.values()[2]  # a genuine link, MAC and all, far below the head
    log.written_by_anyone([copied] * TAIL_RECORDS)

    successor = await taken_over(signer, heads, log)
    after = successor.append(0, decision(50))
    [link, *_] = links(after)

    assert (link["seq"], link["prev"]) == (real_head["seq"] + 1, real_head["hash"])
    log.written_by_the_hub(after)
    report = verify(log.values(), public)  # copies are one record to the auditor
    assert report.intact, [b.describe() for b in report.broken]
    assert report.orphans == 0


async def test_copies_of_a_forged_link_from_before_macs_are_not_the_hubs(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    """A chain upgraded from before MACs: copies of a link without a MAC, below the place
    where MACs began, filling the tail, were taken as the hub's own."""
    former = former_version_log(3)
    last_former = json.loads(former[-1])
    heads = {b"audit-head/0": f"v2|3|{last_former['hash']}|3|0".encode()}
    upgraded = worker(signer, heads)
    upgraded.resync(0, former)
    log = AuditPartition()
    log.written_by_the_hub(former)
    log.written_by_the_hub([r for n in range(3, 40) for r in upgraded.append(0, decision(n))])
    real_head = links(log.values())[-1]
    forged = canonical(forged_after(json.loads(former[1])))  # seq 3, no MAC
    log.written_by_anyone([forged] * TAIL_RECORDS)

    successor = await taken_over(signer, heads, log)
    [link, *_] = links(successor.append(0, decision(40)))

    assert (link["seq"], link["prev"]) == (real_head["seq"] + 1, real_head["hash"])
    # Read as far back as the bound goes: the link's time is anybody's.
    assert [since for since, _ in log.looked_back] == [FROM_THE_START]


async def test_links_that_never_landed_leave_the_chain_on_the_last_that_did(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    """The table is ahead of the log (a worker killed before its lane's transaction
    committed): the look back finds nothing above the tail's highest link, and the chain
    goes on from it, leaving no hole."""
    heads: dict[bytes, bytes] = {}
    first = worker(signer, heads)
    log = AuditPartition()
    log.written_by_the_hub([r for n in range(TAIL_RECORDS) for r in first.append(0, decision(n))])
    landed = links(log.values())[-1]
    for n in range(TAIL_RECORDS, TAIL_RECORDS + 5):
        first.append(0, decision(n))  # its head saved; its records never committed

    successor = await taken_over(signer, heads, log)
    after = successor.append(0, decision(TAIL_RECORDS + 5))
    [link, *_] = links(after)

    assert (link["seq"], link["prev"]) == (landed["seq"] + 1, landed["hash"])
    [(since, until)] = log.looked_back
    assert until == len(log.records) - TAIL_RECORDS  # up to where the tail starts
    assert since == datetime.fromisoformat(landed["at"]) - timedelta(seconds=LOOK_BACK_MARGIN_S)
    log.written_by_the_hub(after)
    report = verify(log.values(), public)
    assert report.intact, [b.describe() for b in report.broken]


async def test_a_tail_that_holds_the_tables_head_is_enough(signer: AuditSigner) -> None:
    heads: dict[bytes, bytes] = {}
    first = worker(signer, heads)
    log = AuditPartition()
    log.written_by_the_hub([r for n in range(TAIL_RECORDS) for r in first.append(0, decision(n))])
    head = links(log.values())[-1]

    assert first.look_back_from(0, log.values()[-TAIL_RECORDS:]) is None
    successor = await taken_over(signer, heads, log)
    [link, *_] = links(successor.append(0, decision(TAIL_RECORDS)))

    assert log.looked_back == []
    assert (link["seq"], link["prev"]) == (head["seq"] + 1, head["hash"])


async def test_a_look_back_stopped_by_its_bound_says_so_and_goes_on_from_what_it_read(
    signer: AuditSigner, caplog: pytest.LogCaptureFixture
) -> None:
    heads: dict[bytes, bytes] = {}
    first = worker(signer, heads)
    log = AuditPartition()
    log.written_by_the_hub([r for n in range(30) for r in first.append(0, decision(n))])
    log.written_by_anyone([log.values()[2]] * TAIL_RECORDS)
    log.most = 5  # fewer than lie between the copied link and the tail

    with caplog.at_level(logging.WARNING):
        successor = await taken_over(signer, heads, log)

    assert "audit partition 0: more than" in caplog.text
    read = links(log.values()[-TAIL_RECORDS - 5 : -TAIL_RECORDS])
    highest = max(read, key=lambda r: r["seq"])
    [link, *_] = links(successor.append(0, decision(30)))
    assert link["prev"] == highest["hash"]


def test_the_copied_links_own_time_says_where_to_read_from(signer: AuditSigner) -> None:
    """Its MAC covers its time: the original lies at or after it, in the log."""
    heads: dict[bytes, bytes] = {}
    first = worker(signer, heads)
    log = [r for n in range(20) for r in first.append(0, decision(n))]
    copied = json.loads(log[2])
    trail = worker(signer, heads)
    since = trail.look_back_from(0, [log[2]] * TAIL_RECORDS)
    assert since == datetime.fromisoformat(copied["at"]) - timedelta(seconds=LOOK_BACK_MARGIN_S)
