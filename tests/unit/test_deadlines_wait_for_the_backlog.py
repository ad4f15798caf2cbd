"""Issue 10, defect 10: a deadline never fires while answers wait unread in the log.

After a restart longer than the deadline, the answers already written by the adapters
must win over the deadline ticks. The hub knows, per response partition, how far it has
read (offset and the broker time of the last record) and where the log ends; a case
times out only once every response partition of its partition has been read past its
deadline, or to its end.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from gun_hub.dead_letter import SourcePosition
from gun_hub.model.verdicts import Outcome, Verdict
from gun_hub.pipeline.answer_progress import AnswerProgress
from gun_hub.routing import RoutingTable
from tests.builders import declaration_xml
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import REF, at

DGAL = "gun.responses.dgal"


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: object) -> Hub:
    return Hub(routing_table, keys_dir)  # type: ignore[arg-type]


def test_progress_is_read_up_to_a_time_once_a_later_record_was_processed() -> None:
    progress = AnswerProgress()
    progress.set_end(DGAL, 0, 10)
    assert not progress.read_until(DGAL, 0, 1000.0)  # nothing read yet, records waiting
    progress.processed(DGAL, 0, offset=3, accepted_at=999.0)
    assert not progress.read_until(DGAL, 0, 1000.0)
    progress.processed(DGAL, 0, offset=4, accepted_at=1000.5)
    assert progress.read_until(DGAL, 0, 1000.0)


def test_progress_at_the_end_of_the_log_is_read_whatever_the_time() -> None:
    progress = AnswerProgress()
    progress.set_end(DGAL, 1, 0)
    assert progress.read_until(DGAL, 1, 1e12)  # an empty partition hides nothing
    progress.set_end(DGAL, 2, 8)
    progress.set_committed(DGAL, 2, 8)
    assert progress.read_until(DGAL, 2, 1e12)  # restarted, nothing new since the commit
    progress.set_end(DGAL, 2, 9)
    assert not progress.read_until(DGAL, 2, 1e12)


def test_an_unknown_end_hides_possible_answers() -> None:
    assert not AnswerProgress().read_until(DGAL, 0, 0.0)


def test_a_deadline_tick_waits_while_answers_are_unread(hub: Hub) -> None:
    sent = hub.intake.handle(declaration_xml(), at(0))
    hub.now += timedelta(seconds=3600)  # the hub was down for an hour
    hub.answers_read = False  # the adapter's answer sits unread in gun.responses.dgal
    early = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 0))
    assert hub.decisions(early) == []
    assert REF.encode() in hub.open_cases  # ticked again by a later sweep
    hub.answers_read = True
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]
