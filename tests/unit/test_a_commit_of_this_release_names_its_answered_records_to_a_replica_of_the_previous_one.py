"""The records a commit of this release names answered past its mark are read as such by
a replica of the previous release, during a rolling upgrade (adapters/base/ownership.py
``_answered_also_part`` and ``_runs``; a review of 8470612, its test first).

8470612 names three or more consecutive distances as one run, ``d-e``, in the
``answered-also:`` part the previous release reads. That release's reader takes the
part only if every item is a plain number: one run in it and it ignores the whole part
("not understood: ignored"). A batch left its first record (a slow partner call past a
revocation's wait) and the batch after it was answered whole, 500 records: the previous
release named all 500, one by one (some 2,000 characters: they fit), and its next owner
asked none again. Written by this release as ``500-999``, a replica of the previous one
that takes the partition over reads none of them answered and asks all 500 again: a
reservation answered UNAVAILABLE applied after its deletion was answered (held for
ever, stop 54). During the upgrade the runs make the hand-over worse than before them.
"""

from __future__ import annotations

from pathlib import Path

from adapters.base.ownership import PartitionOwnership
from adapters.base.pending import PendingOperations

BATCH = 500


def _number(text: str) -> int | None:
    if not (0 < len(text) <= 18 and text.isascii() and text.isdigit()):
        return None
    return int(text)


def _previous_release_answered_also(metadata: str) -> frozenset[int]:
    """``_answered_also`` as the release before 8470612 reads it (e06a055)."""
    first = metadata.split(";", 1)[0]
    if not first.startswith("answered:"):
        return frozenset()
    mark = _number(first.removeprefix("answered:"))
    if mark is None:
        return frozenset()
    for part in metadata.split(";")[1:]:
        if part.startswith("answered-also:"):
            distances = [_number(d) for d in part.removeprefix("answered-also:").split(",")]
            if None not in distances:
                return frozenset(mark + d for d in distances if d is not None)
    return frozenset()


async def test_a_replica_of_the_previous_release_reads_the_records_answered_ahead(
    tmp_path: Path,
) -> None:
    owner = PartitionOwnership(PendingOperations(tmp_path / "owner.sqlite"))
    try:
        owner.assigned({0}, {0: "answered:0"}, committed={0: 0}, log_starts={0: 0})
        async with owner.handling() as generation:
            owner.reading({0: 0})  # the slow batch, 0 to 499, under way
            answered = range(BATCH, 2 * BATCH)
            owner.answered_ahead({0: answered}, generation)  # the next one, answered whole
            assert not await owner.leaving({0}, within_s=0.01)
            metadata = owner.commit_metadata(0)
        assert metadata.split(";", 1)[0] == "answered:0"
        read = _previous_release_answered_also(metadata)
        asked_again = [o for o in answered if o not in read]
        assert not asked_again, (
            f"a replica of the previous release reads {len(read)} of the {len(answered)} "
            f"records answered ahead from {metadata!r}: it asks {len(asked_again)} "
            "reservations again, where the previous release's own commit named all of them"
        )
    finally:
        owner._pending.close()
