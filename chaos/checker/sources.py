"""Where the checker's observations come from.

:class:`LiveSource` reads a running stack through its public interfaces only: the Kafka
topics (confluent-kafka, ``read_committed``), the partner simulators' documented admin API
(HTTP), and ``gun-hub audit verify`` run as a separate process. :class:`MemorySource`
holds synthetic observations, so the invariants can be tested without a broker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from chaos.checker.codecs import PayloadError, parse_answer, parse_decision
from chaos.checker.jose import EnvelopeError, EnvelopeOpener, KeyFolder
from chaos.checker.model import (
    AnswerSeen,
    AuditResult,
    DecisionSeen,
    Holding,
    IncompleteRead,
    LedgerLine,
    Observations,
    Unreadable,
)

HUB = "hub"
CLEARANCE = "clearance"


class Source(Protocol):
    """What the checker reads; each call reads the whole current state."""

    def decisions(self) -> tuple[list[DecisionSeen], list[Unreadable]]: ...

    def answers(self, authority: str) -> tuple[list[AnswerSeen], list[Unreadable]]: ...

    def ledger(self, authority: str, documents: Iterable[str]) -> list[LedgerLine]: ...

    def audit(self) -> AuditResult: ...

    def incomplete_reads(self) -> list[IncompleteRead]:
        """The partitions the reads so far did not read to their end."""
        ...


def observe(source: Source, documents: Mapping[str, Iterable[str]]) -> Observations:
    """Read everything: ``documents`` maps each authority to its partner documents."""
    seen = Observations()
    seen.decisions, unreadable = source.decisions()
    seen.unreadable += unreadable
    for authority, references in sorted(documents.items()):
        answers, unreadable = source.answers(authority)
        seen.answers += answers
        seen.unreadable += unreadable
        asked = tuple(references)
        seen.ledger_documents[authority] = asked
        seen.ledger += source.ledger(authority, asked)
    seen.audit = source.audit()
    seen.incomplete = source.incomplete_reads()
    return seen


@dataclass
class MemorySource:
    """Synthetic observations (unit tests of the checker, planted faults)."""

    decided: list[DecisionSeen] = field(default_factory=list)
    answered: list[AnswerSeen] = field(default_factory=list)
    lines: list[LedgerLine] = field(default_factory=list)
    audit_result: AuditResult = field(default_factory=lambda: AuditResult(0, "audit trail intact"))
    incomplete: list[IncompleteRead] = field(default_factory=list)
    # The trail's DECISION entries; None: one for each decision seen (a clean trail).
    audited: list[tuple[str, int]] | None = None

    def decisions(self) -> tuple[list[DecisionSeen], list[Unreadable]]:
        return list(self.decided), []

    def answers(self, authority: str) -> tuple[list[AnswerSeen], list[Unreadable]]:
        return [a for a in self.answered if a.authority == authority], []

    def ledger(self, authority: str, documents: Iterable[str]) -> list[LedgerLine]:
        wanted = set(documents)
        return [x for x in self.lines if x.authority == authority and x.document in wanted]

    def audit(self) -> AuditResult:
        audited = self.audited
        if audited is None:
            audited = [(d.reference, d.version) for d in self.decided]
        return replace(self.audit_result, decisions=tuple(audited))

    def incomplete_reads(self) -> list[IncompleteRead]:
        return list(self.incomplete)


@dataclass(frozen=True, slots=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: float


@dataclass(frozen=True, slots=True)
class TopicRead:
    records: list[RawRecord]
    incomplete: list[IncompleteRead]


def read_topic(
    bootstrap: str, topic: str, *, timeout_s: float = 120.0, idle_s: float = 3.0
) -> TopicRead:
    """Every committed record of ``topic``, from the beginning to the end of each partition,
    and the partitions not read to the end of their log.

    Bounded: gives up after ``timeout_s``, returning what it has. ``read_committed`` ends
    at the last stable offset: a transaction left open holds it back and hides every
    record after it, committed or not. Both are said (:class:`IncompleteRead`), so a
    decision hidden that way is not only counted "lost".
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"chaos-checker-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "receive.message.max.bytes": 100 * 1024 * 1024,
            "fetch.max.bytes": 64 * 1024 * 1024,
        }
    )
    records: list[RawRecord] = []
    reached: dict[int, int] = {}  # partition -> the next offset the read would have read
    try:
        metadata = consumer.list_topics(topic, timeout=30)
        partitions = sorted(metadata.topics[topic].partitions)
        reached = dict.fromkeys(partitions, 0)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        last_activity = time.monotonic()
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                if len(at_end) == len(partitions) and time.monotonic() - last_activity > idle_s:
                    break
                continue
            last_activity = time.monotonic()
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                    end = message.offset()
                    reached[message.partition()] = max(reached[message.partition()], end)
                    continue
                raise RuntimeError(f"reading {topic}: {error}")
            at_end.discard(message.partition())
            reached[message.partition()] = max(reached[message.partition()], message.offset() + 1)
            _, stamp = message.timestamp()
            records.append(
                RawRecord(
                    topic,
                    message.partition(),
                    message.offset(),
                    message.key(),
                    message.value() or b"",
                    stamp / 1000.0 if stamp and stamp > 0 else 0.0,
                )
            )
        incomplete = _not_read_to_the_end(bootstrap, topic, consumer, reached)
    finally:
        consumer.close()
    return TopicRead(records, incomplete)


