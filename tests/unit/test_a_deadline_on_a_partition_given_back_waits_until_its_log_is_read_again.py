"""A deadline tick read on a partition the group has given back to this worker waits until
the worker has read that partition's log through again: it is not judged by how far the
log ended when this worker last held it.

pipeline/answer_progress.py: "a case may time out only once its inputs ... have been read
to the end the broker last reported (the deadline sweep asks for it just before
ticking)". The worker kept those ends across a rebalance. Worker B sweeps partition 0 and
ticks version 1 (CITES' responses partition empty then); the group gives partition 0 to
worker A, where CITES' answer is read and the version released, and A dies before the
case's write reached the changelog (its decision never leaves: runtime/delivery.py
``StateFirst``). Partition 0 comes back to B: its consumer starts again from the offset
committed (strict_consumer.py ``_forget_partitions``), CITES' answer is in the log, not
read again yet, and the tick is read again. Judged against the end B saw before (0: an
empty partition reads as read through), the tick decided a documentary control for want
of an answer waiting in the log: a degraded decision in place of the release made, which
the hub after a restart avoids (docs/decisions.md, "Decided again": the late answer is read
first and releases). Two workers' sweeps ticked the one version; the one decision must be
the answer's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from faust.types import TP

from gun_contract.dead_letter import SourcePosition
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.case import Case
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.answer_progress import AnswerProgress
from gun_hub.pipeline.deadlines import DeadlineIndex
from gun_hub.runtime.deadline_sweep import DeadlineSweep
from tests.deadline_fixtures import Assignor, TickProducer, holding
from tests.unit.test_deadlines_and_lifecycle import REF, TWO_AUTHORITIES
from tests.unit.test_pipeline import SOURCE, Hub


@dataclass
class Log:
    """Each input partition's end and first unsettled offset, as the broker and the
    worker's consumer report them (an input never mentioned: empty)."""

    ends: dict[tuple[str, int], int] = field(default_factory=dict)
    read: dict[tuple[str, int], int] = field(default_factory=dict)

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.ends.get((tp.topic, tp.partition), 0) for tp in tps}

    def first_unsettled(self, tp: TP) -> int:
        return self.read.get((tp.topic, tp.partition), 0)


@dataclass
class Worker:
    """Worker B as its deadline timer sees it: holding partition 0."""

    consumer: Log = field(default_factory=Log)
    producer: TickProducer = field(default_factory=TickProducer)
    assignor: Assignor = field(default_factory=lambda: holding(0))
    rebalancing: bool = False
    in_recovery: bool = False


class SweptHub(Hub):
    """The hub's steps judging what is read as the worker does: by its deadline timer
    (runtime/deadline_sweep.py ``answers_read``, which app.py gives to HubContext)."""

    def __init__(self, routing: RoutingTable, keys_dir: Path) -> None:
        super().__init__(routing, keys_dir)
        self.worker = Worker()
        self.sweep = DeadlineSweep(
            self.worker,
            self.topics,
            self.open_cases,
            AnswerProgress(),
            DeadlineIndex(),
            lambda: self.now.timestamp(),
        )

    def _answers_read(self, partition: int, authorities: Collection[str] | None = None) -> bool:
        return self.sweep.answers_read(partition, authorities)


async def test_a_deadline_on_a_partition_given_back_waits_until_its_log_is_read_again(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = SweptHub(routing_table, keys_dir)
    log = hub.worker.consumer
    declarations = (hub.topics.declarations, 0)
    dgal, cites = (hub.topics.responses("dgal"), 0), (hub.topics.responses("cites"), 0)
    sent = hub.intake.handle(TWO_AUTHORITIES, SOURCE)
    hub.answer(sent, "dgal", Verdict.VALID)
    log.ends.update({declarations: 1, dgal: 1})
    log.read.update({declarations: 1, dgal: 1})  # CITES' partition still empty
    hub.now = Case.from_bytes(hub.cases[REF.encode()]).deadline + timedelta(seconds=1)
    await hub.sweep.run()
    [(key, version, partition)] = hub.worker.producer.sent  # the tick, not handled yet
    assert (key, version, partition) == (REF.encode(), b"1", 0)

    # The group gives partition 0 to worker A, where CITES' answer is read and the
    # version decided; A dies before its case's write is in the changelog. Partition 0
    # comes back: B's consumer starts again from the offsets committed, and CITES'
    # answer (offset 0) waits in the log, not read again yet.
    # The worker told of the revocation (app.py, on_partitions_revoked) ...
    hub.sweep.partitions_revoked({TP(topic, p) for topic, p in (declarations, dgal, cites)})
    # ... and given the partition back.
    log.ends[cites] = 1
    log.read[cites] = 0
    hub.now += timedelta(seconds=20)

    tick = SourcePosition(hub.topics.deadlines, 0, 0, REF.encode())
    early = hub.deadlines.handle(REF, 1, tick)
    assert hub.decisions(early) == [], (
        "a tick read again on a partition given back was judged by where the log ended "
        "before: a documentary control for want of an answer waiting in the log"
    )
    log.read[cites] = 1
    answered = hub.answer(sent, "cites", Verdict.VALID)
    assert hub.decisions(answered) == [(REF, 1, Outcome.RELEASE)]
    assert hub.deadlines.handle(REF, 1, tick).records == []


def test_what_a_worker_saw_of_a_partition_it_lost_is_known_no_more() -> None:
    progress = AnswerProgress()
    cites = "gun.responses.cites"
    progress.set_end(cites, 0, 0)  # empty when it looked: read through, whatever it holds
    progress.set_end(cites, 1, 4)
    progress.set_read_up_to(cites, 1, 4)
    progress.set_end(cites, 2, 4)
    progress.set_read_up_to(cites, 2, 4)
    progress.forget([(cites, 0), (cites, 1)])
    assert not progress.read_to_end(cites, 0)
    assert not progress.read_to_end(cites, 1)
    assert progress.read_to_end(cites, 2)  # still held


@dataclass
class HeldLog(Log):
    """A log whose ends come back only when the test lets them (a broker slow to answer
    while the group rebalances)."""

    asked: asyncio.Event = field(default_factory=asyncio.Event)
    answer: asyncio.Event = field(default_factory=asyncio.Event)

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        self.asked.set()
        await self.answer.wait()
        return await super().highwaters(*tps)


async def test_ends_asked_before_a_revocation_and_answered_after_it_are_not_kept(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """A sweep under way asks the broker where the logs end; the group revokes the
    partitions before the answer comes: what the broker said is not kept (it would
    outlive the forgetting), and nothing is ticked on it."""
    hub = SweptHub(routing_table, keys_dir)
    log = hub.worker.consumer = HeldLog()
    hub.intake.handle(TWO_AUTHORITIES, SOURCE)
    hub.now = Case.from_bytes(hub.cases[REF.encode()]).deadline + timedelta(seconds=1)
    sweeping = asyncio.ensure_future(hub.sweep.run())
    await log.asked.wait()
    declarations = TP(hub.topics.declarations, 0)
    hub.sweep.partitions_revoked({declarations})  # the group rebalances meanwhile
    log.answer.set()
    await sweeping
    assert hub.worker.producer.sent == []
    assert not hub.sweep.answers_read(0, ["dgal", "cites"])
