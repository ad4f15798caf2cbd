"""An adapter reads a redrive as its original (gun_contract/redrive.py, ADR 0010
addendum): judged at the original's broker time, as the first time, and dead-lettered
again about the original, never about the copy; a broker that cannot give the original
back stops the replica (its restart reads the redrive again) rather than dead-letter the
copy as a record of its own.

The runner is the real one before a stand-in partner; the log is a dict of the records the
broker holds (tests/integration/test_an_adapter_reads_a_redrive_of_its_dead_letter_as_the_
original.py runs it on the real broker).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiokafka.errors import KafkaTimeoutError
from aiokafka.structs import ConsumerRecord

from adapters.base import load_adapter
from adapters.base.runner import AdapterRunner
from gun_contract.dead_letter import (
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    HEADER_SOURCE_OFFSET,
    header_value,
)
from gun_contract.effects import Effects
from gun_contract.envelope import LOG_APPEND_TIME, ContentType
from gun_contract.kafka.log_reader import LoggedRecord
from gun_contract.model.exchange import Operation
from gun_contract.redrive import HEADER_REDRIVE_OF
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import SecuritySettings, Settings
from tests.adapter_fixtures import PartnerAnsweringByRule
from tests.conftest import envelope_of
from tests.unit.test_a_sealed_message_is_read_only_as_the_type_it_was_sealed_as import (
    sealed_by_the_hub,
)
from tests.unit.test_state_pending_queue import TOPICS, dga

REQUESTS = TOPICS.requests("dga")


class Log:
    """The records the broker holds, by position; ``failing``: it does not answer;
    ``starts_at``: where retention left the log; ``slow``: a read between two positions
    does not end in time; ``read_between_asked``: what was asked so."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, int, int], LoggedRecord] = {}
        self.failing = False
        self.starts_at = 0
        self.slow = False
        self.read_between_asked: list[tuple[int, int]] = []

    def put(
        self,
        offset: int,
        key: bytes,
        value: bytes,
        accepted_at: float,
        redrive_of: int | None = None,
    ) -> None:
        headers = (
            ()
            if redrive_of is None
            else ((HEADER_REDRIVE_OF, f"{REQUESTS}/0/{redrive_of}".encode()),)
        )
        self.records[(REQUESTS, 0, offset)] = LoggedRecord(
            REQUESTS, 0, offset, key, value, headers, int(accepted_at * 1000), LOG_APPEND_TIME
        )

    async def read(self, topic: str, partition: int, offset: int) -> LoggedRecord | None:
        if self.failing:
            raise KafkaTimeoutError
        return self.records.get((topic, partition, offset))

    async def read_between(
        self,
        topic: str,
        partition: int,
        first: int,
        end: int,
        *,
        key: bytes | None,
        within_s: float | None = None,
    ) -> list[LoggedRecord] | None:
        self.read_between_asked.append((first, end))
        if self.failing:
            raise KafkaTimeoutError
        if self.slow:
            raise TimeoutError
        if first < self.starts_at:
            return None
        return [
            record
            for (t, p, offset), record in sorted(self.records.items())
            if (t, p) == (topic, partition) and first <= offset < end and record.key == key
        ]


def adapter(tmp_path: Path, log: Log) -> tuple[AdapterRunner, PartnerAnsweringByRule, Path]:
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    settings = Settings(security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / "state"))
    partner = PartnerAnsweringByRule()
    runner = AdapterRunner(
        load_adapter("dga"),
        settings,
        TOPICS,
        envelope_of("dga", TOPICS, keys),
        partner,
        record_reader=log,
    )
    return runner, partner, keys


def record_at(
    offset: int, key: bytes, value: bytes, accepted_at: float, redrive_of: int | None = None
) -> ConsumerRecord[bytes, bytes]:
    headers = (
        [] if redrive_of is None else [(HEADER_REDRIVE_OF, f"{REQUESTS}/0/{redrive_of}".encode())]
    )
    return ConsumerRecord(
        REQUESTS,
        0,
        offset,
        int(accepted_at * 1000),
        LOG_APPEND_TIME,
        key,
        value,
        None,
        0,
        0,
        headers,
    )


async def test_a_redrive_of_a_request_too_old_the_first_time_is_refused_as_then(
    tmp_path: Path,
) -> None:
    log = Log()
    runner, partner, keys = adapter(tmp_path, log)
    request = dga(Operation.RESERVE)
    sealed = sealed_by_the_hub(request, keys, ContentType.JSON)
    key = request.reference.encode()
    # The broker took the original two hours after it was sealed (a hub whose clock was
    # that far behind): refused then; a redrive now, read at its own time, would open.
    log.put(3, key, sealed, accepted_at=time.time() + 7200)
    outbox = Effects()
    await runner._handle_survivably(record_at(9, key, sealed, time.time(), redrive_of=3), outbox)

    [dead] = outbox.to(TOPICS.dlq)
    assert (header_value(dead.headers, HEADER_ERROR_KIND) or "").startswith("ENVELOPE_")
    assert header_value(dead.headers, HEADER_SOURCE_OFFSET) == "3"  # about the original
    assert partner.asked == []


async def test_a_redrive_of_a_request_fresh_the_first_time_is_asked(tmp_path: Path) -> None:
    log = Log()
    runner, partner, keys = adapter(tmp_path, log)
    request = dga(Operation.RESERVE)
    sealed = sealed_by_the_hub(request, keys, ContentType.JSON)
    key = request.reference.encode()
    now = time.time()
    log.put(3, key, sealed, accepted_at=now)
    outbox = Effects()
    await runner._handle_survivably(record_at(9, key, sealed, now + 7200, redrive_of=3), outbox)

    assert outbox.to(TOPICS.dlq) == []
    assert partner.asked == [request.request_id]
    assert len(outbox.to(TOPICS.responses("dga"))) == 1


async def test_a_broker_that_cannot_give_the_original_back_stops_the_replica(
    tmp_path: Path,
) -> None:
    log = Log()
    runner, partner, keys = adapter(tmp_path, log)
    request = dga(Operation.RESERVE)
    sealed = sealed_by_the_hub(request, keys, ContentType.JSON)
    log.failing = True
    outbox = Effects()
    record = record_at(9, request.reference.encode(), sealed, time.time(), redrive_of=3)
    with pytest.raises(KafkaTimeoutError):
        await runner._handle_survivably(record, outbox)
    assert outbox.records == []  # no dead letter about the copy itself
    assert partner.asked == []


async def test_a_redrive_of_a_redrive_is_refused_and_never_asked(tmp_path: Path) -> None:
    """The claimed original is itself a redrive (of offset 3): read as it, the request
    would be judged at the copy's broker time; refused as the hub refuses it
    (gun_contract/redrive.py ``verify_claim``)."""
    log = Log()
    runner, partner, keys = adapter(tmp_path, log)
    request = dga(Operation.RESERVE)
    sealed = sealed_by_the_hub(request, keys, ContentType.JSON)
    key = request.reference.encode()
    now = time.time()
    log.put(3, key, sealed, accepted_at=now)
    log.put(9, key, sealed, accepted_at=now, redrive_of=3)
    outbox = Effects()
    await runner._handle_survivably(record_at(12, key, sealed, now, redrive_of=9), outbox)

    [dead] = outbox.to(TOPICS.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == "REDRIVE_UNVERIFIED"
    assert header_value(dead.headers, HEADER_SOURCE_OFFSET) == "12"  # the refused copy
    assert f"itself a redrive of '{REQUESTS}/0/3'" in (
        header_value(dead.headers, HEADER_ERROR_REASON) or ""
    )
    assert partner.asked == []