def _not_read_to_the_end(
    bootstrap: str, topic: str, committed_reader: Consumer, reached: Mapping[int, int]
) -> list[IncompleteRead]:
    """Each partition's read position against its last stable offset (as the
    ``read_committed`` reader sees the end) and its high watermark (asked of a
    ``read_uncommitted`` client: librdkafka asks for offsets at its own isolation level)."""
    log_reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"chaos-checker-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_uncommitted",
        }
    )
    incomplete = []
    try:
        for partition, read_to in sorted(reached.items()):
            where = TopicPartition(topic, partition)
            low, stable = committed_reader.get_watermark_offsets(where, timeout=30, cached=False)
            _, high = log_reader.get_watermark_offsets(where, timeout=30, cached=False)
            read_to = max(read_to, low)  # nothing below the log start is there to read
            if read_to < stable or stable < high:
                incomplete.append(IncompleteRead(topic, partition, read_to, stable, high))
    finally:
        log_reader.close()
    return incomplete


class LiveSource:
    """A running stack: topics under ``prefix`` on ``bootstrap``, partners over HTTP."""

    def __init__(
        self,
        *,
        bootstrap: str,
        prefix: str,
        keys_dir: Path,
        partner_urls: Mapping[str, str],
        audit_env: Mapping[str, str] | None = None,
        read_timeout_s: float = 180.0,
    ) -> None:
        self._bootstrap = bootstrap
        self._prefix = prefix
        self._keys = KeyFolder(keys_dir)
        self._keys_dir = keys_dir
        self._partner_urls = dict(partner_urls)
        self._audit_env = dict(audit_env or {})
        self._read_timeout_s = read_timeout_s
        self._incomplete: list[IncompleteRead] = []

    def _read(self, topic: str) -> list[RawRecord]:
        read = read_topic(self._bootstrap, topic, timeout_s=self._read_timeout_s)
        self._incomplete += read.incomplete
        return read.records

    def incomplete_reads(self) -> list[IncompleteRead]:
        return list(self._incomplete)

    def decisions(self) -> tuple[list[DecisionSeen], list[Unreadable]]:
        topic = f"{self._prefix}.decisions"
        opener = EnvelopeOpener(self._keys, sender=HUB, recipient=CLEARANCE, topic=topic)
        decided: list[DecisionSeen] = []
        unreadable: list[Unreadable] = []
        for record in self._read(topic):
            try:
                opened = opener.open(record.value)
                decided.append(
                    parse_decision(opened.payload, partition=record.partition, offset=record.offset)
                )
            except (EnvelopeError, PayloadError) as err:
                unreadable.append(Unreadable(topic, record.partition, record.offset, str(err)))
        return decided, unreadable

    def answers(self, authority: str) -> tuple[list[AnswerSeen], list[Unreadable]]:
        topic = f"{self._prefix}.responses.{authority}"
        opener = EnvelopeOpener(self._keys, sender=authority, recipient=HUB, topic=topic)
        answered: list[AnswerSeen] = []
        unreadable: list[Unreadable] = []
        for record in self._read(topic):
            try:
                opened = opener.open(record.value)
                answered.append(
                    parse_answer(
                        opened.payload,
                        timestamp=record.timestamp,
                        partition=record.partition,
                        offset=record.offset,
                    )
                )
            except (EnvelopeError, PayloadError) as err:
                # Poisoned records planted by the chaos run land here too: not the hub's.
                unreadable.append(Unreadable(topic, record.partition, record.offset, str(err)))
        return answered, unreadable

    def ledger(self, authority: str, documents: Iterable[str]) -> list[LedgerLine]:
        """``GET /admin/ledger`` (every document, per-declaration positions) when the
        partner has it, else ``GET /admin/documents/{ref}`` per document (balances only)."""
        base = self._partner_urls[authority].rstrip("/")
        wanted = list(documents)
        everything = _get_json(f"{base}/admin/ledger")
        if everything is not None:
            return ledger_lines(authority, everything, wanted)
        views = []
        for reference in wanted:
            view = _get_json(f"{base}/admin/documents/{quote(reference, safe='')}")
            if view is not None:  # None: unknown to the partner (the check row says so)
                views.append({**view, "reference": reference})
        return [line for view in views for line in _lines(authority, view)]

    def audit(self) -> AuditResult:
        """``gun-hub audit verify`` as its own process (its exit code is the verdict)."""
        env = {
            **os.environ,
            **self._audit_env,
            "GUN_HUB_KAFKA__BOOTSTRAP_SERVERS": self._bootstrap,
            "GUN_HUB_KAFKA__TOPIC_PREFIX": self._prefix,
            "GUN_HUB_SECURITY__KEYS_DIR": str(self._keys_dir),
            "GUN_HUB_LOG_FORMAT": "text",
        }
        try:
            done = subprocess.run(
                [sys.executable, "-m", "gun_hub", "audit", "verify"],
                capture_output=True,
                text=True,
                env=env,
                timeout=300,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return AuditResult(-1, "gun-hub audit verify did not finish within 300 s")
        output = (done.stdout + done.stderr).strip()
        return AuditResult(
            done.returncode,
            "\n".join(output.splitlines()[-12:]),
            self._audited_decisions(),
        )

    def _audited_decisions(self) -> tuple[tuple[str, int], ...]:
        """The (reference, version) of every DECISION entry on the audit topic."""
        topic = f"{self._prefix}.audit"
        found = []
        for record in self._read(topic):
            try:
                entry = json.loads(record.value)
                if entry.get("kind") == "DECISION":
                    found.append((str(entry["reference"]), int(entry["version"])))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # verify reports what is no link
        return tuple(found)


def ledger_lines(
    authority: str, everything: Mapping[str, Any], wanted: Iterable[str]
) -> list[LedgerLine]:
    """The lines of the ``wanted`` documents in a ``GET /admin/ledger`` answer. A field
    missing is a KeyError, never an empty ledger: an empty read would compare nothing."""
    references = set(wanted)
    views = [v for v in everything["documents"] if v["reference"] in references]
    return [line for view in views for line in _lines(authority, view)]


def _lines(authority: str, view: Mapping[str, Any]) -> list[LedgerLine]:
    lines = []
    for balance in view["balances"]:
        positions = balance.get("positions")
        lines.append(
            LedgerLine(
                authority=authority,
                document=str(view["reference"]),
                line=int(balance["line"]),
                authorised=Decimal(str(balance["authorised"])),
                reserved=Decimal(str(balance["reserved"])),
                written_off=Decimal(str(balance["written_off"])),
                positions=None
                if positions is None
                else tuple(
                    Holding(
                        str(p["declaration"]),
                        Decimal(str(p.get("reserved", "0"))),
                        Decimal(str(p.get("written_off", "0"))),
                    )
                    for p in positions
                ),
            )
        )
    return lines


def _get_json(url: str, attempts: int = 5) -> dict[str, Any] | None:
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
                data: dict[str, Any] = json.loads(response.read())
                return data
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            last = err
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            last = err
        time.sleep(0.5 * (attempt + 1))
    raise RuntimeError(f"partner admin API unreachable at {url}: {last}")
