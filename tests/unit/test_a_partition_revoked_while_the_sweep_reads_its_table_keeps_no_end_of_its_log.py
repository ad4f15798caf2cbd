"""A partition the group revokes while the deadline timer is reading its open cases (the
read yields to the agents every few thousand entries: pipeline/deadlines.py
``DeadlineIndex.read``; or while it ticks an entry that does not read) keeps no end of its
log in this worker: the end is asked after the forgetting, of a partition another worker
holds next, and given back later it would outlive the forgetting as the ends of an
earlier tenure did (tests/unit/test_a_deadline_on_a_partition_given_back_waits_until_its_
log_is_read_again.py; a review of stop 58).

runtime/deadline_sweep.py ``_refresh_progress`` counts the revocations from the moment it
asks the broker only: one that came between the start of the sweep (``run`` looks at
``rebalancing`` once) and that moment is not seen, and the ends the broker gives then are
kept. Worker B sweeps partition 0 while the group revokes it (CITES' responses partition
empty: its end 0); worker A takes it, CITES' answer is read there and A dies before the
case's write reaches the changelog; partition 0 comes back to B, which is revoked nothing
of it this time (it did not hold it). The tick read again there is judged by the end B
asked after its revocation (0: an empty partition reads as read through), and decides a
documentary control for want of the answer waiting in the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

from faust.types import TP

from gun_contract.dead_letter import SourcePosition
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.case import Case
from gun_hub.domain.routing import RoutingTable
from tests.unit.test_a_deadline_on_a_partition_given_back_waits_until_its_log_is_read_again import (
    SweptHub,
)
from tests.unit.test_deadlines_and_lifecycle import REF, TWO_AUTHORITIES
from tests.unit.test_pipeline import SOURCE


class RevokedWhileRead(dict[bytes, bytes]):
    """The open-cases table: the group revokes the partitions while the timer reads it
    (the read yielded to the event loop, where the consumer's rebalance ran)."""

    def __init__(self, table: dict[bytes, bytes]) -> None:
        super().__init__()
        self._table = table
        self.during_read: Callable[[], None] | None = None

    def items(self) -> Iterator[tuple[bytes, bytes]]:  # type: ignore[override]
        for entry in list(self._table.items()):
            if self.during_read is not None:
                self.during_read()
                self.during_read = None
            yield entry

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        return self._table.get(key, default)


async def test_a_partition_revoked_while_the_sweep_reads_its_table_keeps_no_end_of_its_log(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = SweptHub(routing_table, keys_dir)
    table = RevokedWhileRead(hub.open_cases)
    hub.sweep._open_cases = table  # the timer reads the table through the wrapper
    log = hub.worker.consumer
    declarations = (hub.topics.declarations, 0)
    dgal, cites = (hub.topics.responses("dgal"), 0), (hub.topics.responses("cites"), 0)
    sent = hub.intake.handle(TWO_AUTHORITIES, SOURCE)
    hub.answer(sent, "dgal", Verdict.VALID)
    log.ends.update({declarations: 1, dgal: 1})
    log.read.update({declarations: 1, dgal: 1})  # CITES' partition still empty
    hub.now = Case.from_bytes(hub.cases[REF.encode()]).deadline + timedelta(seconds=1)

    # The group revokes partition 0 while the sweep reads the table (app.py,
    # on_partitions_revoked: the sweep told).
    revoked = {TP(topic, p) for topic, p in (declarations, dgal, cites)}
    table.during_read = lambda: hub.sweep.partitions_revoked(revoked)
    await hub.sweep.run()

    # Worker A holds partition 0: CITES' answer is read there, the version decided, and A
    # dies before its case's write is in the changelog. Partition 0 comes back to B (the
    # rebalance revokes nothing of it: B did not hold it); CITES' answer (offset 0) waits
    # in the log, not read again yet.
    hub.sweep.partitions_revoked(set())
    log.ends[cites] = 1
    log.read[cites] = 0
    hub.now += timedelta(seconds=20)

    tick = SourcePosition(hub.topics.deadlines, 0, 0, REF.encode())
    early = hub.deadlines.handle(REF, 1, tick)
    assert hub.decisions(early) == [], (
        "the end of a partition asked while it was being revoked was kept: a tick read on "
        "it once given back decided a documentary control for want of an answer waiting "
        "in the log"
    )
    log.read[cites] = 1
    answered = hub.answer(sent, "cites", Verdict.VALID)
    assert hub.decisions(answered) == [(REF, 1, Outcome.RELEASE)]
