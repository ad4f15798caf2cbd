"""A reference two declarants lodge is read by each alone (security review of stop 52,
trader lookup).

Two declarants may lodge one reference: the clearance system relays traders' local
references, which two traders may choose alike, and

* once the hub has forgotten the first one's case (its retired case's marker is kept
  ``decided_marker_s``, 14 days, after ``case_retention_s``, 3 days), a declaration naming
  the same reference and version is taken as new (retention.py: "the limit of the rule"),
  while the operations view keeps the first one's history ``view_retention_days`` (30);
* a reference split over two partitions (docs/decisions.md, "One reference on several
  partitions") has another declarant's version 1 read on the partition that holds no
  case of it, while the first one's is still being checked on its own.

The view keyed each history by (reference, version): the second receipt replaced the
first in ``declarants``, status events name no declarant, so ``history_of_declarant``
showed every event of a version to whoever named it, and each trader read the other's
events (the authorities asked, their answers, the follow-ups), or got the 404 of an
unknown reference for its own declaration. Each status event now names the receipt it is
about (``lodging``: an opaque id of the version and the record it was read from), which
the intake's ReceivedFact, on the hub-internal facts topic, ties to the declarant;
``gun.status`` still names nobody.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gun_contract.effects import OutgoingRecord
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.view import FeedRecord, FeedTopics, OpsView
from gun_hub.web.redaction import trader_status
from tests.builders import declaration_xml
from tests.unit.test_decided_cases_leave_the_hot_table import MARKER_S, RetainingHub
from tests.unit.test_decided_cases_leave_the_hot_table import REF as RETAINED
from tests.unit.test_operations_view import EORI, NOON, TOPICS, Feed
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import at

REF = "LRN-2026-000042"  # a trader's local reference, relayed by the clearance system
SECOND = "DE999999999999999"
DAYS_LATER = 20  # the first case's marker is gone (17 days), its history is not (30)
CONFIDENTIAL = {"dga"}
FIRST_RECEIPT, SECOND_RECEIPT = "1f1f1f1f1f1f1f1f", "2e2e2e2e2e2e2e2e"


def lookup(view: OpsView, reference: str, eori: str) -> dict[str, Any] | None:
    """What the trader listener answers ``eori`` (None: its 404), as trader.py makes it."""
    history = view.history_of_declarant(reference, eori)
    return None if history is None else trader_status(reference, history, CONFIDENTIAL)


def kinds(answer: dict[str, Any] | None) -> list[str]:
    return [event["kind"] for event in (answer or {}).get("history", [])]


@pytest.fixture
def view(tmp_path: Path) -> OpsView:
    return OpsView(tmp_path / "view.sqlite3", TOPICS)


def fed_from(
    hub: Hub, tmp_path: Path
) -> tuple[OpsView, Callable[[Iterable[OutgoingRecord]], None]]:
    """A view, and what feeds it the status events and facts of ``hub``'s outboxes."""
    topics = FeedTopics(
        status=hub.topics.status,
        facts=hub.topics.facts,
        dlq=hub.topics.dlq,
        health=hub.topics.ops_health,
    )
    view = OpsView(tmp_path / "fed.sqlite3", topics)
    offsets: dict[str, int] = {}

    def feed(records: Iterable[OutgoingRecord]) -> None:
        read = []
        for record in records:
            if record.topic in (topics.status, topics.facts):
                offsets[record.topic] = offsets.get(record.topic, -1) + 1
                read.append(FeedRecord(record.topic, 0, offsets[record.topic], 0, record.value))
        view.apply(read)

    return view, feed


