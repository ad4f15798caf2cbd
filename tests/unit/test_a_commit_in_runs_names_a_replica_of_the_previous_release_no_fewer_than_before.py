"""A commit that names its answered records in runs names a replica of the previous
release no fewer of them than that release's own commit did (adapters/base/ownership.py
``_answered_also_part``; a review of df8d77b, its test first).

df8d77b writes ``answered-runs:`` (which the previous release skips) when one by one the
records do not fit, and then gives ``answered-also:`` (which it reads) only the room the
runs leave. Where the records are scattered before a long run, the runs part takes about
as many characters as one by one did: the previous release's reader is left a few dozen
records where one by one in the same metadata it read hundreds. Mid-upgrade, a replica of
the previous release taking the partition over asks those reservations again (one
answered UNAVAILABLE applied after its deletion was answered: stop 54), more of them than
before the runs existed (143 of 1,800 where one by one named 906).

Now the first records are named one by one, and only the rest in runs: the previous
release reads as many as fit one by one in the room the runs of the rest leave (here 903:
the 24 characters of ``;answered-runs:2106-2999`` are three of its records), and this
release reads all 1,800. That trade, three records mid-upgrade for the 894 a replica of
this release no longer asks again, is the one decided (docs/adapters.md).
"""

from __future__ import annotations

from pathlib import Path

from adapters.base.ownership import PartitionOwnership, _answered_also
from adapters.base.pending import PendingOperations
from tests.unit.test_a_commit_of_this_release_names_its_answered_records_to_a_replica_of_the_previous_one import (  # noqa: E501
    _previous_release_answered_also,
)

METADATA_CHARS = 4000  # what every part together may take (``_METADATA_CHARS``)
SCATTERED = range(1, 1600, 2)  # records answered one in two
RUN = range(2000, 3000)  # then a batch answered whole


def _one_by_one_fit(distances: list[int], room: int) -> int:
    """How many of ``distances`` the previous release names one by one in ``room``."""
    used = 0
    for count, distance in enumerate(distances):
        used += len(str(distance)) + (1 if count else 0)
        if used > room:
            return count
    return len(distances)


async def test_a_replica_of_the_previous_release_reads_as_many_as_its_own_commit_named(
    tmp_path: Path,
) -> None:
    owner = PartitionOwnership(PendingOperations(tmp_path / "owner.sqlite"))
    try:
        owner.assigned({0}, {0: "answered:0"}, committed={0: 0}, log_starts={0: 0})
        async with owner.handling() as generation:
            owner.reading({0: 0})  # record 0 under way, slow
            answered = [*SCATTERED, *RUN]
            owner.answered_ahead({0: answered}, generation)
            assert not await owner.leaving({0}, within_s=0.01)
            metadata = owner.commit_metadata(0)
        assert metadata.split(";", 1)[0] == "answered:0"
        read = _previous_release_answered_also(metadata)
        parts = metadata.split(";")
        runs_part = next((";" + p for p in parts if p.startswith("answered-runs:")), "")
        room = METADATA_CHARS - len("answered:0;answered-also:")
        before = _one_by_one_fit(answered, room - len(runs_part))
        assert before >= _one_by_one_fit(answered, room) - 5  # a run's few characters
        assert _answered_also(metadata) == frozenset(answered)  # this release: every one
        assert len(read) >= before, (
            f"a replica of the previous release reads {len(read)} of the {len(answered)} "
            f"records answered past record 0 from {metadata[:120]!r}...: one by one, as "
            f"that release's own commit named them, the same metadata named {before}; "
            f"mid-upgrade it asks {before - len(read)} reservations again that it did not"
        )
    finally:
        owner._pending.close()
