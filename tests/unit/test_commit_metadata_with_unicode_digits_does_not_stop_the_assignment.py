"""Found by the review of 7dbb400 (adapters/base/ownership.py ``_positions``,
``_accepted_calls``; the same in ``_unsettled_offsets`` and ``_answered_also``):

a part is checked with ``str.isdigit()`` and then read with ``int()``. ``isdigit`` is true
of characters ``int`` refuses (superscripts, circled digits: ``"²".isdigit()``), so
metadata such as ``answered:10;unsettled:0;accepted:0=²`` is "understood" and then raises
ValueError out of ``PartitionOwnership.assigned`` (and ``deleted_unanswered`` before it):
``on_partitions_assigned`` stops the replica, the partition goes to the next one, which
stops too. A part not understood is meant to be logged and ignored (the parsers' own
contract: "a commit's metadata is anyone's in the group")."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.base.ownership import PartitionOwnership, deleted_unanswered
from adapters.base.pending import PendingOperations

HOSTILE = [
    "answered:10;unsettled:0;accepted:0=\u00b2",
    "answered:10;unsettled:0;accepted:\u00b2=0",
    "answered:10;unsettled:0;accepted:0=0-\u2460",
    "answered:10;unsettled:\u00b2",
    "answered:10;answered-also:\u00b2",
]


@pytest.mark.parametrize("metadata", HOSTILE)
def test_a_part_not_understood_is_ignored_not_raised(tmp_path: Path, metadata: str) -> None:
    pending = PendingOperations(tmp_path / "pending.sqlite")
    try:
        ownership = PartitionOwnership(pending)
        try:
            ownership.assigned(
                {0}, {0: metadata}, committed={0: 10}, log_starts={0: 0}, group_generation=3
            )
        except ValueError as err:
            pytest.fail(f"the assignment failed on commit metadata {metadata!r}: {err}")
        assert ownership.is_settled
    finally:
        pending.close()


def test_the_aged_out_check_ignores_a_part_not_understood() -> None:
    try:
        gaps = deleted_unanswered(10, "answered:12;answered-also:\u00b2", 20)
    except ValueError as err:
        pytest.fail(f"the aged-out check at the assignment raised: {err}")
    assert gaps == [range(12, 20)]
