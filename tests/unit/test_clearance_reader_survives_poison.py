"""The clearance system's decision reader survives every record (issue 10, defects 1 and 3).

Anything on ``gun.decisions`` that cannot be opened or decoded is dead-lettered with a
reason and skipped, and the reader goes on (and commits); a decision read long after the
broker accepted it still opens, because freshness is judged at the broker's time.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition

from gun_contract.dead_letter import (
    HEADER_COMPONENT,
    HEADER_ERROR_CLASS,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    HEADER_SOURCE_OFFSET,
    header_value,
)
from gun_contract.effects import OutgoingRecord
from gun_contract.envelope import LOG_APPEND_TIME, ContentType, OpenedMessage
from gun_contract.limits import MAX_DEAD_LETTER_VALUE_BYTES
from gun_contract.model.decision import Decision
from gun_contract.model.verdicts import Outcome
from gun_contract.topics import topic_registry
from gun_hub.xml.decision_codec import encode_decision
from gun_tools.clearance_stand_in import DecisionReader, ReceivedDecision, Unreadable
from tests.conftest import envelope_of
from tests.poison_corpus import mutants, named_bombs

TOPICS = topic_registry("gun", ["cites", "dga", "dgal"])
CREATE_TIME = 0
DECISION = Decision(
    reference="26FR000690I0000012",
    version=1,
    outcome=Outcome.RELEASE,
    decided_at=datetime(2026, 11, 22, 10, tzinfo=UTC),
)


def seal(keys_dir: Path, payload: bytes, *, sender: str = "hub") -> bytes:
    return envelope_of(sender, TOPICS, keys_dir).seal(
        payload, recipient="clearance", topic=TOPICS.decisions, content_type=ContentType.XML
    )


def record(
    value: bytes | None,
    offset: int = 7,
    *,
    key: bytes | None = b"26FR000690I0000012",
    timestamp_ms: int | None = None,
    timestamp_type: int = LOG_APPEND_TIME,
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=TOPICS.decisions,
        partition=1,
        offset=offset,
        timestamp=int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
        timestamp_type=timestamp_type,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=[],
    )


def reader(keys_dir: Path) -> DecisionReader:
    return DecisionReader(
        "127.0.0.1:1",  # never connected: these tests only examine records
        TOPICS.decisions,
        envelope_of("clearance", TOPICS, keys_dir),
        dlq_topic=TOPICS.dlq,
    )


def poisons(keys_dir: Path) -> dict[str, bytes | None]:
    genuine = [seal(keys_dir, encode_decision(DECISION)) for _ in range(3)]
    found: dict[str, bytes | None] = {**named_bombs(), "null value": None}
    found["valid envelope, invalid decision XML"] = seal(keys_dir, b"<Decision>unclosed")
    found["valid envelope, decision XML bomb"] = seal(keys_dir, b"<a>" * 3000)
    found["valid envelope, decision of the wrong namespace"] = seal(
        keys_dir, encode_decision(DECISION).replace(b"decision:v1", b"decision:v9")
    )
    found["valid envelope, empty payload"] = seal(keys_dir, b"")
    found["valid envelope, not UTF-8"] = seal(keys_dir, b"<Decision>\xff\xfe</Decision>")
    for n, (how, value) in enumerate(mutants(random.Random(3), genuine, 25)):
        found[f"mutant {n} ({how})"] = value
    return found


async def test_every_poison_becomes_a_dead_letter_with_a_reason(keys_dir: Path) -> None:
    decisions = reader(keys_dir)
    for name, value in poisons(keys_dir).items():
        outcome = decisions.examine(record(value))
        assert isinstance(outcome, Unreadable), name
        letter = decisions.dead_letter(record(value), outcome)
        assert isinstance(letter, OutgoingRecord)
        assert letter.topic == TOPICS.dlq
        assert header_value(letter.headers, HEADER_ERROR_KIND), name
        assert header_value(letter.headers, HEADER_ERROR_REASON), name
        assert header_value(letter.headers, HEADER_COMPONENT) == "clearance.reader"
        assert header_value(letter.headers, HEADER_SOURCE_OFFSET) == "7"
        assert len(letter.value) <= MAX_DEAD_LETTER_VALUE_BYTES, name


async def test_a_rejected_envelope_is_a_security_dead_letter_and_bad_xml_a_permanent_one(
    keys_dir: Path,
) -> None:
    decisions = reader(keys_dir)
    forged = decisions.examine(record(seal(keys_dir, encode_decision(DECISION), sender="dgal")))
    assert isinstance(forged, Unreadable)
    assert (forged.error_class.value, forged.kind) == ("security", "ENVELOPE_NOT_ENTITLED")
    assert [r.kind.value for r in decisions.rejected] == ["ENVELOPE_NOT_ENTITLED"]

    unreadable = decisions.examine(record(seal(keys_dir, b"<Decision>unclosed")))
    assert isinstance(unreadable, Unreadable)
    assert (unreadable.error_class.value, unreadable.kind) == ("permanent", "XML_MALFORMED")


class _Exploding:
    """An envelope whose library fails in a way nobody foresaw."""

    party = "clearance"

    def __init__(self, error: BaseException) -> None:
        self._error = error

    def open(self, *args: Any, **kwargs: Any) -> OpenedMessage:
        raise self._error

    def seal(self, *args: Any, **kwargs: Any) -> bytes:
        raise NotImplementedError

    def sign(self, *args: Any, **kwargs: Any) -> bytes:
        raise NotImplementedError

    def record_sighting(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError


@pytest.mark.parametrize(
    "error", [RecursionError("deep"), KeyError("iss"), TypeError("x"), MemoryError()]
)
async def test_whatever_opening_raises_is_a_dead_letter_not_a_crash(error: BaseException) -> None:
    decisions = DecisionReader("127.0.0.1:1", TOPICS.decisions, _Exploding(error))
    outcome = decisions.examine(record(b"a.b.c.d.e"))
    assert isinstance(outcome, Unreadable)
    assert outcome.kind == "DECISION_UNREADABLE"
    assert type(error).__name__ in outcome.reason
    letter = decisions.dead_letter(record(b"a.b.c.d.e"), outcome)
    assert header_value(letter.headers, HEADER_ERROR_CLASS) == "permanent"


async def test_a_decision_read_hours_after_the_broker_accepted_it_opens(
    keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = time.time() - 3 * 3600
    with monkeypatch.context() as clock:
        clock.setattr(time, "time", lambda: written)
        sealed = seal(keys_dir, encode_decision(DECISION))
    decided = reader(keys_dir).examine(record(sealed, timestamp_ms=int(written * 1000) + 50))
    assert isinstance(decided, ReceivedDecision), decided
    assert decided.decision.reference == DECISION.reference


async def test_a_producer_chosen_timestamp_is_no_broker_time(
    keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = time.time() - 3 * 3600
    with monkeypatch.context() as clock:
        clock.setattr(time, "time", lambda: written)
        sealed = seal(keys_dir, encode_decision(DECISION))
    late = reader(keys_dir).examine(
        record(sealed, timestamp_ms=int(written * 1000), timestamp_type=CREATE_TIME)
    )
    assert isinstance(late, Unreadable)
    assert late.kind in {"ENVELOPE_EXPIRED", "ENVELOPE_IAT_SKEW"}


_TP = TopicPartition(TOPICS.decisions, 1)


class _Consumer:
    """Serves batches like AIOKafkaConsumer.getmany, and records commits."""

    def __init__(self, batches: list[list[ConsumerRecord[bytes, bytes]]]) -> None:
        self._batches = batches
        self.commits = 0

    async def getmany(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        return {_TP: self._batches.pop(0)} if self._batches else {}

    def assignment(self) -> set[TopicPartition]:
        return {_TP}

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        self.commits += 1


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]] = []

    async def send_and_wait(
        self, topic: str, value: bytes, *, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        self.sent.append((topic, value, key, headers))


async def test_the_reader_goes_on_past_poison_and_commits(keys_dir: Path) -> None:
    decisions = DecisionReader(
        "127.0.0.1:1",
        TOPICS.decisions,
        envelope_of("clearance", TOPICS, keys_dir),
        group_id="gun-clearance",
        dlq_topic=TOPICS.dlq,
    )
    bombs = named_bombs()
    batch = [
        record(bombs["nested brackets"], 0),
        record(bombs["5 MB"], 1, key=None),
        record(None, 2),
        record(seal(keys_dir, encode_decision(DECISION)), 3),
    ]
    consumer, producer = _Consumer([batch]), _Producer()
    decisions._consumer = consumer
    decisions._dead_letters = producer
    received = await decisions.collect(expected=1, timeout_s=5)
    assert [r.decision.reference for r in received] == [DECISION.reference]
    assert [int(header_value(h, HEADER_SOURCE_OFFSET) or -1) for *_, h in producer.sent] == [
        0,
        1,
        2,
    ]
    assert all(len(value) <= MAX_DEAD_LETTER_VALUE_BYTES for _, value, _, _ in producer.sent)
    assert consumer.commits == 1
    assert len(decisions.unreadable) == 3


class _RecordedCommits:
    """A replay memory's ear for commits (SqliteReplayGuard.committed)."""

    def __init__(self) -> None:
        self.told: list[tuple[str, int, float]] = []

    def committed(self, topic: str, partition: int, readable_from: float) -> None:
        self.told.append((topic, partition, readable_from))


async def test_the_reader_tells_its_replay_memory_each_commit_in_broker_time(
    keys_dir: Path,
) -> None:
    """A batch handled and not yet committed is read again after a crash: the memory
    forgets an id only once the partition is committed past it (review stop 38, L3)."""
    memory = _RecordedCommits()
    decisions = DecisionReader(
        "127.0.0.1:1",
        TOPICS.decisions,
        envelope_of("clearance", TOPICS, keys_dir),
        group_id="gun-clearance",
        dlq_topic=TOPICS.dlq,
        replay_memory=memory,
    )
    at = int(time.time() * 1000)
    batch = [
        record(seal(keys_dir, encode_decision(DECISION)), 3, timestamp_ms=at),
        record(None, 4, timestamp_ms=at + 500),
    ]
    decisions._consumer = _Consumer([batch])
    decisions._dead_letters = _Producer()
    await decisions.collect(expected=1, timeout_s=5)
    # Committed past offset 4: the partition can no longer be read again below its time.
    assert memory.told == [(TOPICS.decisions, 1, (at + 500) / 1000)]
