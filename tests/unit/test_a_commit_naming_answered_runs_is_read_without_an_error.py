"""A commit of this release naming ``answered-runs:`` and no unsettled reservation is read
by a replica of this release without a "not understood" error (adapters/base/ownership.py
``_unsettled_offsets``; a review of df8d77b, its test first).

df8d77b adds the ``answered-runs:`` part, read by ``_answered_also``, but
``_unsettled_offsets`` skips only ``handed-over:``, ``answered-also:`` and
``accepted:``: on a commit without an ``unsettled:`` part (none under way at the
partner) it takes the runs part for an unsettled part it cannot read and logs an error
at every assignment, for a part its own release wrote and read in full.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from adapters.base.ownership import PartitionOwnership
from adapters.base.pending import PendingOperations


async def test_the_next_owner_reads_an_answered_runs_part_without_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    owner = PartitionOwnership(PendingOperations(tmp_path / "owner.sqlite"))
    next_owner = PartitionOwnership(PendingOperations(tmp_path / "next.sqlite"))
    try:
        owner.assigned({0}, {0: "answered:0"}, committed={0: 0}, log_starts={0: 0})
        async with owner.handling() as generation:
            owner.reading({0: 0})  # record 0 under way, slow
            answered = [*range(1, 1600, 2), *range(2000, 3000)]
            owner.answered_ahead({0: answered}, generation)
            assert not await owner.leaving({0}, within_s=0.01)
            offset = owner.to_commit().get(0, 0)
            metadata = owner.commit_metadata(0)
        assert ";answered-runs:" in metadata
        assert ";unsettled:" not in metadata
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="adapters.base.ownership"):
            next_owner.assigned({0}, {0: metadata}, committed={0: offset}, log_starts={0: 0})
        assert all(next_owner.answered_before(0, o) for o in answered)
        errors = [r.getMessage()[:80] for r in caplog.records if r.levelno >= logging.ERROR]
        assert not errors, f"reading its own release's commit logs {errors}"
    finally:
        owner._pending.close()
        next_owner._pending.close()
