"""Found by the review of f763421 (adapters/base/ownership.py ``accepted_at``,
adapters/base/runner.py ``_ask``):

f763421 keeps a commit's ``accepted:`` entries as spans, each entry bounded by one
request's calls (``_CALLS_AT_MOST``, 100,000) and the entries unbounded together, so
that reading the part costs what its characters do. But ``accepted_at`` expands its
entry into a frozenset of every position, for every record read (runner.py ``_ask``
calls it whether or not the record is a repeat), and the runner handles a batch's
records of different keys side by side, each ``_ask`` holding its expanded set across
the partner call it awaits. A commit metadata (anyone's in the group) of ~330 entries
``d=0-99999`` within Kafka's 4,096 characters, over records of distinct declarations,
so puts the 33 million positions the previous review measured at 2.5 GB back in memory
at once -- now during the next owner's first batch instead of in the rebalance callback.
The expansion is needless: the partner only asks ``position in accepted`` for a
request's few calls, which spans answer without expanding."""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

from adapters.base.ownership import _CALLS_AT_MOST, PartitionOwnership
from adapters.base.pending import PendingOperations

ENTRIES = 330
COMMITTED = 10


def hostile_metadata() -> str:
    distances = range(ENTRIES)
    entries = ",".join(f"{d}=0-{_CALLS_AT_MOST - 1}" for d in distances)
    return f"answered:{COMMITTED + ENTRIES};unsettled:0;accepted:{entries}"


async def test_a_batch_of_records_read_again_holds_a_bounded_memory(tmp_path: Path) -> None:
    metadata = hostile_metadata()
    assert len(metadata) <= 4096, len(metadata)
    pending = PendingOperations(tmp_path / "next.sqlite")
    try:
        ownership = PartitionOwnership(pending)
        ownership.assigned(
            {0}, {0: metadata}, committed={0: COMMITTED}, log_starts={0: 0}, group_generation=8
        )
        partner_answers = asyncio.Event()

        async def ask(offset: int) -> int:
            # As runner.py's _ask: the set is an argument of the awaited partner call.
            accepted = ownership.accepted_at(0, offset)
            await partner_answers.wait()
            return len(accepted)

        tracemalloc.start()
        try:
            asks = [asyncio.ensure_future(ask(COMMITTED + d)) for d in range(ENTRIES)]
            await asyncio.sleep(0)  # every key's record under way at the partner
            peak = tracemalloc.get_traced_memory()[1]
            partner_answers.set()
            await asyncio.gather(*asks)
        finally:
            tracemalloc.stop()
    finally:
        pending.close()
    assert peak < 32_000_000, (
        f"{len(metadata)} characters of commit metadata made the next owner's first batch "
        f"({ENTRIES} records of distinct keys, handled side by side) hold {peak / 1e6:.0f} MB: "
        "accepted_at expands each entry into a set of up to 100,000 positions, held across "
        "the partner call"
    )
