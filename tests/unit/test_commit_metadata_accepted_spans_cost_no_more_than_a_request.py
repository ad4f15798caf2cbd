"""Found by the review of 7dbb400 (adapters/base/ownership.py ``_positions``,
``_accepted_calls``):

the ``accepted:`` part's spans are bounded one by one (``_CALLS_AT_MOST``, "a commit's
metadata is anyone's in the group"), but each span is expanded into a set of ints and
neither the spans of one entry nor the entries of a part are bounded together. Within
Kafka's 4,096 characters, ``accepted:0=0-99999,1=0-99999,...`` (339 entries) expands to
33.9 million positions: 2.5 GB resident and 2.3 s on the event loop as the partition is
assigned (``PartitionOwnership.assigned``, inside the rebalance callback); one entry of
overlapping spans ``0=0-99999.0-99999...`` costs 1.1 s for 100,000 positions. Every replica the
partition goes to is killed for memory (a pod's limit) or stalls, and the group
rebalances again: the adapter answers nothing. A commit the adapter itself writes never
names more calls than one request makes (``_CALLS_AT_MOST``), so more is not understood."""

from __future__ import annotations

import time
import tracemalloc

from adapters.base.ownership import _CALLS_AT_MOST, _accepted_calls

HEAD = "answered:20;unsettled:0,1,2,3,4,5,6,7,8,9;accepted:"


def test_the_accepted_part_of_one_commit_takes_a_bounded_memory() -> None:
    metadata = HEAD + ",".join(f"{d}=0-{_CALLS_AT_MOST - 1}" for d in range(10))
    assert len(metadata) < 4096
    tracemalloc.start()
    try:
        _accepted_calls(metadata, 10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32_000_000, (
        f"{len(metadata)} characters of commit metadata took {peak / 1e6:.0f} MB to read "
        "(each span expanded into a set of ints, entries unbounded together): the whole "
        "4,096 characters take some 2.5 GB"
    )


def test_overlapping_spans_of_one_entry_are_read_in_bounded_time() -> None:
    metadata = HEAD + "0=" + ".".join([f"0-{_CALLS_AT_MOST - 1}"] * 480)
    assert len(metadata) < 4096
    # The CPU time of the reading, not the wall clock's: a loaded machine's wait for a CPU
    # (0.4 s once in CI) is no work of the reading's, and 48 million insertions are seconds
    # of CPU time.
    began = time.thread_time()
    _accepted_calls(metadata, 10)
    took = time.thread_time() - began
    assert took < 0.25, (
        f"one entry of 480 overlapping spans ({len(metadata)} characters) took {took:.1f} s "
        "of the event loop to read (48 million set insertions for 100,000 positions)"
    )
