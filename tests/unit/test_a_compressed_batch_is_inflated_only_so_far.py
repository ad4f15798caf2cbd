"""A compressed record batch is inflated only up to a bounded size; beyond it the batch is
withheld: its consumer is handed one record in its place, which it dead-letters, and reads
on (gun_contract/kafka/decompression_limit.py).

The broker bounds a batch by its size as sent: a value of zeros compressed by the
producer is a few kilobytes on the wire and hundreds of megabytes once inflated. aiokafka
inflated it whole before any size check of ours: 350 MiB on ``gun.declarations`` took the
hub to 1.2 GiB and 150 MiB on a request topic an adapter to 387 MiB, over the memory
limits of the deployment (outside audit, stop 50). The batches here are aiokafka's own
format read by aiokafka's own parsers; on the real broker:
tests/e2e/test_every_consumer_survives_every_record.py (40 MiB of zeros, gzip, on every
topic a party may write: each withheld and dead-lettered, saying so).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cramjam
import pytest
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.legacy_records import LegacyRecordBatchBuilder
from aiokafka.record.util import calc_crc32c, encode_varint
from aiokafka.structs import TopicPartition

from gun_contract.kafka import decompression_limit

CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
SMALL_LIMIT = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_limit() -> Iterator[int]:
    decompression_limit.install(SMALL_LIMIT)
    try:
        yield SMALL_LIMIT
    finally:
        decompression_limit.install()


def test_every_consumer_of_a_process_that_talks_to_kafka_is_bounded() -> None:
    """Every component builds its clients with gun_contract/kafka/client.py, which
    installs the bounded decoders in aiokafka's parsers when imported: in a process of
    its own, importing that module and nothing else of ours (this test's process has
    imported the decompression module itself)."""
    checked = subprocess.run(
        [
            sys.executable,
            "-c",
            "import gun_contract.kafka.client\n"
            "from aiokafka.record import default_records\n"
            "from aiokafka.record._crecords import default_records as fast\n"
            "from gun_contract.kafka import decompression_limit as bounded\n"
            "for module in (default_records, fast):\n"
            "    for name in ('gzip_decode', 'snappy_decode', 'lz4_decode', 'zstd_decode'):\n"
            "        assert getattr(module, name) is getattr(bounded, name), name\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def _batch(codec: int, base_offset: int, values: list[bytes]) -> bytes:
    builder = DefaultRecordBatchBuilder(2, codec, 0, -1, -1, -1, 1 << 30)
    for delta, value in enumerate(values):
        builder.append(delta, 1_700_000_000_000 + delta, None, value, [])
    raw = bytearray(builder.build())
    raw[0:8] = struct.pack(">q", base_offset)
    return bytes(raw)


def _partition_records(raw: bytes, fetch_offset: int = 0) -> Any:
    return fetcher.PartitionRecords(
        TopicPartition("gun.declarations", 0),
        fetcher.MemoryRecords(raw),
        [],
        fetch_offset,
        None,
        None,
        True,
        0,
    )


def _read(raw: bytes) -> list[tuple[int, bytes | None, list[tuple[str, bytes]]]]:
    return [(r.offset, r.value, list(r.headers)) for r in _partition_records(raw)]


@pytest.mark.parametrize("name", sorted(CODECS))
def test_a_batch_inflating_beyond_the_limit_is_one_withheld_record_and_the_next_is_read(
    name: str, small_limit: int
) -> None:
    """Beyond the limit whatever the ratio: records that do not compress (sealed ones)."""
    noise = random.Random(7).randbytes(small_limit + 1)
    bomb = _batch(CODECS[name], 0, [b"first", noise, b"third"])
    after = _batch(CODECS[name], 3, [b"the next declaration"])
    read = _read(bomb + after)
    assert [offset for offset, _, _ in read] == [2, 3]
    _, value, headers = read[0]
    reason = dict(headers)[decompression_limit.WITHHELD_HEADER].decode()
    assert "offsets 0 to 2 withheld unread" in reason
    assert f"{name} records inflate beyond {small_limit} bytes" in reason
    assert value == reason.encode(), "what a dead letter keeps says why"
    assert read[1][1] == b"the next declaration"


@pytest.mark.parametrize("name", sorted(CODECS))
def test_a_fetch_hands_over_batches_until_they_inflated_twice_the_limit_then_reads_on(
    name: str, small_limit: int
) -> None:
    """Thousands of batches of a few bytes, each under the limit, inflated one fetch to
    gigabytes (review of this change): a fetch hands over batches until they have
    inflated to twice the limit; the consumer fetches the rest from there."""
    piece = 256 * 1024
    raw = b"".join(_batch(CODECS[name], n, [bytes(piece)]) for n in range(40))
    assert len(raw) < 40 * piece // 16, "compressed, the fetch is small"
    records = _partition_records(raw)
    first = [r.offset for r in records]
    assert first == list(range(len(first)))
    assert 2 * small_limit <= len(first) * piece < 2 * small_limit + 2 * piece
    assert records.next_fetch_offset == len(first), "the next fetch starts there"
    rest = b"".join(_batch(CODECS[name], n, [bytes(piece)]) for n in range(len(first), 40))
    assert [r.offset for r in _partition_records(rest, len(first))][:1] == [len(first)]


@pytest.mark.parametrize("name", sorted(CODECS))
def test_a_batch_within_the_limit_is_read_whole(name: str, small_limit: int) -> None:
    noise = random.Random(8).randbytes(small_limit - 200_000)
    a_long_repetitive_key = b"\xff" * 100_000  # a thousandfold smaller compressed: read
    values = [b"first", noise, a_long_repetitive_key, b"third"]
    assert [value for _, value, _ in _read(_batch(CODECS[name], 0, values))] == values


def _with_crc(batch: bytearray) -> bytes:
    """A format-2 batch's length and CRC set again after its bytes were changed."""
    batch[8:12] = struct.pack(">i", len(batch) - 12)
    batch[17:21] = struct.pack(">I", calc_crc32c(bytes(batch[21:])))
    return bytes(batch)


