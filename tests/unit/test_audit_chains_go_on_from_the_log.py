"""Each partition's audit chain goes on from the last record actually on the audit topic,
read at assignment, never from a head the table may hold without its record
(gun_hub/runtime/audit_resync.py).

The head table and the audit records reach the broker separately: a worker killed in
between leaves a head with no record. The full chaos run of stop 31 (a hub killed, then
a broker restart under the rebalance that followed) broke the chain ("record missing"
at one sequence number): the tails could not be read while the broker restarted, the
worker went on from the table's head, and its next link pointed at a record that was
never written. Now the tails are read again until the broker answers, and a worker
that cannot read them stops rather than break the chain.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from aiokafka.errors import KafkaConnectionError

from gun_hub.runtime.audit_resync import AuditHeadsUnknown, resync_audit_heads


class Chains:
    def __init__(self) -> None:
        self.resynced: dict[int, list[bytes]] = {}

    def resync(self, partition: int, tail: Sequence[bytes]) -> None:
        self.resynced[partition] = list(tail)


class Broker:
    """Unreachable for the first ``down_for`` reads of the tails."""

    def __init__(self, down_for: int) -> None:
        self.down_for = down_for
        self.reads = 0

    async def tails(self, partitions: list[int]) -> dict[int, list[bytes]]:
        self.reads += 1
        if self.reads <= self.down_for:
            raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9092)]")
        return {p: [f"link {p}".encode()] for p in partitions}


async def no_wait(_seconds: float) -> None:
    return None


async def test_tails_unreadable_while_the_broker_restarts_are_read_again() -> None:
    chains, broker = Chains(), Broker(down_for=3)
    await resync_audit_heads(broker.tails, chains, [0, 2], sleep=no_wait)
    assert chains.resynced == {0: [b"link 0"], 2: [b"link 2"]}
    assert broker.reads == 4


async def test_a_worker_that_cannot_read_the_tails_stops_rather_than_break_the_chain() -> None:
    chains, broker = Chains(), Broker(down_for=1000)
    with pytest.raises(AuditHeadsUnknown, match="partitions 0, 1"):
        await resync_audit_heads(broker.tails, chains, [0, 1], sleep=no_wait)
    assert chains.resynced == {}  # never the table's head: the worker stops
    assert 1 < broker.reads < 1000  # tried for a while, not for ever
