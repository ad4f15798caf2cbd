"""What a commit names answered past its mark, its next owner reads: all of it, or, past
what a commit may name, the part the commit fits, never none (adapters/base/ownership.py
``_answered_also_part`` and ``_distances_named``; a review of 8470612, its test first).

8470612 writes the records answered past a left one as runs (``d-e``), as many as fit in
the metadata's characters, and reads at most ``_ANSWERED_ALSO_AT_MOST`` (100,000) of
them: a part naming more is refused whole, "not understood: ignored". The writer counts
characters only: a few runs name more than the reader takes. A partition whose first
record is left at every hand-over (its partner call slower than the revocation's wait)
carries what each owner answered past it into the next commit (``assigned`` reads it,
``handled`` keeps it); once that passes 100,000 the next owner reads none of it, and
asks them all again, where one by one the commit named as many as fit.
"""

from __future__ import annotations

from pathlib import Path

from adapters.base.ownership import PartitionOwnership
from adapters.base.pending import PendingOperations

INHERITED = 99_999  # named by the last owner's commit, as the reader still takes it
BATCH = 500


async def test_a_next_owner_reads_the_records_answered_past_a_record_left_again(
    tmp_path: Path,
) -> None:
    owner = PartitionOwnership(PendingOperations(tmp_path / "owner.sqlite"))
    next_owner = PartitionOwnership(PendingOperations(tmp_path / "next.sqlite"))
    try:
        inherited = f"answered:0;answered-also:1-{INHERITED}"
        owner.assigned({0}, {0: inherited}, committed={0: 0}, log_starts={0: 0})
        assert owner.answered_before(0, INHERITED), "the reader takes the last commit's part"
        async with owner.handling() as generation:
            owner.reading({0: 0})  # record 0 under way again, slow
            ahead = range(INHERITED + 1, INHERITED + 1 + BATCH)
            owner.answered_ahead({0: ahead}, generation)
            assert not await owner.leaving({0}, within_s=0.01)
            offset = owner.to_commit().get(0, 0)
            metadata = owner.commit_metadata(0)
        next_owner.assigned({0}, {0: metadata}, committed={0: offset}, log_starts={0: 0})
        answered = range(1, ahead.stop)
        asked_again = [o for o in answered if not next_owner.answered_before(0, o)]
        assert len(asked_again) < len(answered), (
            f"the hand-over commit at {offset} names {metadata!r}: its next owner reads "
            f"none of the {len(answered)} records answered past record 0, and asks them "
            "all again, where a commit naming a part it reads would have kept that part"
        )
    finally:
        owner._pending.close()
        next_owner._pending.close()
