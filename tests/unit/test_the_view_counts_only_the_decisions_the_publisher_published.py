"""The operations view counts the decision the publisher published (docs/operations.md),
and never one it withheld (review of stop 38-s's lane, S3 and G1).

A reference's versions may arrive on several partitions, each decided by its partition's
case; the publisher's lane sees them all and withholds two kinds of decision:

* a version decided for another declarant than the reference's decisions published
  (OTHER_DECLARANT): a security dead letter DECLARANT_CHANGED and, in the same
  transaction, a status event NOT_PUBLISHED_OTHER_DECLARANT of that version;
* a lower version decided after a higher one was published (SUPERSEDED): a status event
  IGNORED_STALE_VERSION "decided but not published" of that version.

The facts of such a version (who lodged it, its decision) reach the view all the same, on
another topic, before or after that status event. The view takes the version's decision
out of everything it counted, and a version withheld for another declarant makes nobody
the declaration's owner and shows in no trader's history.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import StateCipher
from gun_hub.domain.status_events import StatusEvent, StatusKind
from gun_hub.ops.facts import DecisionFact, DocumentUse, OverrideUse, RolloutUse, fact_bytes
from gun_hub.ops.view import FeedRecord, OpsView
from gun_hub.pipeline.decision_outbox import HEADER_DECLARANT, HEADER_VERSION, declarant_tag
from gun_hub.runtime.published_memory import PublishedMemory
from gun_hub.runtime.publisher import DecisionPublisher, _PartitionPublisher
from gun_hub.web.redaction import trader_history
from tests.unit.test_operations_view import NOON, TODAY, TOPICS, Feed, use
from tests.unit.test_publisher_memory_is_bounded import _Producer

REF = "26FRA0000000000001"
A = "FR12345678901234"
B = "FR99999999999999"
# What the publisher writes of a lower version it withheld (runtime/publisher.py).
SUPERSEDED_DETAIL = "decided but not published: version 2 of this declaration was published already"


@pytest.fixture
def view(tmp_path: Path) -> OpsView:
    return OpsView(tmp_path / "view.sqlite3", TOPICS)


def _a_decided_b_withheld(feed: Feed) -> tuple[list[FeedRecord], list[FeedRecord]]:
    """A's version 1 decided (and published); B's version 2 of A's reference, decided on
    another partition, and the publisher's record that it withheld it."""
    facts_and_events = [
        feed.received(REF, declarant=A, version=1),
        feed.status(REF, StatusKind.RECEIVED, version=1),
        feed.decided(REF, "RELEASE", [use("N853", "D1", "dgal")], declarant=A, version=1),
        feed.status(REF, StatusKind.DECIDED, 1, version=1, outcome="RELEASE"),
        feed.received(REF, declarant=B, version=2),
        feed.status(REF, StatusKind.RECEIVED, 2, version=2),
        feed.decided(
            REF, "REFUSE", [use("C085", "B-DOC", "dgddi", "NOT_FOUND")], declarant=B, version=2
        ),
        feed.status(REF, StatusKind.DECIDED, 3, version=2, outcome="REFUSE", detail="C085"),
    ]
    withheld = [
        feed.status(
            REF,
            StatusKind.NOT_PUBLISHED_OTHER_DECLARANT,
            4,
            version=2,
            detail="decided but not published",
        )
    ]
    return facts_and_events, withheld


def _assert_only_a_counts_and_owns(view: OpsView) -> None:
    assert view.declarant_of(REF) == A
    history = view.history_of_declarant(REF, A)
    assert history is not None, "A's own declaration answered 404"
    assert {event["version"] for event in history} == {1}, "A sees B's version"
    assert view.history_of_declarant(REF, B) is None, "B sees A's declaration"
    statistics = view.statistics()["decisions"]
    assert statistics["total"] == 1
    assert statistics["by_outcome"] == {"RELEASE": 1}
    assert statistics["by_authority"] == {"dgal": {"RELEASE": 1}}
    assert set(statistics["by_document_code"]) == {"N853"}
    assert view.documents_of_declarant(B) == []
    assert view.decisions_since(0) == 1


def test_a_version_withheld_for_another_declarant_is_neither_counted_nor_owned(
    view: OpsView,
) -> None:
    feed = Feed()
    facts_and_events, withheld = _a_decided_b_withheld(feed)
    view.apply(facts_and_events)
    assert view.declarant_of(REF) == B  # until the publisher's record is read
    view.apply(withheld)
    _assert_only_a_counts_and_owns(view)


