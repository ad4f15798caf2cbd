"""Every compression codec a Kafka client may use is read (found by review in stop 34).

A producer chooses its batches' codec: librdkafka (the clearance system's or a partner's
client, kcat) offers gzip, snappy, lz4 and zstd, and franz-go compresses with snappy by
default. aiokafka reads snappy, lz4 and zstd only with ``cramjam`` installed; without it
a batch in one of them raised ``UnsupportedCodecError`` at the same offset at every fetch,
and every consumer of the partition stopped there, as for a header name that is not
UTF-8 (gun_contract/kafka/lenient_headers.py). The broker keeps a batch as its producer
compressed it (every topic's ``compression.type`` is ``producer``)."""

from __future__ import annotations

import pytest
from aiokafka import codec
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import TopicPartition

CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


@pytest.mark.parametrize("name", sorted(CODECS))
def test_a_batch_in_each_codec_is_read(name: str) -> None:
    assert getattr(codec, f"has_{name}")(), f"aiokafka cannot read {name}: install cramjam"
    builder = DefaultRecordBatchBuilder(2, CODECS[name], 0, -1, -1, -1, 1 << 20)
    for offset in range(3):
        builder.append(offset, 1_700_000_000_000, None, b"declaration %d" % offset, [])
    records = fetcher.PartitionRecords(
        TopicPartition("gun.declarations", 0),
        fetcher.MemoryRecords(bytes(builder.build())),
        [],
        0,
        None,
        None,
        True,
        0,
    )
    assert [r.value for r in records] == [b"declaration 0", b"declaration 1", b"declaration 2"]
