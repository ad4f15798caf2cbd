"""The operations view reads the decision the publisher published of a version two
partitions' cases decided, whatever order it reads their records in.

docs/decisions.md, "One reference on several partitions": a version read on two
partitions is decided by each partition's case; the publisher's lane publishes the first
it reads and drops the other as a duplicate, writing in its transaction, on its own
partition of ``gun.status``, a ``NOT_PUBLISHED_DECIDED_ELSEWHERE`` naming the outcome not
published and that decision's receipt (``lodging``). Each case wrote its ``DECIDED`` event
and its decision fact on its own partition before: the view reads the five records in any
order. Here partition 0's case released version 1 on DGAL's answer (published), partition
1's decided a documentary control at its deadline (not published).

The view kept the first decision it read (``_decision``, ``current_state``): the
statistics, the officer and the trader could read the control while the clearance system
received the release. Built as the view reads them, without a hub (the acceptance test
driving the hub and the lane: tests/unit/
test_a_version_decided_on_two_partitions_follows_the_decision_published.py).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gun_hub.domain.status_events import StatusEvent, StatusKind
from gun_hub.ops.facts import (
    DecisionFact,
    DocumentUse,
    OverrideUse,
    ReceivedFact,
    RolloutUse,
    fact_bytes,
)
from gun_hub.ops.view import FeedRecord, FeedTopics, OpsView
from gun_hub.web.redaction import trader_status

TOPICS = FeedTopics(status="g.status", facts="g.hub.facts", dlq="g.dlq", health="g.ops.health")
REF = "26FR000690I0000777"
EORI = "FR12345678901234"
NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DAY = NOON.date().isoformat()
PUBLISHED_RECEIPT, UNPUBLISHED_RECEIPT = "0a0a0a0a0a0a0a0a", "1b1b1b1b1b1b1b1b"
RELEASE, CONTROL = "RELEASE", "CONTROL_DOCUMENTARY"
DETAIL = f"decided {CONTROL} on partition 1; the decision of the case on partition 0 was published"


@dataclass(frozen=True)
class Written:
    """A record as a worker or the lane wrote it: its topic and value (numbered when
    read, in the order the view reads them)."""

    name: str
    topic: str
    value: bytes


def _status(name: str, kind: StatusKind, seconds: int, **fields: Any) -> Written:
    event = StatusEvent(
        reference=REF, version=1, kind=kind, at=NOON + timedelta(seconds=seconds), **fields
    )
    return Written(name, TOPICS.status, event.to_bytes())


def _fact(name: str, fact: DecisionFact | ReceivedFact) -> Written:
    return Written(name, TOPICS.facts, fact_bytes(fact))


def _decision(
    outcome: str, seconds: int, documents: list[DocumentUse], **more: Any
) -> DecisionFact:
    return DecisionFact(
        reference=REF,
        version=1,
        declarant_eori=EORI,
        stage="LODGED",
        outcome=outcome,
        decided_at=NOON + timedelta(seconds=seconds),
        authorities=["dgal"],
        documents=documents,
        office="FR000690",
        **more,
    )


RECEIPTS = [
    _fact(
        "received on 0",
        ReceivedFact(
            reference=REF,
            version=1,
            declarant_eori=EORI,
            received_at=NOON,
            lodging=PUBLISHED_RECEIPT,
        ),
    ),
    _fact(
        "received on 1",
        ReceivedFact(
            reference=REF,
            version=1,
            declarant_eori=EORI,
            received_at=NOON,
            lodging=UNPUBLISHED_RECEIPT,
        ),
    ),
    _status("RECEIVED on 0", StatusKind.RECEIVED, 0, lodging=PUBLISHED_RECEIPT),
    _status("RECEIVED on 1", StatusKind.RECEIVED, 0, lodging=UNPUBLISHED_RECEIPT),
]
# The release on DGAL's answer (partition 0, published) and the control at the deadline
# (partition 1, not published): other documents' verdicts, an override and a rollout use
# the release has not, so that what is counted of the control shows.
PUBLISHED_FACT = _fact(
    "release fact",
    _decision(
        RELEASE,
        1,
        [
            DocumentUse(
                goods_item=1, code="N853", reference="CHEDP.1", authority="dgal", verdict="VALID"
            )
        ],
        rollout=[RolloutUse(authority="cites", mode="shadow", would_decide=RELEASE, agrees=True)],
    ),
)
UNPUBLISHED_FACT = _fact(
    "control fact",
    _decision(
        CONTROL,
        31,
        [
            DocumentUse(
                goods_item=1,
                code="N853",
                reference="CHEDP.1",
                authority="dgal",
                verdict="UNAVAILABLE",
            ),
            DocumentUse(
                goods_item=1, code="C640", reference="C640.9", authority="cites", verdict="VALID"
            ),
        ],
        override=OverrideUse(goods_items=1, covered=1),
        rollout=[
            RolloutUse(
                authority="cites",
                mode="shadow",
                would_decide="REFUSE",
                agrees=False,
                reasons=["NOT_FOUND"],
            )
        ],
    ),
)
PUBLISHED_DECIDED = _status(
    "release DECIDED", StatusKind.DECIDED, 1, outcome=RELEASE, lodging=PUBLISHED_RECEIPT
)
UNPUBLISHED_DECIDED = _status(
    "control DECIDED",
    StatusKind.DECIDED,
    31,
    outcome=CONTROL,
    detail="DEGRADED_MODE; DEADLINE; UNAVAILABLE",
    lodging=UNPUBLISHED_RECEIPT,
)
MARKER = _status(
    "marker",
    StatusKind.NOT_PUBLISHED_DECIDED_ELSEWHERE,
    32,
    outcome=CONTROL,
    detail=DETAIL,
    lodging=UNPUBLISHED_RECEIPT,
)


def _read(view: OpsView, *written: Written) -> None:
    """The records, numbered per topic as Kafka would (each topic one partition here:
    the view keys nothing by partition), applied one batch each."""
    offsets: dict[str, int] = {}
    for w in written:
        offsets[w.topic] = offset = offsets.get(w.topic, -1) + 1
        view.apply([FeedRecord(w.topic, 0, offset, int(NOON.timestamp() * 1000), w.value)])


def _named(records: tuple[Written, ...]) -> str:
    return ", ".join(r.name for r in records)


def _trader(view: OpsView) -> dict[str, Any]:
    history = view.history_of_declarant(REF, EORI)
    assert history is not None
    return trader_status(REF, history, confidential=())


def _aside(view: OpsView) -> int:
    [(count,)] = view._db.execute("SELECT COUNT(*) FROM decisions_aside").fetchall()
    return int(count)


# Every order of the two facts and the lane's status (the status events' own orders below).
FACT_ORDERS = list(itertools.permutations([UNPUBLISHED_FACT, PUBLISHED_FACT, MARKER]))


@pytest.mark.parametrize("order", FACT_ORDERS, ids=_named)
def test_the_statistics_count_the_decision_published_once_in_every_order(
    tmp_path: Path, order: tuple[Written, ...]
) -> None:
    view = OpsView(tmp_path / "view.sqlite3", TOPICS)
    try:
        _read(view, *RECEIPTS, *order)
        decisions = view.statistics()["decisions"]
        assert decisions["by_outcome"] == {RELEASE: 1}, f"read {_named(order)}"
        assert decisions["total"] == 1
        assert decisions["by_day"] == {DAY: {RELEASE: 1}}
        assert decisions["by_authority"] == {"dgal": {RELEASE: 1}}
        assert decisions["by_document_code"] == {"N853": {"uses": 1, "by_verdict": {"VALID": 1}}}
        overrides = view.override_counts(max_declarants=None)
        assert (overrides["declared"], overrides["applied"]) == (0, 0)
        [cites] = view.rollout_report()
        assert (cites["decided"], cites["agreements"], cites["disagreements"]) == (
            {RELEASE: 1},
            1,
            0,
        )
        assert cites["reasons"] == {}
        assert view.decisions_since(0) == 1
        documents = view.documents_of_declarant(EORI)
        assert [d["code"] for d in documents] == ["N853"]
        # Nothing left aside once the marker said which decision stands.
        assert _aside(view) == 0
    finally:
        view.close()


# Every order of the two cases' status events, their facts and the lane's status.
EVERY_ORDER = list(
    itertools.permutations(
        [UNPUBLISHED_DECIDED, PUBLISHED_DECIDED, UNPUBLISHED_FACT, PUBLISHED_FACT, MARKER]
    )
)


def test_the_officer_and_the_trader_read_the_decision_published_in_every_order(
    tmp_path: Path,
) -> None:
    for n, order in enumerate(EVERY_ORDER):
        view = OpsView(tmp_path / f"view{n}.sqlite3", TOPICS)
        try:
            _read(view, *RECEIPTS, *order)
            read = _named(order)
            officer = view.declaration(REF)
            assert officer is not None
            assert (officer["state"], officer["outcome"]) == ("DECIDED", RELEASE), read
            assert officer["reasons"] == [], read
            # The officer reads both decisions and the lane's status, which explains.
            decided = [e for e in officer["history"] if e["kind"] == StatusKind.DECIDED]
            assert sorted(e["outcome"] for e in decided) == [CONTROL, RELEASE], read
            [control] = [e for e in decided if e["outcome"] == CONTROL]
            assert control.get("not_published") is True, read
            assert StatusKind.NOT_PUBLISHED_DECIDED_ELSEWHERE in [
                e["kind"] for e in officer["history"]
            ], read
            trader = _trader(view)
            assert (trader["state"], trader["outcome"]) == ("DECIDED", RELEASE), read
            assert trader["reasons"] == [], read
            seen = [(e["kind"], e.get("outcome")) for e in trader["history"]]
            assert (StatusKind.DECIDED, RELEASE) in seen, read
            assert (StatusKind.DECIDED, CONTROL) not in seen, read
            assert StatusKind.NOT_PUBLISHED_DECIDED_ELSEWHERE not in [k for k, _ in seen], read
            assert view.statistics()["decisions"]["by_outcome"] == {RELEASE: 1}, read
        finally:
            view.close()


@pytest.mark.parametrize(
    "order",
    [
        (MARKER, UNPUBLISHED_DECIDED, PUBLISHED_DECIDED),
        (UNPUBLISHED_DECIDED, MARKER, PUBLISHED_DECIDED),
        (UNPUBLISHED_DECIDED, PUBLISHED_DECIDED, MARKER),
        (PUBLISHED_DECIDED, UNPUBLISHED_DECIDED, MARKER),
    ],
    ids=_named,
)
def test_a_status_naming_no_receipt_names_the_decision_by_its_outcome(
    tmp_path: Path, order: tuple[Written, ...]
) -> None:
    """The outbox record named no receipt (a case stored before its record was kept):
    the lane's status names the outcome not published alone."""
    marker = _status(
        "marker", StatusKind.NOT_PUBLISHED_DECIDED_ELSEWHERE, 32, outcome=CONTROL, detail=DETAIL
    )
    order = tuple(marker if r is MARKER else r for r in order)
    view = OpsView(tmp_path / "view.sqlite3", TOPICS)
    try:
        _read(view, *RECEIPTS, *order)
        officer = view.declaration(REF)
        assert officer is not None
        assert officer["outcome"] == RELEASE
        assert _trader(view)["outcome"] == RELEASE
    finally:
        view.close()