def test_a_version_withheld_for_another_declarant_read_before_its_facts_counts_nothing(
    view: OpsView,
) -> None:
    """The topics are read independently: the publisher's record may come first."""
    feed = Feed()
    facts_and_events, withheld = _a_decided_b_withheld(feed)
    view.apply(withheld)
    view.apply(facts_and_events)
    _assert_only_a_counts_and_owns(view)


def test_a_version_withheld_for_another_declarant_shows_in_no_traders_history(
    view: OpsView,
) -> None:
    """Whichever declarant the lane kept, the other's version is nobody's: not even when
    it is the latest version, named by nobody any more."""
    feed = Feed()
    facts_and_events, withheld = _a_decided_b_withheld(feed)
    view.apply([*facts_and_events, *withheld, feed.status(REF, StatusKind.WRITTEN_OFF, 5)])
    history = view.history_of_declarant(REF, A)
    assert history is not None
    assert [e["kind"] for e in history] == ["RECEIVED", "DECIDED", "WRITTEN_OFF"]
    # Officers read the history as recorded.
    declaration = view.declaration(REF)
    assert declaration is not None
    assert StatusKind.NOT_PUBLISHED_OTHER_DECLARANT.value in [
        e["kind"] for e in declaration["history"]
    ]


def test_the_traders_answer_leaves_out_a_version_withheld_for_another_declarant() -> None:
    """A second line behind the view (web/redaction.py): whatever history reaches it."""
    at = NOON.isoformat()
    history = [
        {"version": 1, "kind": "RECEIVED", "at": at, "detail": ""},
        {"version": 1, "kind": "DECIDED", "at": at, "detail": "", "outcome": "RELEASE"},
        {"version": 2, "kind": "RECEIVED", "at": at, "detail": ""},
        {"version": 2, "kind": "DECIDED", "at": at, "detail": "C085", "outcome": "REFUSE"},
        {"version": 2, "kind": "NOT_PUBLISHED_OTHER_DECLARANT", "at": at, "detail": "x"},
    ]
    shown = trader_history(history, confidential=())
    assert [(e["version"], e["kind"]) for e in shown] == [(1, "RECEIVED"), (1, "DECIDED")]


def _fact_with_override_and_rollout(feed: Feed, version: int, outcome: str) -> FeedRecord:
    fact = DecisionFact(
        reference=REF,
        version=version,
        declarant_eori=A,
        stage="LODGED",
        outcome=outcome,
        decided_at=datetime(TODAY.year, TODAY.month, TODAY.day, 12, tzinfo=UTC),
        authorities=["dgal"],
        documents=[
            DocumentUse(
                goods_item=1, code="N853", reference="D1", authority="dgal", verdict="VALID"
            )
        ],
        override=OverrideUse(goods_items=1, covered=1),
        office="FR000690",
        rollout=[
            RolloutUse(
                authority="dgal",
                mode="shadow",
                would_decide="REFUSE",
                agrees=False,
                reasons=["NOT_FOUND"],
            )
        ],
    )
    return feed.record(TOPICS.facts, fact_bytes(fact))


def _superseded(feed: Feed) -> FeedRecord:
    return feed.status(
        REF, StatusKind.IGNORED_STALE_VERSION, 5, version=1, detail=SUPERSEDED_DETAIL
    )


@pytest.mark.parametrize("status_first", [False, True])
def test_a_lower_version_the_publisher_withheld_as_superseded_is_not_counted(
    view: OpsView, status_first: bool
) -> None:
    feed = Feed()
    published = _fact_with_override_and_rollout(feed, 2, "RELEASE")
    withheld = _fact_with_override_and_rollout(feed, 1, "REFUSE")
    facts = [published, withheld]
    view.apply([_superseded(feed), *facts] if status_first else [*facts, _superseded(feed)])

    statistics = view.statistics()
    assert statistics["decisions"]["by_outcome"] == {"RELEASE": 1}
    assert statistics["decisions"]["by_document_code"]["N853"]["uses"] == 1
    assert statistics["overrides"]["declared"] == 1
    assert statistics["overrides"]["applied"] == 1
    [pilot] = view.rollout_report()
    assert (pilot["declarations"], pilot["decided"]) == (1, {"RELEASE": 1})
    assert pilot["reasons"] == {"NOT_FOUND": 1}
    assert view.decisions_since(0) == 1
    assert view.declarant_of(REF) == A  # the same declarant: its versions stay its own


