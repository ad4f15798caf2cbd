"""Found by the review of the commit naming accepted follow-ups (``accepted:``):

the commit metadata's 4,000 characters were shared by the unsettled part and the records
answered past the one a batch left (``answered-also:``), which got all the others left.
The new ``accepted:`` part is budgeted *before* it (ownership.py ``_metadata``): a
write-off the partner accepted on some hundreds of documents takes the room, and the
records answered past are left out. Their next owner asks them again: a reservation
answered UNAVAILABLE is applied after its deletion was answered, the quantity held for
ever (review of stop 54, HIGH) -- to save a mark whose loss costs a follow-up read as
refused past the window. Before the commit, the same partition's commit named them all."""

from __future__ import annotations

from pathlib import Path

from adapters.base.ownership import PartitionOwnership
from adapters.base.pending import PendingOperations
from tests.unit.test_every_accepted_follow_up_that_fits_is_named_in_the_commit import (
    LARGE,
    write_off_of,
)

ANSWERED_PAST = range(12, 512)  # a batch of 500 records answered past the left one (11)


def test_records_answered_past_are_named_beside_an_accepted_write_off(tmp_path: Path) -> None:
    large = write_off_of(LARGE, 900)
    accepted = [(large, frozenset(range(900)))]
    pending = PendingOperations(tmp_path / "first.sqlite")
    try:
        ownership = PartitionOwnership(pending, lambda: [large], lambda: accepted)
        ownership.assigned({0}, {}, committed={0: 10}, log_starts={0: 0}, group_generation=7)
        pending.add(large, 0, 10)
        # The batch left the record at 11 (a revocation during it) and answered 500 after.
        ownership.handled({0: 11}, ownership.generation, answered={0: [10, *ANSWERED_PAST]})
        metadata = ownership.commit_metadata(0)
    finally:
        pending.close()
    assert len(metadata) <= 4000, len(metadata)
    following = PendingOperations(tmp_path / "next.sqlite")
    try:
        taken = PartitionOwnership(following)
        taken.assigned({0}, {0: metadata}, committed={0: 10}, log_starts={0: 0}, group_generation=8)
        asked_again = [o for o in ANSWERED_PAST if not taken.answered_before(0, o)]
    finally:
        following.close()
    assert not asked_again, (
        f"{len(asked_again)} records answered past the left one (from offset "
        f"{asked_again[0]}) are not named in the commit, its accepted part taking the room "
        f"({metadata[:60]!r}...{metadata[-60:]!r}): their next owner asks their "
        "reservations again"
    )
