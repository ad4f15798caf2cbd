"""The decision publisher remembers a bounded number of published decisions per
partition (issue 12, bounded state; gun_hub/runtime/publisher.py): a decision announced again
follows its original within the few records a crash left uncommitted, so the memory is
counted in decisions, never in time (a hub down for a day adds no record in between)."""

from __future__ import annotations

from gun_hub.pipeline.decision_outbox import HEADER_VERSION
from gun_hub.runtime.publisher import PublishedMemory, _version_of, restore_from


def test_the_memory_keeps_the_latest_decisions_up_to_its_capacity() -> None:
    memory = PublishedMemory(capacity=3)
    for n in range(5):
        memory.add((f"REF{n}".encode(), b"1"))
    assert len(memory) == 3
    assert (b"REF0", b"1") not in memory
    assert (b"REF4", b"1") in memory
    assert (b"REF2", b"1") in memory


def test_a_decision_seen_again_counts_as_recent() -> None:
    memory = PublishedMemory(capacity=2)
    memory.add((b"A", b"1"))
    memory.add((b"B", b"1"))
    memory.add((b"A", b"1"))  # published on a batch retried: the latest again
    memory.add((b"C", b"1"))
    assert (b"A", b"1") in memory
    assert (b"B", b"1") not in memory


def test_the_restore_reads_back_twice_the_capacity_at_most() -> None:
    """A transaction's commit marker takes an offset: one decision per transaction
    takes two, so twice the capacity covers the capacity's worth of decisions."""
    assert restore_from(beginning=0, end=100_000, capacity=20_000) == 60_000
    assert restore_from(beginning=500, end=1_000, capacity=20_000) == 500
    assert restore_from(beginning=0, end=0, capacity=20_000) == 0


def test_an_outbox_record_whose_version_header_is_null_is_read_as_having_none() -> None:
    """A null version header raised TypeError in the publisher, which stopped the worker
    (found by review in stop 34); read as none, the record does not open and is skipped
    as unreadable."""
    assert _version_of([(HEADER_VERSION, None)]) == b""
    assert _version_of([]) == b""
    assert _version_of([("other", b"9"), (HEADER_VERSION, b"2")]) == b"2"


def test_a_version_at_or_below_one_published_of_its_reference_is_not_published() -> None:
    """The publisher is the one gate of a reference's versions (review stop 38, D1): its
    cases on two partitions may both decide, and only the first decision of a version,
    never one below a version published, reaches the clearance system."""
    memory = PublishedMemory(capacity=10)
    memory.add((b"A", b"2"))
    assert memory.refusal((b"A", b"2")) == "duplicate"
    assert memory.refusal((b"A", b"1")) == "superseded"
    assert memory.refusal((b"A", b"3")) is None
    assert memory.refusal((b"B", b"1")) is None
    memory.add((b"A", b"3"))
    assert memory.refusal((b"A", b"2")) == "superseded"  # published, and superseded since


def test_the_highest_versions_are_bounded_as_the_decisions_are() -> None:
    memory = PublishedMemory(capacity=2)
    memory.add((b"A", b"5"))
    memory.add((b"B", b"1"))
    memory.add((b"C", b"1"))
    assert memory.refusal((b"A", b"4")) is None  # forgotten with the oldest decisions
    assert memory.refusal((b"B", b"1")) == "duplicate"
    assert memory.refusal((b"C", b"0")) == "superseded"


def test_an_unreadable_version_is_never_called_superseded() -> None:
    """The record does not open then (its seal is bound to the version): dead-lettered
    as unreadable, not counted as a stale version."""
    memory = PublishedMemory(capacity=2)
    memory.add((b"A", b"5"))
    assert memory.refusal((b"A", b"")) is None
    assert memory.refusal((b"A", b"x")) is None