def test_decided_events_naming_no_receipt_are_told_apart_by_their_outcome(
    tmp_path: Path,
) -> None:
    """Cases of before stop 53 named no receipt in their events: the lane's status names
    the decision not published by its outcome."""
    view = OpsView(tmp_path / "view.sqlite3", TOPICS)
    try:
        _read(
            view,
            _status("RECEIVED", StatusKind.RECEIVED, 0),
            _status("control DECIDED", StatusKind.DECIDED, 31, outcome=CONTROL),
            _status("release DECIDED", StatusKind.DECIDED, 1, outcome=RELEASE),
            MARKER,
        )
        officer = view.declaration(REF)
        assert officer is not None
        assert officer["outcome"] == RELEASE
    finally:
        view.close()


@pytest.mark.parametrize("by_receipt", [True, False], ids=["by receipt", "by outcome"])
@pytest.mark.parametrize(
    "order",
    [
        (UNPUBLISHED_DECIDED, UNPUBLISHED_FACT, PUBLISHED_DECIDED, PUBLISHED_FACT, MARKER),
        (MARKER, UNPUBLISHED_FACT, UNPUBLISHED_DECIDED, PUBLISHED_FACT, PUBLISHED_DECIDED),
        (PUBLISHED_FACT, PUBLISHED_DECIDED, MARKER, UNPUBLISHED_DECIDED, UNPUBLISHED_FACT),
    ],
    ids=["marker last", "marker first", "published first"],
)
def test_when_both_cases_decided_the_same_nothing_changes(
    tmp_path: Path, order: tuple[Written, ...], by_receipt: bool
) -> None:
    """Both released (the lane's status is written for every duplicate from another
    partition): one release counted, read by the officer and the trader, the published
    one never left out."""
    same = {
        UNPUBLISHED_FACT: _fact(
            "second release fact",
            _decision(
                RELEASE,
                2,
                [
                    DocumentUse(
                        goods_item=1,
                        code="N853",
                        reference="CHEDP.1",
                        authority="dgal",
                        verdict="VALID",
                    )
                ],
            ),
        ),
        UNPUBLISHED_DECIDED: _status(
            "second release DECIDED",
            StatusKind.DECIDED,
            2,
            outcome=RELEASE,
            lodging=UNPUBLISHED_RECEIPT if by_receipt else None,
        ),
        PUBLISHED_DECIDED: _status(
            "release DECIDED",
            StatusKind.DECIDED,
            1,
            outcome=RELEASE,
            lodging=PUBLISHED_RECEIPT if by_receipt else None,
        ),
        MARKER: _status(
            "marker",
            StatusKind.NOT_PUBLISHED_DECIDED_ELSEWHERE,
            3,
            outcome=RELEASE,
            detail="decided RELEASE on partition 1; ...",
            lodging=UNPUBLISHED_RECEIPT if by_receipt else None,
        ),
    }
    # Events naming no receipt are the trader's where no receipt of the version is known
    # (``history_of_declarant``): cases and an intake of before stop 53.
    receipts = (
        RECEIPTS
        if by_receipt
        else [
            _fact(
                "received",
                ReceivedFact(reference=REF, version=1, declarant_eori=EORI, received_at=NOON),
            ),
            _status("RECEIVED", StatusKind.RECEIVED, 0),
        ]
    )
    view = OpsView(tmp_path / "view.sqlite3", TOPICS)
    try:
        _read(view, *receipts, *(same.get(r, r) for r in order))
        decisions = view.statistics()["decisions"]
        assert decisions["by_outcome"] == {RELEASE: 1}
        assert decisions["by_document_code"] == {"N853": {"uses": 1, "by_verdict": {"VALID": 1}}}
        officer = view.declaration(REF)
        assert officer is not None
        assert (officer["state"], officer["outcome"]) == ("DECIDED", RELEASE)
        trader = _trader(view)
        assert (trader["state"], trader["outcome"]) == ("DECIDED", RELEASE)
        assert [e["kind"] for e in trader["history"]].count(StatusKind.DECIDED) == 1
        assert _aside(view) == 0
    finally:
        view.close()


