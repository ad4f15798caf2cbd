"""Issue 10, defect 10: a deadline never fires while answers wait unread in the log.

After a restart longer than the deadline, the answers the adapters wrote while the hub
was away must win over the deadline ticks. The hub knows, per response partition, how far
it has read and where the log ended when the deadline sweep last asked; a case times out
only once every response partition of its partition has been read to that end.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.topics import topic_registry
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.answer_progress import AnswerProgress, inputs_of
from tests.builders import declaration_xml
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import REF, at

DGAL = "gun.responses.dgal"


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: object) -> Hub:
    return Hub(routing_table, keys_dir)  # type: ignore[arg-type]


def test_a_partition_is_read_once_every_record_up_to_its_reported_end_is() -> None:
    progress = AnswerProgress()
    progress.set_end(DGAL, 0, 5)
    assert not progress.read_to_end(DGAL, 0)  # five answers waiting
    progress.set_read_up_to(DGAL, 0, 4)
    assert not progress.read_to_end(DGAL, 0)
    progress.set_read_up_to(DGAL, 0, 5)
    assert progress.read_to_end(DGAL, 0)
    progress.set_end(DGAL, 0, 6)  # a new answer arrived since
    assert not progress.read_to_end(DGAL, 0)


def test_an_empty_partition_or_one_read_before_a_restart_hides_nothing() -> None:
    progress = AnswerProgress()
    progress.set_end(DGAL, 1, 0)
    assert progress.read_to_end(DGAL, 1)
    progress.set_end(DGAL, 2, 8)
    progress.set_read_up_to(DGAL, 2, 8)  # restarted, nothing new since the commit
    assert progress.read_to_end(DGAL, 2)


def test_an_answer_handled_past_but_never_handled_itself_keeps_the_partition_unread() -> None:
    """faust dropped the answer at offset 3 and went on: the consumer's first unsettled
    offset stays at 3 (tests/unit/test_commit_only_past_handled_records.py)."""
    progress = AnswerProgress()
    progress.set_end(DGAL, 0, 6)
    progress.set_read_up_to(DGAL, 0, 3)  # 4 and 5 handled, 3 not
    assert not progress.read_to_end(DGAL, 0)


def test_an_unknown_end_hides_possible_answers() -> None:
    assert not AnswerProgress().read_to_end(DGAL, 0)


def test_a_deadline_tick_waits_while_answers_are_unread(hub: Hub) -> None:
    sent = hub.intake.handle(declaration_xml(), at(0))
    hub.now += timedelta(seconds=3600)  # the hub was down for an hour
    hub.answers_read = False  # the adapter's answer sits unread in gun.responses.dgal
    early = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 0))
    assert hub.decisions(early) == []
    assert REF.encode() in hub.open_cases  # ticked again by a later sweep
    hub.answers_read = True
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]


def test_a_partner_asked_again_after_a_restart_gets_a_whole_deadline_to_answer(hub: Hub) -> None:
    """The short chaos run: a hub back after its deadlines passed reads a declaration
    again and asks the partner again; a tick 2 s later decided by deadline while the
    partner's answer to that request was on its way (written 1.9 s before the decision).
    Asked again, the partner has the whole deadline again."""
    hub.broker_up = False  # killed before its requests reached the broker
    hub.intake.handle(declaration_xml(), at(0))
    hub.broker_up = True
    hub.now += timedelta(seconds=3600)  # back an hour later
    again = hub.intake.handle(declaration_xml(), at(0))  # read again: asked again
    hub.now += timedelta(seconds=2)
    tick = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 0))
    assert hub.decisions(tick) == []
    assert hub.decisions(hub.answer(again, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]


def test_a_partner_silent_after_being_asked_again_is_timed_out_a_deadline_later(hub: Hub) -> None:
    hub.intake.handle(declaration_xml(), at(0))
    hub.now += timedelta(seconds=3600)
    hub.intake.handle(declaration_xml(), at(0))
    hub.now += timedelta(seconds=31)  # request_deadline_s is 30 here
    tick = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 0))
    assert hub.decisions(tick) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]


def test_a_case_waits_for_its_declarations_partition_as_for_its_answers(
    routing_table: RoutingTable,
) -> None:
    """A CANCELLED version read again after a restart sends its DELETE again: its case
    must not time out before that record is read (the chaos run's held reservations)."""
    topics = topic_registry("gun", routing_table.authorities)
    inputs = inputs_of(topics, 3)
    assert ("gun.declarations", 3) in inputs
    assert {("gun.responses." + a, 3) for a in routing_table.authorities} <= set(inputs)
    progress = AnswerProgress()
    for topic, partition in inputs:
        progress.set_end(topic, partition, 10)
        progress.set_read_up_to(topic, partition, 10)
    progress.set_read_up_to("gun.declarations", 3, 9)  # the cancellation, read again soon
    assert not progress.all_read(inputs)
    progress.set_read_up_to("gun.declarations", 3, 10)
    assert progress.all_read(inputs)