def test_a_gzip_stream_padded_with_zeros_is_read_as_before(small_limit: int) -> None:
    """gzip's reader skips zeros after a member (the broker's Java reader too): a batch
    aiokafka read must still be read (review of this change)."""
    padded = _with_crc(bytearray(_batch(CODECS["gzip"], 0, [b"a declaration"])) + bytes(8))
    assert [value for _, value, _ in _read(padded)] == [b"a declaration"]


def test_a_gzip_stream_of_many_members_is_read_whole(small_limit: int) -> None:
    """Java's reader and Python's read every member; read once, in pieces (a copy of the
    rest per member made it quadratic: seconds per MiB)."""
    raw = bytearray(_batch(CODECS["gzip"], 0, [b"a declaration"]))
    empty_member = gzip.compress(b"")
    padded = _with_crc(raw + empty_member * 20_000)
    assert [value for _, value, _ in _read(padded)] == [b"a declaration"]


# What follows each codec's magic bytes is no stream (snappy: a block of -4 bytes).
NOT_INFLATING = {
    "zstd": b"\x28\xb5\x2f\xfd" + b"\xff" * 64,
    "lz4": b"\x04\x22\x4d\x18" + b"\xff" * 64,
    "gzip": b"\x1f\x8b\x08\x00" + b"\xff" * 64,
    "snappy": b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\xff\xff\xff\xfc",
}


@pytest.mark.parametrize("name", sorted(NOT_INFLATING))
def test_a_batch_whose_records_do_not_inflate_is_withheld_not_raised_at_every_fetch(
    name: str,
) -> None:
    """A compressed stream that is none (or a snappy block of a negative size, which
    looped for ever): withheld like a bomb, where aiokafka raised at the same offset at
    every fetch and the consumer stopped there."""
    raw = bytearray(_batch(CODECS[name], 0, [b"x"]))
    broken = _with_crc(raw[:61] + NOT_INFLATING[name])
    [(offset, _, headers)] = _read(broken + _batch(0, 1, [b"next"]))[:1]
    reason = dict(headers)[decompression_limit.WITHHELD_HEADER].decode()
    assert offset == 0
    assert "do not inflate" in reason


