"""The operations read model (status lookup and statistics) on records built in memory."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from gun_contract.dead_letter import HEADER_COMPONENT, HEADER_ERROR_KIND, HEADER_ERROR_REASON
from gun_contract.health import CircuitStatus, PartnerHealth
from gun_hub.domain.status_events import StatusEvent, StatusKind
from gun_hub.ops.facts import (
    DecisionFact,
    DocumentUse,
    ReceivedFact,
    WriteOffFact,
    WrittenOff,
    fact_bytes,
)
from gun_hub.ops.view import CONFIDENTIAL, FeedRecord, FeedTopics, OpsView, current_state

TOPICS = FeedTopics(status="g.status", facts="g.hub.facts", dlq="g.dlq", health="g.ops.health")
NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
EORI = "FR12345678901234"
TODAY = NOON.date()


class Feed:
    """Numbers records per topic partition as Kafka would."""

    def __init__(self) -> None:
        self.offsets: dict[tuple[str, int], int] = {}

    def record(
        self, topic: str, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> FeedRecord:
        offset = self.offsets.get((topic, 0), 0)
        self.offsets[(topic, 0)] = offset + 1
        return FeedRecord(topic, 0, offset, int(NOON.timestamp() * 1000), value, headers or [])

    def status(
        self, reference: str, kind: StatusKind, minutes: int = 0, **fields: object
    ) -> FeedRecord:
        event = StatusEvent(
            reference=reference,
            version=int(fields.pop("version", 1)),  # type: ignore[call-overload]
            kind=kind,
            at=NOON + timedelta(minutes=minutes),
            **fields,
        )
        return self.record(TOPICS.status, event.to_bytes())

    def decided(
        self,
        reference: str,
        outcome: str,
        documents: list[DocumentUse],
        *,
        day: date = TODAY,
        declarant: str = EORI,
        version: int = 1,
    ) -> FeedRecord:
        fact = DecisionFact(
            reference=reference,
            version=version,
            declarant_eori=declarant,
            stage="LODGED",
            outcome=outcome,
            decided_at=datetime(day.year, day.month, day.day, 12, tzinfo=UTC),
            authorities=sorted({d.authority for d in documents if d.authority}),
            documents=documents,
        )
        return self.record(TOPICS.facts, fact_bytes(fact))

    def received(
        self,
        reference: str,
        *,
        declarant: str = EORI,
        version: int = 1,
        at: datetime = NOON,
        lodging: str | None = None,
    ) -> FeedRecord:
        fact = ReceivedFact(
            reference=reference,
            version=version,
            declarant_eori=declarant,
            received_at=at,
            lodging=lodging,
        )
        return self.record(TOPICS.facts, fact_bytes(fact))


def use(
    code: str, reference: str | None, authority: str | None, verdict: str = "VALID"
) -> DocumentUse:
    return DocumentUse(
        goods_item=1, code=code, reference=reference, authority=authority, verdict=verdict
    )


@pytest.fixture
def view(tmp_path: Path) -> OpsView:
    return OpsView(tmp_path / "view.sqlite3", TOPICS)


def test_an_unknown_declaration_has_no_status(view: OpsView) -> None:
    assert view.declaration("26FRNEVERSEEN00001") is None


def test_the_status_is_the_dated_history_and_the_state_of_the_latest_version(
    view: OpsView,
) -> None:
    feed = Feed()
    view.apply(
        [
            feed.status("26FRA0000000000001", StatusKind.RECEIVED),
            feed.status(
                "26FRA0000000000001", StatusKind.REQUESTS_SENT, 0, detail="RESERVE sent to dgal"
            ),
            feed.status(
                "26FRA0000000000001",
                StatusKind.ANSWER_RECEIVED,
                1,
                authority="dgal",
                detail="VALID",
            ),
        ]
    )
    checking = view.declaration("26FRA0000000000001")
    assert checking is not None
    assert (checking["state"], checking["answered_by"]) == ("CHECKING", ["dgal"])
    assert "outcome" not in checking

    view.apply(
        [
            feed.status("26FRA0000000000001", StatusKind.DECIDED, 1, outcome="RELEASE"),
            feed.status("26FRA0000000000001", StatusKind.WRITTEN_OFF, 2, authority="dgal"),
        ]
    )
    decided = view.declaration("26FRA0000000000001")
    assert decided is not None
    assert decided["state"] == "DECIDED"
    assert decided["outcome"] == "RELEASE"
    assert decided["quantities"] == ["WRITTEN_OFF"]
    assert [e["kind"] for e in decided["history"]] == [
        "RECEIVED",
        "REQUESTS_SENT",
        "ANSWER_RECEIVED",
        "DECIDED",
        "WRITTEN_OFF",
    ]
    assert decided["updated_at"] == (NOON + timedelta(minutes=2)).isoformat()


def test_a_stale_version_does_not_hide_the_current_one() -> None:
    history = [
        {"version": 2, "kind": "RECEIVED", "at": "t1", "detail": ""},
        {"version": 2, "kind": "DECIDED", "at": "t2", "detail": "", "outcome": "RELEASE"},
        {"version": 1, "kind": "IGNORED_STALE_VERSION", "at": "t3", "detail": ""},
    ]
    state = current_state(history)
    assert (state["version"], state["state"], state["outcome"]) == (2, "DECIDED", "RELEASE")


def test_a_post_release_alert_is_flagged_without_its_details(view: OpsView) -> None:
    feed = Feed()
    view.apply(
        [
            feed.status("26FRA0000000000002", StatusKind.DECIDED, outcome="RELEASE"),
            feed.status(
                "26FRA0000000000002",
                StatusKind.POST_RELEASE_ALERT,
                1,
                authority="dga",
                detail="WRITE_OFF: MISMATCH",
            ),
        ]
    )
    found = view.declaration("26FRA0000000000002")
    assert found is not None
    assert found["post_release_alert"] is True


def test_records_repeated_after_a_crash_count_once(view: OpsView) -> None:
    feed = Feed()
    documents = [use("N853", "CHEDP.1", "dgal")]
    event = feed.status("26FRA0000000000003", StatusKind.DECIDED, outcome="RELEASE")
    again = FeedRecord(event.topic, 0, event.offset + 1, event.timestamp_ms, event.value)
    view.apply([event, again, feed.decided("26FRA0000000000003", "RELEASE", documents)])
    view.apply([feed.decided("26FRA0000000000003", "RELEASE", documents)])
    found = view.declaration("26FRA0000000000003")
    assert found is not None
    assert len(found["history"]) == 1
    assert view.statistics()["decisions"]["total"] == 1


def test_the_offsets_are_kept_with_what_they_applied(tmp_path: Path) -> None:
    feed = Feed()
    first = OpsView(tmp_path / "v.sqlite3", TOPICS)
    first.apply([feed.status("26FRA0000000000004", StatusKind.RECEIVED) for _ in range(3)])
    first.close()
    reopened = OpsView(tmp_path / "v.sqlite3", TOPICS)
    assert reopened.positions() == {(TOPICS.status, 0): 3}


def test_a_failed_batch_leaves_neither_its_records_nor_its_offsets(view: OpsView) -> None:
    feed = Feed()

    class Boom(Exception):
        pass

    def batch() -> object:
        yield feed.status("26FRA0000000000005", StatusKind.RECEIVED)
        raise Boom

    with pytest.raises(Boom):
        view.apply(batch())  # type: ignore[arg-type]
    assert view.declaration("26FRA0000000000005") is None
    assert view.positions() == {}


def test_statistics_count_by_outcome_day_authority_and_document_code(view: OpsView) -> None:
    feed = Feed()
    yesterday = NOON.date() - timedelta(days=1)
    view.apply(
        [
            feed.decided(
                "26FRS0000000000001",
                "RELEASE",
                [use("N853", "CHEDP.1", "dgal"), use("C638", "CITES.1", "cites")],
            ),
            feed.decided(
                "26FRS0000000000002", "REFUSE", [use("N853", "CHEDP.9", "dgal", "NOT_FOUND")]
            ),
            feed.decided(
                "26FRS0000000000003",
                "RELEASE",
                [use("Y900", "EX-1", None, "EXEMPT")],
                day=yesterday,
            ),
        ]
    )
    stats = view.statistics()["decisions"]
    assert stats["total"] == 3
    assert stats["by_outcome"] == {"REFUSE": 1, "RELEASE": 2}
    assert stats["by_day"] == {
        yesterday.isoformat(): {"RELEASE": 1},
        NOON.date().isoformat(): {"REFUSE": 1, "RELEASE": 1},
    }
    assert stats["by_authority"] == {"cites": {"RELEASE": 1}, "dgal": {"REFUSE": 1, "RELEASE": 1}}
    assert stats["by_document_code"]["N853"] == {
        "uses": 2,
        "by_verdict": {"NOT_FOUND": 1, "VALID": 1},
    }
    assert stats["by_document_code"]["Y900"] == {"uses": 1, "by_verdict": {"EXEMPT": 1}}
    today_only = view.statistics(since=NOON.date(), until=NOON.date())["decisions"]
    assert today_only["total"] == 2
    assert "Y900" not in today_only["by_document_code"]


def test_the_documents_of_a_declarant_hide_a_confidential_licence(view: OpsView) -> None:
    feed = Feed()
    view.apply(
        [
            feed.decided(
                "26FRD0000000000001",
                "RELEASE",
                [use("N853", "CHEDP.1", "dgal"), use("LEMG", None, "dga")],
            ),
            feed.decided("26FRD0000000000002", "RELEASE", [use("N853", "CHEDP.1", "dgal")]),
            feed.decided(
                "26FRD0000000000003", "RELEASE", [use("N853", "CHEDP.2", "dgal")], declarant="DE999"
            ),
        ]
    )
    used = view.documents_of_declarant(EORI)
    assert [(d["code"], d["document"], d["declarations"]) for d in used] == [
        ("LEMG", CONFIDENTIAL, 1),
        ("N853", "CHEDP.1", 2),
    ]


def test_quantities_written_off_are_summed_exactly_per_document_line_and_unit(
    view: OpsView,
) -> None:
    feed = Feed()

    def written(reference: str, quantity: str | None, line: int = 1) -> FeedRecord:
        fact = WriteOffFact(
            reference=reference,
            version=1,
            authority="dgal",
            at=NOON,
            documents=[
                WrittenOff(
                    code="N853",
                    reference="CHEDP.1",
                    line=line,
                    quantity=Decimal(quantity) if quantity else None,
                    unit="KGM" if quantity else None,
                )
            ],
        )
        return feed.record(TOPICS.facts, fact_bytes(fact))

    view.apply([written("26FRW0000000000001", "0.1"), written("26FRW0000000000002", "0.2")])
    view.apply([written("26FRW0000000000002", "0.2")])  # the same write-off confirmed twice
    view.apply([written("26FRW0000000000003", "5", line=2), written("26FRW0000000000004", None)])
    rows = {(r["line"], r["unit"]): r for r in view.written_off("CHEDP.1")}
    assert rows[(1, "KGM")]["quantity"] == "0.3"  # exact, not 0.30000000000000004
    assert rows[(1, "KGM")]["declarations"] == 2
    assert rows[(2, "KGM")]["quantity"] == "5"
    assert rows[(1, None)]["without_quantity"] == 1
    assert view.written_off("CHEDP.UNKNOWN") == []


def test_dead_letters_are_counted_by_kind_with_their_reason(view: OpsView) -> None:
    feed = Feed()
    view.apply(
        [
            feed.record(
                TOPICS.dlq,
                b"<bad",
                [
                    (HEADER_ERROR_KIND, b"XML_MALFORMED"),
                    (HEADER_COMPONENT, b"hub.intake"),
                    (HEADER_ERROR_REASON, b"line 1"),
                ],
            ),
            feed.record(TOPICS.dlq, b"x", [(HEADER_ERROR_KIND, b"ENVELOPE_REPLAY")]),
            feed.record(TOPICS.dlq, b"y", [(HEADER_ERROR_KIND, b"XML_MALFORMED")]),
        ]
    )
    assert view.dead_letter_counts() == {
        "total": 3,
        "by_kind": {"ENVELOPE_REPLAY": 1, "XML_MALFORMED": 2},
    }
    [latest, *_] = view.recent_dead_letters()
    assert (latest["kind"], latest["component"]) == ("XML_MALFORMED", "unknown")


def test_the_latest_heartbeat_of_each_partner_is_kept(view: OpsView) -> None:
    feed = Feed()

    def beat(circuit: CircuitStatus, pending: int) -> FeedRecord:
        health = PartnerHealth(
            authority="dgal",
            adapter="adapter.dgal",
            circuit=circuit,
            pending_operations=pending,
            at=NOON,
            every_s=5,
        )
        return feed.record(TOPICS.health, health.to_bytes())

    view.apply([beat(CircuitStatus.CLOSED, 0), beat(CircuitStatus.OPEN, 3)])
    partners = view.partners()
    assert (partners["dgal", ""].circuit, partners["dgal", ""].pending_operations) == (
        CircuitStatus.OPEN,
        3,
    )


def test_a_heartbeat_kept_before_its_bounds_were_checked_is_left_out_not_a_crash(
    view: OpsView,
) -> None:
    """A row stored before stop 34 held heartbeats to their bounds (10**400 pending
    operations): read back at every start, it stopped the view again and again (found
    by review in stop 34)."""
    kept = PartnerHealth(
        authority="dgal",
        adapter="adapter.dgal",
        circuit=CircuitStatus.CLOSED,
        pending_operations=1,
        at=NOON,
        every_s=5,
    )
    view.apply([Feed().record(TOPICS.health, kept.to_bytes())])
    old = kept.model_dump(mode="json") | {"authority": "cites", "pending_operations": 10**400}
    view._db.execute(
        "INSERT INTO partners (authority, health) VALUES (?, ?)", ("cites", json.dumps(old))
    )
    assert sorted(view.partners()) == [("dgal", "")]


def test_a_record_of_the_wrong_shape_is_skipped_and_counted(view: OpsView) -> None:
    feed = Feed()
    view.apply(
        [
            feed.record(TOPICS.status, b'{"not": "a status"}'),
            feed.status("26FRA0000000000006", StatusKind.RECEIVED),
        ]
    )
    assert view.skipped == 1
    assert view.declaration("26FRA0000000000006") is not None


def test_the_declarant_of_a_declaration_is_known_once_it_is_decided(view: OpsView) -> None:
    """A view fed by a hub that named declarants in decision facts only (before the
    intake's facts) keeps answering from those."""
    feed = Feed()
    view.apply([feed.status("26FRO0000000000001", StatusKind.RECEIVED)])
    assert view.declarant_of("26FRO0000000000001") is None  # no fact names it: nobody's
    assert view.history_of_declarant("26FRO0000000000001", EORI) is None
    view.apply([feed.decided("26FRO0000000000001", "RELEASE", [])])
    assert view.declarant_of("26FRO0000000000001") == EORI
    assert view.history_of_declarant("26FRO0000000000001", "DE999") is None
    mine = view.history_of_declarant("26FRO0000000000001", EORI)
    assert mine is not None
    assert [e["kind"] for e in mine] == ["RECEIVED"]
    # A later version lodged by someone else: the latest decided version decides.
    view.apply([feed.decided("26FRO0000000000001", "RELEASE", [], declarant="DE999", version=2)])
    assert view.history_of_declarant("26FRO0000000000001", EORI) is None


def test_the_declarant_is_known_from_the_receipt_of_each_version(view: OpsView) -> None:
    """Issue 11, item 1: the trader sees its declaration while it is being checked.

    The intake's fact names the declarant before any decision; the status and facts topics
    are read independently, so either may be applied first."""
    feed = Feed()
    reference = "26FRO0000000000002"
    view.apply([feed.received(reference)])
    assert view.declarant_of(reference) == EORI
    assert view.history_of_declarant(reference, EORI) is None  # no status yet: nothing shown
    view.apply([feed.status(reference, StatusKind.RECEIVED)])
    mine = view.history_of_declarant(reference, EORI)
    assert mine is not None
    assert current_state(mine)["state"] == "CHECKING"
    # Anyone else: the very answer an unknown reference gets.
    assert view.history_of_declarant(reference, "DE999") is None
    assert view.history_of_declarant("26FRO0000000009999", EORI) is None
    assert view.history_of_declarant(reference, "") is None
    # Status first, then the fact: the same.
    view.apply([feed.status("26FRO0000000000003", StatusKind.RECEIVED)])
    assert view.history_of_declarant("26FRO0000000000003", EORI) is None
    view.apply([feed.received("26FRO0000000000003")])
    assert view.history_of_declarant("26FRO0000000000003", EORI) is not None
    # The fact read again after a crash changes nothing; the decision agrees with it.
    view.apply([feed.received(reference), feed.decided(reference, "RELEASE", [])])
    assert view.declarant_of(reference) == EORI
    assert view.statistics()["decisions"]["total"] == 1  # a receipt is no decision
    # A later version lodged by someone else takes over from its receipt, not its decision.
    view.apply(
        [
            feed.received(reference, declarant="DE999", version=2),
            feed.status(reference, StatusKind.RECEIVED, version=2),
        ]
    )
    assert view.history_of_declarant(reference, EORI) is None
    theirs = view.history_of_declarant(reference, "DE999")
    assert theirs is not None
    assert current_state(theirs)["version"] == 2


def test_lists_come_in_pages(view: OpsView) -> None:
    feed = Feed()
    view.apply(
        [
            feed.decided(f"26FRP{n:013d}", "RELEASE", [use("N853", f"CHEDP.{n:02d}", "dgal")])
            for n in range(7)
        ]
    )
    pages = [view.documents_of_declarant(EORI, limit=3, offset=o) for o in (0, 3, 6, 9)]
    assert [len(p) for p in pages] == [3, 3, 1, 0]
    assert [d["document"] for p in pages for d in p] == [f"CHEDP.{n:02d}" for n in range(7)]


def test_dead_letter_kinds_are_bounded_the_rest_summed(view: OpsView) -> None:
    feed = Feed()
    view.apply(
        [
            feed.record(TOPICS.dlq, b"", [(HEADER_ERROR_KIND, f"K{n % 5}".encode())])
            for n in range(12)
        ]
        + [
            feed.record(TOPICS.dlq, b"", [(HEADER_ERROR_KIND, f"RARE{n}".encode())])
            for n in range(3)
        ]
    )
    bounded = view.dead_letter_counts(max_kinds=2)
    assert bounded["total"] == 15
    assert bounded["by_kind"] == {"K0": 3, "K1": 3, "(other)": 9}
    assert len(view.dead_letter_counts()["by_kind"]) == 8


def test_statistics_keep_the_most_used_document_codes_when_bounded(view: OpsView) -> None:
    feed = Feed()
    view.apply(
        [
            feed.decided(f"26FRQ{n:013d}", "RELEASE", [use(code, f"D.{n}", None, "EXEMPT")])
            for n, code in enumerate(["Y900", "Y900", "Y901", "Y902"])
        ]
    )
    stats = view.statistics(max_codes=1)["decisions"]
    assert list(stats["by_document_code"]) == ["Y900"]
    assert stats["by_document_code_left_off"] == 2