def test_a_reference_reused_weeks_later_is_read_by_each_declarant_alone(view: OpsView) -> None:
    feed = Feed()
    later = NOON + timedelta(days=DAYS_LATER)
    minutes = DAYS_LATER * 24 * 60
    view.apply(
        [
            # The first declarant's declaration, decided (and, in the hub, retired).
            feed.received(REF, lodging=FIRST_RECEIPT),
            feed.status(REF, StatusKind.RECEIVED, lodging=FIRST_RECEIPT),
            feed.status(
                REF, StatusKind.REQUESTS_SENT, detail="RESERVE sent to dgal", lodging=FIRST_RECEIPT
            ),
            feed.status(
                REF,
                StatusKind.ANSWER_RECEIVED,
                1,
                authority="dgal",
                detail="VALID",
                lodging=FIRST_RECEIPT,
            ),
            feed.status(REF, StatusKind.DECIDED, 1, outcome="RELEASE", lodging=FIRST_RECEIPT),
            feed.decided(REF, "RELEASE", []),
            # Twenty days later, another declarant's declaration under the same reference.
            feed.received(REF, declarant=SECOND, at=later, lodging=SECOND_RECEIPT),
            feed.status(REF, StatusKind.RECEIVED, minutes + 1, lodging=SECOND_RECEIPT),
            feed.status(
                REF,
                StatusKind.REQUESTS_SENT,
                minutes + 1,
                detail="CHECK sent to cites",
                lodging=SECOND_RECEIPT,
            ),
            feed.status(
                REF,
                StatusKind.ANSWER_RECEIVED,
                minutes + 2,
                authority="cites",
                detail="INVALID",
                lodging=SECOND_RECEIPT,
            ),
            feed.status(
                REF, StatusKind.DECIDED, minutes + 2, outcome="REFUSE", lodging=SECOND_RECEIPT
            ),
            feed.decided(REF, "REFUSE", [], declarant=SECOND, day=later.date()),
        ]
    )
    mine, theirs = lookup(view, REF, EORI), lookup(view, REF, SECOND)
    assert kinds(mine) == ["RECEIVED", "REQUESTS_SENT", "ANSWER_RECEIVED", "DECIDED"]
    assert all(e["at"] < later.isoformat() for e in mine["history"]), (  # type: ignore[index]
        f"{EORI} reads {SECOND}'s declaration"
    )
    assert kinds(theirs) == ["RECEIVED", "REQUESTS_SENT", "ANSWER_RECEIVED", "DECIDED"], (
        f"{SECOND} does not read its own declaration"
    )
    assert all(e["at"] > later.isoformat() for e in theirs["history"])  # type: ignore[index]


def test_an_event_whose_receipt_is_not_read_yet_is_nobodys(view: OpsView) -> None:
    """The facts topic may be read behind the status topic: an event naming a receipt
    the view does not know is shown to nobody until its fact says whose it is."""
    feed = Feed()
    view.apply(
        [
            feed.received(REF, lodging=FIRST_RECEIPT),
            feed.status(REF, StatusKind.RECEIVED, lodging=FIRST_RECEIPT),
            feed.status(REF, StatusKind.RECEIVED, 2, lodging=SECOND_RECEIPT),  # its fact later
        ]
    )
    assert kinds(lookup(view, REF, EORI)) == ["RECEIVED"]
    assert lookup(view, REF, SECOND) is None
    view.apply([feed.received(REF, declarant=SECOND, lodging=SECOND_RECEIPT)])
    assert kinds(lookup(view, REF, SECOND)) == ["RECEIVED"]
    assert kinds(lookup(view, REF, EORI)) == ["RECEIVED"]


def test_a_second_receipt_of_the_same_version_does_not_hand_over_the_first_history(
    view: OpsView,
) -> None:
    """The split, live: another declarant's version 1 received a minute after the first
    one's, which is still being checked. Its receipt replaced the first's in
    ``declarants`` (INSERT OR REPLACE), no decision named the first yet, so the
    reference became the second declarant's, who read the first's history."""
    feed = Feed()
    view.apply(
        [
            feed.received(REF, lodging=FIRST_RECEIPT),
            feed.status(REF, StatusKind.RECEIVED, lodging=FIRST_RECEIPT),
            feed.status(
                REF,
                StatusKind.REQUESTS_SENT,
                detail="RESERVE sent to cites, dgal",
                lodging=FIRST_RECEIPT,
            ),
            feed.status(
                REF,
                StatusKind.ANSWER_RECEIVED,
                1,
                authority="cites",
                detail="VALID",
                lodging=FIRST_RECEIPT,
            ),
            # Another declarant's version 1, read on another partition a minute later.
            feed.received(
                REF, declarant=SECOND, at=NOON + timedelta(minutes=2), lodging=SECOND_RECEIPT
            ),
            feed.status(REF, StatusKind.RECEIVED, 2, lodging=SECOND_RECEIPT),
        ]
    )
    assert kinds(lookup(view, REF, SECOND)) == ["RECEIVED"]
    assert kinds(lookup(view, REF, EORI)) == ["RECEIVED", "REQUESTS_SENT", "ANSWER_RECEIVED"]


