"""Dead letters as operators find them: ids they can type, the filters of ``dlq list``,
and the row the operations view keeps of each dead letter (issue 13, item 5)."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from gun_contract.dead_letter import (
    ErrorClass,
    SourcePosition,
    dead_letter_record,
)
from gun_hub.cli import dlq as dlq_cli
from gun_hub.ops.dead_letters import (
    DeadLetterFilter,
    DeadLetterId,
    NotAFilter,
    NotAnId,
    parse_since,
)
from gun_hub.ops.view import FeedRecord, FeedTopics, OpsView

TOPICS = FeedTopics(status="g.status", facts="g.hub.facts", dlq="g.dlq", health="g.ops.health")
NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
REFERENCE = "26FRDLQ00000000001"
OTHER = "26FRDLQ00000000002"


# -- ids ----------------------------------------------------------------------------------


def test_an_id_is_partition_colon_offset_and_prints_back_the_same() -> None:
    named = DeadLetterId.parse("2:17")
    assert named == DeadLetterId(2, 17)
    assert str(named) == "2:17"
    assert DeadLetterId.parse(" 0:0 \n") == DeadLetterId(0, 0)


def test_a_position_in_the_dead_letter_topic_reads_as_the_same_id() -> None:
    assert DeadLetterId.parse("gun.dlq/2/17", "gun.dlq") == DeadLetterId(2, 17)


def test_a_position_in_another_topic_is_no_dead_letter_id() -> None:
    with pytest.raises(NotAnId, match=r"not of the dead-letter topic gun\.dlq"):
        DeadLetterId.parse("gun.declarations/2/17", "gun.dlq")


@pytest.mark.parametrize(
    "text",
    ["", "2", "2:", ":17", "a:b", "-1:3", "2:-3", "2:3:4", "02:3", "2:017", "2 : 3", "2.5:3"],
)
def test_text_that_is_no_id_is_refused_saying_what_an_id_looks_like(text: str) -> None:
    with pytest.raises(NotAnId, match="expected PARTITION:OFFSET"):
        DeadLetterId.parse(text)


def test_numbers_beyond_what_kafka_numbers_are_refused() -> None:
    with pytest.raises(NotAnId, match="beyond what Kafka numbers"):
        DeadLetterId.parse(f"{2**31}:0")
    with pytest.raises(NotAnId, match="beyond what Kafka numbers"):
        DeadLetterId.parse(f"0:{2**63}")
    assert DeadLetterId.parse(f"{2**31 - 1}:{2**63 - 1}").offset == 2**63 - 1


# -- --since ----------------------------------------------------------------------------------


def test_since_is_a_duration_back_from_now() -> None:
    assert parse_since("90m", NOON) == NOON - timedelta(minutes=90)
    assert parse_since("6h", NOON) == NOON - timedelta(hours=6)
    assert parse_since("7d", NOON) == NOON - timedelta(days=7)


def test_since_a_day_starts_at_its_midnight_in_the_zone_given() -> None:
    paris = timezone(timedelta(hours=1))
    assert parse_since("2026-11-20", NOON) == datetime(2026, 11, 20, tzinfo=UTC)
    assert parse_since("2026-11-20", NOON, paris) == datetime(2026, 11, 19, 23, tzinfo=UTC)


def test_since_a_time_keeps_its_offset_or_takes_the_zone() -> None:
    assert parse_since("2026-11-20T08:30:00+02:00", NOON) == datetime(
        2026, 11, 20, 6, 30, tzinfo=UTC
    )
    assert parse_since("2026-11-20T08:30", NOON) == datetime(2026, 11, 20, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    # 999999d: before the year 1 (an OverflowError answered 500 and a traceback; stop 46).
    ["yesterday", "0h", "5w", "2026-13-01", "-3d", "3 d", "999999d"],
)
def test_since_that_is_neither_is_refused(text: str) -> None:
    with pytest.raises(NotAFilter, match="since"):
        parse_since(text, NOON)


def test_the_command_line_reads_a_time_without_an_offset_in_the_officers_own_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As its help says ("local time unless it has an offset"): an officer in Paris asking
    since 10:00 missed the dead letters of 10:00 to 11:00 (read as 10:00 UTC; review of
    stop 47)."""
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    try:
        asked = dlq_cli._query("2026-11-22T10:00", None, None)
        day = dlq_cli._query("2026-11-22", None, None)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert datetime.fromisoformat(asked["since"]) == datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    assert datetime.fromisoformat(day["since"]) == datetime(2026, 11, 21, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["0001-01-01", "9999-12-31T23:59"])