def test_the_release_alone_read_stays_the_state_whatever_the_lane_says(tmp_path: Path) -> None:
    """The lane's status and the published decision read, the other case's not yet: the
    published decision is never left out."""
    view = OpsView(tmp_path / "view.sqlite3", TOPICS)
    try:
        _read(view, *RECEIPTS, MARKER, PUBLISHED_DECIDED, PUBLISHED_FACT)
        officer = view.declaration(REF)
        assert officer is not None
        assert officer["outcome"] == RELEASE
        assert _trader(view)["outcome"] == RELEASE
        assert view.statistics()["decisions"]["by_outcome"] == {RELEASE: 1}
    finally:
        view.close()


def test_a_decision_made_again_with_another_outcome_and_no_status_counts_the_first(
    tmp_path: Path,
) -> None:
    """A version decided again after a crash on one partition: the lane drops the repeat
    and writes no status (same partition). The first decision stands, as before; the
    repeat is kept aside until the retention."""
    view = OpsView(tmp_path / "view.sqlite3", TOPICS)
    try:
        _read(view, *RECEIPTS, PUBLISHED_FACT, UNPUBLISHED_FACT)
        assert view.statistics()["decisions"]["by_outcome"] == {RELEASE: 1}
        assert _aside(view) == 1
    finally:
        view.close()


def test_what_is_kept_aside_leaves_with_the_retention(tmp_path: Path) -> None:
    view = OpsView(tmp_path / "view.sqlite3", TOPICS)
    try:
        _read(view, *RECEIPTS, UNPUBLISHED_FACT, PUBLISHED_FACT)
        assert _aside(view) == 1
        assert view.prune(NOON) == 0  # not older than the retention yet
        assert _aside(view) == 1
        while view.prune(NOON + timedelta(hours=1), batch=1):
            pass
        assert _aside(view) == 0
        # Its day's counts stay (the decision left by its time, its day did not): the
        # control read first, the lane's status unread.
        assert view.statistics()["decisions"]["by_outcome"] == {CONTROL: 1}
        # The lane's status read after both left (a retention shorter than the lag
        # between the topics): nothing is left to put in the control's place, and
        # nothing is counted twice.
        _read(view, MARKER, PUBLISHED_FACT)
        assert view.statistics()["decisions"]["total"] == 1
    finally:
        view.close()