def test_a_stale_copy_the_intake_ignored_keeps_the_versions_published_decision(
    view: OpsView,
) -> None:
    """The intake records a copy of a version it decided (a file lodged again) as
    IGNORED_STALE_VERSION too: that version's decision was published, and counts."""
    feed = Feed()
    view.apply(
        [
            feed.decided(REF, "RELEASE", [use("N853", "D1", "dgal")], declarant=A, version=1),
            feed.status(
                REF,
                StatusKind.IGNORED_STALE_VERSION,
                2,
                version=1,
                detail="an equal or higher version of this declaration was already received",
            ),
        ]
    )
    assert view.statistics()["decisions"]["by_outcome"] == {"RELEASE": 1}


def test_the_memory_of_withheld_versions_leaves_with_their_events(view: OpsView) -> None:
    feed = Feed()
    facts_and_events, withheld = _a_decided_b_withheld(feed)
    view.apply([*facts_and_events, *withheld, _superseded(feed)])
    assert view._db.execute("SELECT COUNT(*) FROM unpublished").fetchone() == (2,)

    view.prune(NOON + timedelta(days=1))

    assert view._db.execute("SELECT COUNT(*) FROM unpublished").fetchone() == (0,)
    assert view.declarant_of(REF) is None


class _OutboxRecord:
    def __init__(self, version: bytes, offset: int, declarant: str) -> None:
        self.topic = "gun.hub.decision-outbox"
        self.partition = 0
        self.key = REF.encode()
        self.value = b"sealed"
        self.headers = [(HEADER_VERSION, version), (HEADER_DECLARANT, declarant_tag(declarant))]
        self.offset = offset


def _publisher(keys_dir: Path) -> DecisionPublisher:
    return DecisionPublisher(
        connect=None,  # type: ignore[arg-type]
        outbox_topic="gun.hub.decision-outbox",
        decisions_topic="gun.decisions",
        app_id="gun-hub",
        envelope=None,  # type: ignore[arg-type]
        outbox_cipher=StateCipher.load(keys_dir, HUB_PARTY),
        status="gun.status",
        dead_letters="gun.dlq",
    )


def _as_read_by_the_view(producer: _Producer) -> list[FeedRecord]:
    return [
        FeedRecord(TOPICS.status, 0, offset, int(NOON.timestamp() * 1000), value)
        for offset, (topic, value) in enumerate(producer.sent)
        if topic == "gun.status"
    ]


@pytest.mark.asyncio
async def test_the_lane_tells_the_view_of_a_version_withheld_for_another_declarant(
    keys_dir: Path, view: OpsView
) -> None:
    """In the transaction of its dead letter, a status event of the version: what the
    view needs to take its decision and its declarant out, and nothing about either
    declarant (the status topic names none)."""
    memory = PublishedMemory(100)
    memory.add((REF.encode(), b"1"), declarant_tag(A))
    producer = _Producer()
    lane = _PartitionPublisher(0, producer, memory)

    published = await _publisher(keys_dir)._publish_batch(
        lane, None, TopicPartition("gun.hub.decision-outbox", 0), [_OutboxRecord(b"2", 7, B)]
    )

    assert published
    assert sorted(topic for topic, _ in producer.sent) == ["gun.dlq", "gun.status"]
    [(_, value)] = [(t, v) for t, v in producer.sent if t == "gun.status"]
    event = StatusEvent.model_validate_json(value)
    assert (event.reference, event.version) == (REF, 2)
    assert event.kind == StatusKind.NOT_PUBLISHED_OTHER_DECLARANT
    for secret in (A, B, declarant_tag(A).decode(), declarant_tag(B).decode()):
        assert secret not in value.decode()

    feed = Feed()
    facts_and_events, _ = _a_decided_b_withheld(feed)
    view.apply([*facts_and_events, *_as_read_by_the_view(producer)])
    _assert_only_a_counts_and_owns(view)


@pytest.mark.asyncio
async def test_the_view_reads_the_lanes_record_of_a_superseded_version(
    keys_dir: Path, view: OpsView
) -> None:
    memory = PublishedMemory(100)
    memory.add((REF.encode(), b"2"), declarant_tag(A))
    producer = _Producer()
    lane = _PartitionPublisher(0, producer, memory)

    await _publisher(keys_dir)._publish_batch(
        lane, None, TopicPartition("gun.hub.decision-outbox", 0), [_OutboxRecord(b"1", 7, A)]
    )

    feed = Feed()
    view.apply(
        [
            _fact_with_override_and_rollout(feed, 2, "RELEASE"),
            _fact_with_override_and_rollout(feed, 1, "REFUSE"),
            *_as_read_by_the_view(producer),
        ]
    )
    assert view.statistics()["decisions"]["by_outcome"] == {"RELEASE": 1}
