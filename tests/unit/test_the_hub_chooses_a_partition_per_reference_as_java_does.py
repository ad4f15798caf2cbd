"""Where the hub chooses a partition for its own records about a reference (the decision
outbox: ADR 0005's addendum of stop 38), it hashes the reference as the Java client's
default partitioner does: stable across processes, releases and languages, so every
worker puts every decision of one reference on one outbox partition."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from gun_contract.topics import reference_partition


def test_the_hash_is_javas_murmur2_of_the_utf8_bytes() -> None:
    # Kafka's own test vectors (Utils.murmur2: "21" -> -973932308, "foobar" -> -790332482),
    # kept positive as its partitioner does (& 0x7fffffff).
    assert reference_partition("21", 1_000_000_007) == (-973932308 & 0x7FFFFFFF) % 1_000_000_007
    assert reference_partition("foobar", 7) == (-790332482 & 0x7FFFFFFF) % 7


def test_it_is_the_partition_the_default_java_partitioner_gives_the_key() -> None:
    partitions = list(range(4))
    for n in range(200):
        reference = f"26FRXPART{n:09d}"
        expected = DefaultPartitioner()(reference.encode(), partitions, partitions)
        assert reference_partition(reference, 4) == expected


def test_a_non_ascii_reference_is_hashed_as_utf8() -> None:
    partitions = list(range(12))
    expected = DefaultPartitioner()("26FRÉ".encode(), partitions, partitions)
    assert reference_partition("26FRÉ", 12) == expected
    assert 0 <= reference_partition("26FRÉ", 12) < 12
