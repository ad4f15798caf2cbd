"""A decision leaves the worker only once the case that records it is on the broker.

An agent writes a decided case to the cases table (a changelog write, faust's producer)
and hands the decision, its follow-ups, status and fact to the producer (delivery.py).
When the two went out side by side, a worker that died after the broker took the
decision's outbox record and before it took the case's changelog write came back with the
case undecided: the record read again decided the version anew. The publisher publishes
the first outbox record of a (reference, version) and the view keeps the first too, but
the case kept the second, and the quantity follow-up followed the second: a deadline
decision (documentary control, reservations kept) published, then the late answer read
first after the restart (the deadline waits for every answer in the log: answer_progress)
released the version again and wrote its quantities off. The clearance system controls
goods whose quantities are gone (found by the review of stop 38).

Now (``delivery.StateFirst``) the records of a handling that decided wait for its table
writes: a crash in between leaves a decided, unannounced case and no decision, and the
record read again announces the same decision (hub_context.py ``announce_again_if_lost``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects, OutgoingRecord
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.runtime.delivery import StateFirst, send_outbox
from gun_hub.runtime.ownership import PartitionGivenUp
from gun_hub.xml.decision_codec import DecisionCodec
from tests.builders import declaration_xml
from tests.unit.test_delivery import Broker
from tests.unit.test_pipeline import NOW, SOURCE, Hub

REF = "26FR000690I0000012"


async def _let_tasks_run() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def _published(hub: Hub, kept: list[OutgoingRecord]) -> Outcome:
    """The outcome the publisher publishes: the first outbox record of the version."""
    first = next(r for r in kept if r.topic == hub.topics.decision_outbox)
    return DecisionCodec().decode(hub.outbox_document(first)).outcome


def _operations_sent(hub: Hub, kept: list[OutgoingRecord], authority: str) -> list[Operation]:
    topic = hub.topics.requests(authority)
    adapter = hub.envelope(authority)
    return [
        AuthorityRequest.model_validate_json(adapter.open(r.value, topic=topic).payload).operation
        for r in kept
        if r.topic == topic
    ]


async def test_a_version_decided_again_after_a_crash_follows_up_the_decision_published(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub, broker = Hub(routing_table, keys_dir), Broker()
    dlq = hub.topics.dlq
    # The changelog write of the case each handling made, as the worker's state_first sees it.
    case_written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    case_written.set_result(None)
    state = StateFirst(hub.topics.decision_outbox, writes=lambda: case_written)
    asked = hub.intake.handle(declaration_xml(), SOURCE)
    await (await send_outbox(broker.send, asked, SOURCE, dlq, state_first=state))

    # dgal is silent past the deadline: the tick decides a documentary control. The worker
    # dies after handing the decision to the producer and before the broker acknowledged
    # the case's changelog write (it never will: this write is lost with the worker).
    hub.now = NOW + timedelta(seconds=31)
    cases, open_cases = dict(hub.cases), dict(hub.open_cases)
    hub.broker_up = False
    tick = SourcePosition(hub.topics.deadlines, 0, 0)
    timed_out = hub.deadlines.handle(REF, 1, tick)
    assert hub.decisions(timed_out) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    case_written = asyncio.get_running_loop().create_future()  # never acknowledged
    settling = await send_outbox(broker.send, timed_out, tick, dlq, state_first=state)
    await _let_tasks_run()
    settling.close()  # the worker is gone: nobody settles it
    assert [r for r in broker.kept if r.topic == hub.topics.decision_outbox] == []

    # Restarted: the case as the changelog has it (undecided), and dgal's late answer read
    # before the tick is handled again (answers in the log come before a deadline).
    hub.cases.clear()
    hub.cases.update(cases)
    hub.open_cases.clear()
    hub.open_cases.update(open_cases)
    hub.broker_up = True
    state = StateFirst(hub.topics.decision_outbox)  # a new process; its writes acknowledged
    answered = hub.answer(asked, "dgal", Verdict.VALID)
    await (
        await send_outbox(
            broker.send,
            answered,
            SourcePosition("gun.responses.dgal", 0, 0),
            dlq,
            state_first=state,
        )
    )

    published = _published(hub, broker.kept)
    written_off = Operation.WRITE_OFF in _operations_sent(hub, broker.kept, "dgal")
    # What the clearance system acts on and what the quantity ledger did must agree: a
    # released version is written off, a controlled one keeps its reservations.
    assert (published, written_off) in {
        (Outcome.RELEASE, True),
        (Outcome.CONTROL_DOCUMENTARY, False),
    }


DECISIONS = "gun.hub.decision-outbox"


def _outbox(*topics: str) -> Effects:
    outbox = Effects()
    for topic in topics:
        outbox.add(topic, REF.encode(), topic.encode())
    return outbox


async def test_a_partitions_later_records_wait_behind_a_decision_whose_case_is_on_its_way() -> None:
    broker = Broker()
    case_written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    state = StateFirst(DECISIONS, writes=lambda: case_written)
    on_p3, on_p4 = (
        SourcePosition("gun.declarations", 3, 1),
        SourcePosition("gun.declarations", 4, 1),
    )
    decided = await send_outbox(
        broker.send, _outbox("gun.status", DECISIONS), on_p3, "dlq", state_first=state
    )
    state.writes = lambda: asyncio.sleep(0)
    after = await send_outbox(
        broker.send, _outbox("gun.requests.dgal"), on_p3, "dlq", state_first=state
    )
    elsewhere = await send_outbox(
        broker.send, _outbox("gun.status"), on_p4, "dlq", state_first=state
    )
    await elsewhere
    await _let_tasks_run()
    assert [(r.topic, r.partition) for r in broker.kept] == [("gun.status", 4)]

    case_written.set_result(None)
    await asyncio.gather(decided, after)
    assert [r.topic for r in broker.kept[1:]] == ["gun.status", DECISIONS, "gun.requests.dgal"]


async def test_a_decision_whose_case_write_failed_is_never_sent() -> None:
    broker = Broker()
    case_written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    case_written.set_exception(RuntimeError("changelog write refused"))
    state = StateFirst(DECISIONS, writes=lambda: case_written)
    outbox, undone = _outbox(DECISIONS), []
    outbox.if_undelivered.append(lambda: undone.append(True))
    settled = await send_outbox(
        broker.send, outbox, SourcePosition("t", 0, 0), "dlq", state_first=state
    )
    with pytest.raises(RuntimeError, match="refused"):
        await settled
    assert (broker.kept, undone) == ([], [True])


async def test_a_decision_whose_partition_was_lost_while_its_case_was_written_is_not_sent() -> None:
    """The new owner may have restored the case without the decision: it decides it."""
    broker, ours = Broker(), [True]
    state = StateFirst(DECISIONS, tenure=lambda: lambda: ours[0])
    case_written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    state.writes = lambda: case_written
    settled = await send_outbox(
        broker.send, _outbox(DECISIONS), SourcePosition("t", 0, 0), "dlq", state_first=state
    )
    ours[0] = False  # revoked
    case_written.set_result(None)
    with pytest.raises(PartitionGivenUp):
        await settled
    assert broker.kept == []


async def test_records_behind_several_held_decisions_leave_in_the_order_they_were_handled() -> None:
    """One line per partition (review stop 38-sf, SF3): each decision waits for its own
    case write, and whatever was handled after it waits behind it."""
    broker = Broker()
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()
    writes = iter([first, second])
    state = StateFirst(DECISIONS, writes=lambda: next(writes))
    on_p3 = SourcePosition("gun.declarations", 3, 1)
    handled = ["gun.status", DECISIONS, "gun.facts", DECISIONS, "gun.requests.dgal"]
    settlings = [
        await send_outbox(broker.send, _outbox(topic), on_p3, "dlq", state_first=state)
        for topic in handled
    ]
    await settlings[0]  # handled before any decision: not held
    second.set_result(None)  # the later case write first: nothing may overtake the first
    await _let_tasks_run()
    assert [r.topic for r in broker.kept] == ["gun.status"]

    first.set_result(None)
    await asyncio.gather(*settlings[1:])
    assert [r.topic for r in broker.kept] == handled