def test_through_the_real_intake_once_the_marker_is_forgotten(
    tmp_path: Path, routing_table: RoutingTable, keys_dir: Path
) -> None:
    """From what the real intake emits: the first declarant's case released, retired,
    its marker forgotten; another declarant's version 1 is then taken as new."""
    hub = RetainingHub(routing_table, keys_dir)
    view, feed = fed_from(hub, tmp_path)
    try:
        first = hub.intake.handle(declaration_xml(), at(0))
        feed(first.records)
        feed(hub.answer(first, "dgal", Verdict.VALID).records)
        released_at = hub.now
        hub.retire()
        hub.now += timedelta(seconds=MARKER_S + 1)
        hub.retention_tick()
        assert hub.retained == {}, "the marker is forgotten"

        second = hub.intake.handle(declaration_xml(declarant=SECOND), at(5))
        assert [s.kind for s in hub.statuses(second)][:1] == [StatusKind.RECEIVED]
        feed(second.records)
        refused = hub.answer(second, "dgal", Verdict.NOT_FOUND)
        assert [outcome for _, _, outcome in hub.decisions(refused)] == [Outcome.REFUSE]
        feed(refused.records)

        mine, theirs = lookup(view, RETAINED, EORI), lookup(view, RETAINED, SECOND)
        assert mine is not None
        assert theirs is not None, f"{SECOND} gets a 404 for its own declaration"
        read = [e for e in mine["history"] if e["at"] > released_at.isoformat()]
        assert read == [], f"{EORI} reads {SECOND}'s declaration: {json.dumps(read)}"
        assert "DECIDED" in kinds(mine)
        assert [e for e in theirs["history"] if e["at"] <= released_at.isoformat()] == []
        assert "DECIDED" in kinds(theirs)
    finally:
        view.close()


def test_through_the_real_intake_on_two_partitions(
    tmp_path: Path, routing_table: RoutingTable, keys_dir: Path
) -> None:
    """The split, from what the real intake emits on each partition (one unit hub per
    partition: cases are kept per partition, ADR 0005)."""
    first_partition = Hub(routing_table, keys_dir)
    other_partition = Hub(routing_table, keys_dir)
    view, feed = fed_from(first_partition, tmp_path)
    try:
        feed(first_partition.intake.handle(declaration_xml(), at(0, partition=0)).records)
        assert lookup(view, RETAINED, EORI) is not None
        other_partition.now += timedelta(minutes=1)
        theirs = other_partition.intake.handle(
            declaration_xml(declarant=SECOND), at(0, partition=1)
        )
        assert [s.kind for s in other_partition.statuses(theirs)][:1] == [StatusKind.RECEIVED]
        feed(theirs.records)
        seen = lookup(view, RETAINED, SECOND)
        firsts = [
            e for e in (seen or {}).get("history", []) if e["at"] < other_partition.now.isoformat()
        ]
        assert firsts == [], f"{SECOND} reads {EORI}'s declaration: {json.dumps(firsts)}"
        assert kinds(seen)[:1] == ["RECEIVED"]
        assert kinds(lookup(view, RETAINED, EORI))[:2] == ["RECEIVED", "REQUESTS_SENT"]
    finally:
        view.close()


# The events table as a view made before stop 53 had it: no receipt named.
_EVENTS_BEFORE = """
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    reference TEXT NOT NULL, version INTEGER NOT NULL, kind TEXT NOT NULL, at TEXT NOT NULL,
    detail TEXT NOT NULL, authority TEXT NOT NULL, outcome TEXT NOT NULL,
    UNIQUE (reference, version, kind, authority, outcome, detail));
CREATE INDEX events_by_reference ON events (reference, seq);
"""


def test_a_view_made_before_keeps_its_histories_in_order_for_their_declarants(
    tmp_path: Path,
) -> None:
    """Its events, naming no receipt, are kept in their order and shown as before: by
    the versions their declarant alone named; what it reads next names its receipt."""
    path = tmp_path / "view.sqlite3"
    feed = Feed()
    view = OpsView(path, TOPICS)
    view.apply([feed.received(REF)])
    view.close()
    with sqlite3.connect(path) as old:
        old.execute("DROP TABLE events")
        old.executescript(_EVENTS_BEFORE)
        old.executemany(
            "INSERT INTO events (reference, version, kind, at, detail, authority, outcome) "
            "VALUES (?, 1, ?, ?, '', '', '')",
            [
                (REF, kind, (NOON + timedelta(minutes=n)).isoformat())
                for n, kind in enumerate(("RECEIVED", "REQUESTS_SENT"))
            ],
        )
    upgraded = OpsView(path, TOPICS)
    try:
        assert kinds(lookup(upgraded, REF, EORI)) == ["RECEIVED", "REQUESTS_SENT"]
        assert lookup(upgraded, REF, SECOND) is None
        upgraded.apply(
            [
                feed.status(REF, StatusKind.RECEIVED, 5, version=2, lodging=FIRST_RECEIPT),
                feed.received(REF, version=2, lodging=FIRST_RECEIPT),
            ]
        )
        assert kinds(lookup(upgraded, REF, EORI)) == ["RECEIVED", "REQUESTS_SENT", "RECEIVED"]
    finally:
        upgraded.close()