def test_a_local_time_at_the_end_of_the_calendar_is_refused_not_a_traceback(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    try:
        with pytest.raises(NotAFilter):
            parse_since(text, datetime.now().astimezone(), local=True)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_filter_refuses_what_no_dead_letter_could_match() -> None:
    with pytest.raises(NotAFilter, match="kind"):
        DeadLetterFilter(kind="TWO WORDS")
    with pytest.raises(NotAFilter, match="reference"):
        DeadLetterFilter(reference="lower-case")
    with pytest.raises(NotAFilter, match="UTC offset"):
        DeadLetterFilter(since=datetime(2026, 11, 22))  # noqa: DTZ001 - the point of the test


# -- what the view keeps and lists ----------------------------------------------------------


class DeadLetters:
    """Dead letters as components write them, numbered per partition as Kafka would."""

    def __init__(self) -> None:
        self.offsets: dict[int, int] = {}

    def record(
        self,
        kind: str,
        *,
        reference: str | None = None,
        key: bytes | None = None,
        minutes: int = 0,
        partition: int = 0,
        source_offset: int = 5,
        error_class: ErrorClass = ErrorClass.PERMANENT,
        data: bytes = b"<declaration/>",
    ) -> FeedRecord:
        letter = dead_letter_record(
            TOPICS.dlq,
            data,
            error_class=error_class,
            kind=kind,
            reason=f"why {kind} failed",
            source=SourcePosition("g.declarations", partition, source_offset, key),
            component="hub.intake",
            reference=reference,
        )
        offset = self.offsets.get(partition, 0)
        self.offsets[partition] = offset + 1
        at = NOON + timedelta(minutes=minutes)
        return FeedRecord(
            TOPICS.dlq,
            partition,
            offset,
            int(at.timestamp() * 1000),
            letter.value,
            letter.headers,
            letter.key,
        )


@pytest.fixture
def view(tmp_path: Path) -> OpsView:
    return OpsView(tmp_path / "view.sqlite3", TOPICS)


def listed(view: OpsView, chosen: DeadLetterFilter, limit: int = 100, offset: int = 0) -> list[str]:
    return [str(row.id) for row in view.dead_letters(chosen, limit=limit, offset=offset)]


def test_each_dead_letter_is_kept_by_its_id_with_where_its_original_was(view: OpsView) -> None:
    letters = DeadLetters()
    view.apply([letters.record("XML_MALFORMED", reference=REFERENCE, source_offset=41)])
    [row] = view.dead_letters(DeadLetterFilter(), limit=10)
    assert str(row.id) == "0:0"
    assert (row.kind, row.error_class, row.component) == (
        "XML_MALFORMED",
        "permanent",
        "hub.intake",
    )
    assert row.reference == REFERENCE
    assert row.source == "g.declarations/0/41"
    assert row.reason == "why XML_MALFORMED failed"
    assert row.at == NOON.timestamp()


def test_a_dead_letter_read_twice_is_kept_once(view: OpsView) -> None:
    record = DeadLetters().record("XML_MALFORMED")
    view.apply([record])
    view.apply([record])
    assert listed(view, DeadLetterFilter()) == ["0:0"]
    assert view.dead_letter_counts()["total"] == 1


def test_without_a_reference_header_the_key_names_the_declaration(view: OpsView) -> None:
    """A security dead letter is written before the declaration could be read: only the
    sender's key says which one it is about."""
    letters = DeadLetters()
    view.apply(
        [
            letters.record("ENVELOPE_UNKNOWN_KID", key=REFERENCE.encode()),
            letters.record("ENVELOPE_MALFORMED", key=b"not a reference"),
        ]
    )
    rows = view.dead_letters(DeadLetterFilter(), limit=10)
    assert [row.reference for row in rows] == [REFERENCE, ""]


def test_the_list_narrows_by_time_kind_and_reference_together(view: OpsView) -> None:
    letters = DeadLetters()
    view.apply(
        [
            letters.record("ENVELOPE_UNKNOWN_KID", key=REFERENCE.encode(), minutes=0),  # 0:0
            letters.record("ENVELOPE_UNKNOWN_KID", key=OTHER.encode(), minutes=10),  # 0:1
            letters.record("XML_MALFORMED", reference=REFERENCE, minutes=20),  # 0:2
            letters.record("ENVELOPE_UNKNOWN_KID", key=REFERENCE.encode(), minutes=30),  # 0:3
        ]
    )
    assert listed(view, DeadLetterFilter(kind="ENVELOPE_UNKNOWN_KID")) == ["0:0", "0:1", "0:3"]
    assert listed(view, DeadLetterFilter(reference=REFERENCE)) == ["0:0", "0:2", "0:3"]
    since = NOON + timedelta(minutes=10)
    assert listed(view, DeadLetterFilter(since=since)) == ["0:1", "0:2", "0:3"]
    assert listed(
        view, DeadLetterFilter(since=since, kind="ENVELOPE_UNKNOWN_KID", reference=REFERENCE)
    ) == ["0:3"]
    assert listed(view, DeadLetterFilter(kind="NO_SUCH_KIND")) == []


def test_the_list_comes_in_pages_in_the_order_the_view_read_them(view: OpsView) -> None:
    letters = DeadLetters()
    view.apply([letters.record("XML_MALFORMED", partition=p % 2) for p in range(5)])
    everything = listed(view, DeadLetterFilter())
    assert everything == ["0:0", "1:0", "0:1", "1:1", "0:2"]
    assert listed(view, DeadLetterFilter(), limit=2) == everything[:2]
    assert listed(view, DeadLetterFilter(), limit=2, offset=2) == everything[2:4]
    assert listed(view, DeadLetterFilter(), limit=2, offset=4) == everything[4:]


def test_headers_that_say_nothing_usable_leave_the_source_unknown(view: OpsView) -> None:
    """Any party writes dead letters: a position that is no position is not trusted."""
    junk = FeedRecord(
        TOPICS.dlq,
        3,
        9,
        int(NOON.timestamp() * 1000),
        b"x",
        [
            ("gun.source.topic", b"g.declarations"),
            ("gun.source.partition", b"-1"),
            ("gun.source.offset", b"9" * 30),
            ("gun.reference", b"\xff\xfe"),
        ],
    )
    view.apply([junk])
    [row] = view.dead_letters(DeadLetterFilter(), limit=10)
    assert str(row.id) == "3:9"
    assert (row.source_partition, row.source_offset) == (None, None)
    assert row.source == "g.declarations/?/?"
    assert (row.kind, row.component, row.reference) == ("UNKNOWN", "unknown", "")


def test_a_view_that_kept_dead_letters_the_old_way_reads_them_again(tmp_path: Path) -> None:
    """Views made before dead letters had ids counted kind, component and reason only:
    the table is made again and the dead-letter topic read again from its start."""
    path = tmp_path / "view.sqlite3"
    old = OpsView(path, TOPICS)
    old.close()

    db = sqlite3.connect(path)
    db.executescript(
        "DROP TABLE dead_letters;"
        "CREATE TABLE dead_letters (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
        "topic_partition TEXT NOT NULL, kind TEXT NOT NULL, component TEXT NOT NULL, "
        "reason TEXT NOT NULL, at REAL NOT NULL);"
        "INSERT INTO dead_letters (topic_partition, kind, component, reason, at) "
        "VALUES ('g.dlq/0', 'XML_MALFORMED', 'hub.intake', 'old', 0);"
        "INSERT INTO offsets VALUES ('g.dlq', 0, 1), ('g.status', 0, 7);"
    )
    db.commit()
    db.close()
    view = OpsView(path, TOPICS)
    assert view.positions() == {("g.status", 0): 7}  # the dead letters only: read again
    assert view.dead_letter_counts()["total"] == 0
    view.apply([DeadLetters().record("XML_MALFORMED")])
    assert listed(view, DeadLetterFilter()) == ["0:0"]
    view.close()
