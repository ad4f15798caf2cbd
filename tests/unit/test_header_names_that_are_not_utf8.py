"""A record whose header name is not UTF-8 is read, not a wall (gun_contract/kafka/
lenient_headers.py; found by review in stop 34).

A broker keeps whatever header bytes a producer sent (kcat, librdkafka); aiokafka decoded
the names strictly, and one such record made every fetch of its partition raise for ever:
each consumer of the topic stopped at it. These tests build the batches as a broker sends
them and read them through aiokafka's own fetch path."""

from __future__ import annotations

import gzip
import struct

import pytest
from aiokafka.consumer import fetcher
from aiokafka.record import memory_records
from aiokafka.record.default_records import DefaultRecordBatchBuilder, _DefaultRecordBatchPy
from aiokafka.record.memory_records import _MemoryRecordsPy
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition

from gun_contract.kafka import lenient_headers

PLACEHOLDER = "QQQQ"
NOT_UTF8 = b"\xff\xfeQQ"  # as long as the placeholder: the lengths stay right
READ_COMMITTED = 1
HEADER_SIZE = 61  # a format-2 batch's header
CRC_AT, ATTRIBUTES_AT, LENGTH_AT = 17, 21, 8


def batch(base_offset: int, names: list[str], *, gzipped: bool = False) -> bytes:
    """A batch of one record per name (the placeholder replaced by bytes that are not
    UTF-8), its CRC made again, as a broker would send it."""
    builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 20)
    for delta, name in enumerate(names):
        builder.append(delta, 1_700_000_000_000, None, f"value {delta}".encode(), [(name, b"x")])
    raw = bytearray(builder.build())
    struct.pack_into(">q", raw, 0, base_offset)
    raw = bytearray(bytes(raw).replace(PLACEHOLDER.encode(), NOT_UTF8))
    if gzipped:
        records = gzip.compress(bytes(raw[HEADER_SIZE:]))
        raw = raw[:HEADER_SIZE] + records
        struct.pack_into(">i", raw, LENGTH_AT, len(raw) - 12)
        attributes = struct.unpack_from(">h", raw, ATTRIBUTES_AT)[0] | 1  # gzip
        struct.pack_into(">h", raw, ATTRIBUTES_AT, attributes)
    struct.pack_into(">I", raw, CRC_AT, calc_crc32c(bytes(raw[ATTRIBUTES_AT:])))
    return bytes(raw)


def read(raw: bytes, fetch_offset: int = 0) -> list[tuple[int, list[tuple[str, bytes]]]]:
    """The records aiokafka's fetch path hands a consumer from these fetched bytes."""
    records = fetcher.PartitionRecords(
        TopicPartition("gun.declarations", 0),
        fetcher.MemoryRecords(raw),
        [],
        fetch_offset,
        None,
        None,
        True,  # the CRCs checked, as by default
        READ_COMMITTED,
    )
    return [(r.offset, list(r.headers)) for r in records]


@pytest.fixture(autouse=True)
def installed() -> None:
    lenient_headers.install()


def test_a_header_name_that_is_not_utf8_is_read_with_its_invalid_bytes_replaced() -> None:
    fetched = batch(40, ["gun.trace.id", PLACEHOLDER, "gun.trace.id"])
    assert read(fetched) == [
        (40, [("gun.trace.id", b"x")]),
        (41, [("\ufffd\ufffdQQ", b"x")]),
        (42, [("gun.trace.id", b"x")]),
    ]


def test_the_records_after_it_in_the_fetch_are_read_once_each() -> None:
    fetched = batch(0, ["a", "b"]) + batch(2, ["c", PLACEHOLDER]) + batch(4, ["d"])
    assert [offset for offset, _ in read(fetched)] == [0, 1, 2, 3, 4]


def test_a_fetch_that_starts_inside_a_batch_hands_on_nothing_before_its_offset() -> None:
    fetched = batch(10, ["a", "b", PLACEHOLDER, "c"])
    assert [offset for offset, _ in read(fetched, fetch_offset=12)] == [12, 13]


def test_a_compressed_batch_is_read_too() -> None:
    fetched = batch(7, [PLACEHOLDER, "b"], gzipped=True)
    assert read(fetched) == [(7, [("\ufffd\ufffdQQ", b"x")]), (8, [("b", b"x")])]


def test_without_it_aiokafka_stops_at_the_record_for_ever() -> None:
    """What the module works around (if a new aiokafka reads such names itself, this
    fails and the module can go)."""
    with pytest.raises(UnicodeDecodeError):
        list(
            fetcher.PartitionRecords(
                TopicPartition("gun.declarations", 0),
                lenient_headers._FAST_RECORDS(batch(0, [PLACEHOLDER])),
                [],
                0,
                None,
                None,
                True,
                READ_COMMITTED,
            )
        )


def test_with_aiokafka_in_pure_python_it_is_read_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without its C extension (``AIOKAFKA_NO_EXTENSIONS``, or a platform without the
    wheel) aiokafka wraps the decoding error in ``CorruptRecordException`` (found by
    review in stop 34)."""
    monkeypatch.setattr(lenient_headers, "_FAST_RECORDS", _MemoryRecordsPy)
    monkeypatch.setattr(memory_records, "DefaultRecordBatch", _DefaultRecordBatchPy)
    assert [offset for offset, _ in read(batch(0, ["a", PLACEHOLDER, "b"]))] == [0, 1, 2]
