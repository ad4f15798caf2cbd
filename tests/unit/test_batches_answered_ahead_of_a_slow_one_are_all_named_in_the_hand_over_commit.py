"""Every record the batches under way answered ahead of a slow earlier batch is named in
the hand-over commit, though they are four polls' worth (adapters/base/ownership.py
``answered_ahead`` and ``_answered_also_part``; a third review of the batches under way,
its test first).

Up to four batches of 500 records are handled at once (batch_pipeline.py). The first one
holds a reservation at the partner past a revocation's wait; the three after it are
answered whole and acknowledged, and wait for their turn: ``answered_ahead`` names their
1,500 records answered past the commit point, so that the hand-over does not give them
to the next owner unanswered (a reservation answered UNAVAILABLE asked again after its
deletion was answered: held for ever; e29f912). The ``answered-also:`` part lists each
one by its distance from the mark, four digits and a comma each here: 7,500 characters,
and the part gets at most what is left of 4,000. Some 800 are named, the rest logged as
"not named (too many)": their next owner asks their reservations again, the very outcome
``answered_ahead`` was added against. Before e29f912 a commit named at most one batch's
records past a left one (fewer than 500 distances of at most three digits: they fit).
"""

from __future__ import annotations

from pathlib import Path

from adapters.base.ownership import PartitionOwnership
from adapters.base.pending import PendingOperations

BATCH = 500  # the poll's max_records
AHEAD = 3  # BATCHES_IN_FLIGHT - 1: the batches after the slow one


async def test_four_polls_answered_ahead_of_a_slow_batch_are_all_named_answered(
    tmp_path: Path,
) -> None:
    owner = PartitionOwnership(PendingOperations(tmp_path / "owner.sqlite"))
    next_owner = PartitionOwnership(PendingOperations(tmp_path / "next.sqlite"))
    try:
        owner.assigned({0}, {0: "answered:0"}, committed={0: 0}, log_starts={0: 0})
        async with owner.handling() as generation:
            owner.reading({0: 0})  # the slow batch, 0 to 499, under way
            answered = range(BATCH, BATCH * (1 + AHEAD))
            # Each later batch answered whole and acknowledged, waiting for its turn.
            for n in range(AHEAD):
                batch = range(BATCH * (1 + n), BATCH * (2 + n))
                owner.answered_ahead({0: batch}, generation)
            # The revocation cannot wait for the slow batch: it commits meanwhile.
            assert not await owner.leaving({0}, within_s=0.01)
            marks = owner.to_commit()
            offset = marks.get(0, 0)
            metadata = owner.commit_metadata(0)
        assert len(metadata.encode()) <= 4096, "within offset.metadata.max.bytes"
        next_owner.assigned({0}, {0: metadata}, committed={0: offset}, log_starts={0: 0})
        asked_again = [o for o in answered if not next_owner.answered_before(0, o)]
        assert not asked_again, (
            f"hand-over commit at {offset} ({len(metadata)} characters) leaves "
            f"{len(asked_again)} of the {len(answered)} records answered ahead unnamed "
            f"(offsets {asked_again[0]} to {asked_again[-1]}): their next owner asks "
            "their reservations again, an UNAVAILABLE one applied after its deletion was "
            "answered"
        )
    finally:
        owner._pending.close()
        next_owner._pending.close()
