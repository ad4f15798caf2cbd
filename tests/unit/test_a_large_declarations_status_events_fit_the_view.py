"""Every status event the hub writes fits what the view reads, whatever the declaration
the contract allows: the trader of a declaration with thousands of documents sees
``WRITTEN_OFF`` like the trader of one with a single document.

Found by review stop 40-W (W1): a follow-up's status event listed every document it
answered ("WRITE_OFF: N853 CHEDP...: VALID, ..."), 70 kB for 1,998 documents, 210 kB for
the 1 MiB declaration; the view skips a status value over 64 KiB as no record of ours, so
the trader's lookup stayed at FOLLOW_UP_SENT with no ``quantities`` for good. The limit is
now stated once (``gun_contract.limits.MAX_STATUS_EVENT_BYTES``), the hub bounds each
event's detail to fit, and the view reads up to it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.limits import MAX_STATUS_EVENT_BYTES
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind, bounded_detail
from gun_hub.ops.view import FeedTopics, OpsView
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_a_stage_whose_own_operation_is_a_follow_up_reports_it import Feeder
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import REF, at

ITEMS = 999  # the contract's most goods items, two certificates each


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


@pytest.fixture
def view(hub: Hub, tmp_path: Path) -> OpsView:
    topics = hub.topics
    return OpsView(
        tmp_path / "view.sqlite3",
        FeedTopics(topics.status, topics.facts, topics.dlq, topics.ops_health),
    )


def many_documents(version: int, stage: Stage) -> bytes:
    return declaration_xml(
        version=version,
        stage=stage,
        items=tuple(
            goods_item(
                n,
                tuple(
                    document("N853", f"CHEDP.FR.2026.{n:04d}{k}{'0' * 12}", 1, "1", "KGM")
                    for k in (1, 2)
                ),
            )
            for n in range(1, ITEMS + 1)
        ),
    )


def test_the_write_off_of_two_thousand_documents_reaches_the_traders_status(
    hub: Hub, view: OpsView
) -> None:
    feed = Feeder(hub, view)
    lodged = hub.intake.handle(many_documents(1, Stage.LODGED), at(0))
    hub.now += timedelta(seconds=31)
    held = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 0))
    assert hub.decisions(held) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    after = hub.intake.handle(many_documents(2, Stage.RELEASED_AFTER_CONTROL), at(1))
    decided = hub.answer(after, "dgal", Verdict.VALID)
    assert StatusKind.WRITTEN_OFF in hub.status_kinds(decided)
    for outbox in (lodged, held, after, decided):
        for record in outbox.to(hub.topics.status):
            assert len(record.value) <= MAX_STATUS_EVENT_BYTES
    feed(lodged, held, after, decided)
    state = view.declaration(REF)
    assert state is not None
    assert state["quantities"] == ["WRITTEN_OFF"]


def test_a_detail_too_long_is_cut_between_entries_and_says_how_many_are_left() -> None:
    entries = [f"N853 CHEDP.FR.2026.{n:07d}: VALID" for n in range(5000)]
    detail = bounded_detail("WRITE_OFF: " + ", ".join(entries))
    assert len(detail.encode()) < MAX_STATUS_EVENT_BYTES // 4
    kept, _, tail = detail.partition(" … ")
    assert kept.split(", ")[-1] in entries  # cut between two entries, not inside one
    left = 5000 - len(kept.split(", "))
    assert tail == f"and {left} more (the decision and the facts list every document)"


def test_a_short_detail_is_left_as_it_is() -> None:
    assert bounded_detail("WRITE_OFF: N853 CHEDP.FR.2026.0001234: VALID") == (
        "WRITE_OFF: N853 CHEDP.FR.2026.0001234: VALID"
    )
