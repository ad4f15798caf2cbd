"""Work done for a record acts for its partition's owner only while this worker owns it.

A record's settling (settling.py) outlives its event: its deliveries can be retried for
seconds (a leader moving), and meanwhile the group can give the record's partition to
another worker, which restores the partition's tables from their changelogs, reads the
record again and goes on (a newer version of the case opened, say). The settling's
``after_delivery`` then wrote this worker's old view of the case into that changelog, after
the new owner's writes, and the partition's next recovery restored the old one (found by
the scale-out review): a version never decided, its reservation held for ever.

So each partition's ownership by this worker has a generation, moved on when the group
revokes it (``Settling.give_up``). A settling remembers the generation its record's
partition had when it was tracked, and acts for the record (``after_delivery``, marking it
handled) only while that is still the generation; otherwise it runs ``if_undelivered``
and lets the record go: its partition's owner, this worker again or another, reads it
again. As a backstop the hub's tables refuse a changelog write to a partition the worker
does not own or is giving up (table_writes.py).

The settling tells what it acts for through a context variable set in its own task (a
copy of its event's context, where faust finds the event a table write belongs to):
delivery.py asks it before ``after_delivery``, without knowing of settlings.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

_STILL_OURS: ContextVar[Callable[[], bool] | None] = ContextVar("gun_hub_still_ours", default=None)


class PartitionGivenUp(RuntimeError):
    """Work for a partition this worker gave up since (or is giving up): not done, and
    not a failure either: the partition's owner reads the record again."""


def settling_for(still_ours: Callable[[], bool]) -> None:
    """Called by a settling in its own task: whether the partition it settles a record of
    is still this worker's, since the record was tracked."""
    _STILL_OURS.set(still_ours)


def acts_for_its_partition() -> bool:
    """False within the settling of a record whose partition changed hands since it was
    tracked; True anywhere else."""
    still_ours = _STILL_OURS.get()
    return still_ours is None or still_ours()