@pytest.mark.parametrize("magic", [0, 1])
def test_a_batch_of_an_older_format_is_withheld_too(magic: int, small_limit: int) -> None:
    """Formats 0 and 1 (a broker before 3.0 may hold them) inflate a wrapper message
    lazily, when its first record is read."""

    def legacy(codec: int, first_offset: int, values: list[bytes]) -> bytes:
        builder = LegacyRecordBatchBuilder(magic, codec, 1 << 30)
        for delta, value in enumerate(values):
            timestamp = None if magic == 0 else 1_700_000_000_000
            builder.append(first_offset + delta, timestamp, None, value)
        return bytes(builder.build())

    read = _read(legacy(1, 0, [b"first", bytes(small_limit + 1)]) + legacy(0, 2, [b"after"]))
    assert len(read) == 2
    (withheld_at, _, headers), (after_at, value, _) = read
    reason = dict(headers)[decompression_limit.WITHHELD_HEADER].decode()
    assert "withheld unread: its gzip records inflate beyond" in reason
    assert (value, after_at) == (b"after", 2)
    assert withheld_at < after_at


def test_the_limit_is_four_of_the_largest_records_a_hub_topic_takes() -> None:
    from gun_contract.limits import MAX_RECORD_BYTES

    assert decompression_limit.MAX_DECOMPRESSED_BATCH_BYTES == 4 * MAX_RECORD_BYTES


def _zstd_bomb(value_bytes: int) -> bytes:
    """One record of ``value_bytes`` zeros in a zstd batch, compressed as it streams (the
    value is never held whole)."""
    head = bytearray()
    for number in (0, 0, 0):  # attributes (a byte), timestamp delta, offset delta
        encode_varint(number, head.append)
    head[0:1] = b"\x00"
    encode_varint(-1, head.append)  # no key
    encode_varint(value_bytes, head.append)
    tail = bytearray()
    encode_varint(0, tail.append)  # no headers
    length = bytearray()
    encode_varint(len(head) + value_bytes + len(tail), length.append)
    compressor = cramjam.zstd.Compressor(level=3)
    compressor.compress(bytes(length) + bytes(head))
    chunk = bytes(1 << 20)
    for _ in range(value_bytes >> 20):
        compressor.compress(chunk)
    compressor.compress(bytes(value_bytes & ((1 << 20) - 1)))
    compressor.compress(bytes(tail))
    records = bytes(compressor.finish())
    after_crc = (
        struct.pack(">hiqqqhii", 4, 0, 1_700_000_000_000, 1_700_000_000_000, -1, -1, -1, 1)
        + records
    )
    crc = calc_crc32c(after_crc)
    after_length = struct.pack(">ibI", -1, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(after_length)) + after_length


_CHILD = textwrap.dedent(
    """
    import json, sys
    from aiokafka.consumer import fetcher
    from aiokafka.structs import TopicPartition
    import gun_contract.kafka.client  # every process that talks to Kafka imports it
    raw = open(sys.argv[1], "rb").read()
    records = fetcher.PartitionRecords(
        TopicPartition("gun.declarations", 0), fetcher.MemoryRecords(raw), [], 0,
        None, None, True, 0,
    )
    read = [(r.offset, len(r.value), dict(r.headers).get("gun.withheld") is not None)
            for r in records]
    status = open("/proc/self/status").read().split("\\n")
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"read": read, "peak_mib": peak_kib // 1024}))
    """
)


def test_a_gigabyte_of_zeros_in_a_few_kilobytes_takes_no_more_memory_than_the_limit(
    tmp_path: Path,
) -> None:
    """In a process of its own, as a consumer meets it: its peak memory stays within the
    limit and what the interpreter and aiokafka take, not the gigabyte."""
    bomb = tmp_path / "bomb.batch"
    bomb.write_bytes(_zstd_bomb(1 << 30))
    assert bomb.stat().st_size < 1 << 20
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(bomb)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = json.loads(done.stdout)
    [(offset, _, withheld)] = outcome["read"]
    assert (offset, withheld) == (0, True), outcome
    limit_mib = decompression_limit.MAX_DECOMPRESSED_BATCH_BYTES >> 20
    assert outcome["peak_mib"] < 100 + 2 * limit_mib, outcome  # 2 GiB before
