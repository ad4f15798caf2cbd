"""Review of the lag read-back's per-process comparison (stop 59, ``counted_before``
grouping snapshots by ``by``; ``recent_snapshots`` reading one record before the window).

``gun.ops.lag`` is unkeyed: one partition (gun_contract/kafka/admin.py), every measuring
process's snapshots interleaved on it. The read-back holds ``seen_for_s`` plus 30 s before
the newest record, and the one record before that. Before stop 59's change a snapshot was
trusted when a minute older than the newest of all; now only when a minute older than the
newest *of its own process*. Two ways a loss shown for minutes is no longer trusted, and is
counted again by the process that starts (``GunHubRecordsLostToRetention`` pages a second
time for the same records, the defect of stop 58), where before the change it was not:

* a single measuring worker restarted twice within a minute (a crash loop): the first
  process's snapshots that the window holds span less than a minute (their newest is the
  second process's start), and the second's too, so none is trusted; the same with the
  first one's snapshots legacy (``by`` empty: a rolling upgrade);
* two live measuring workers at a ``lag_interval_s`` above 45 s: the window holds one
  snapshot of the newest's process, and the one record read before it is the *other*
  process's, so neither process has two snapshots a minute apart.
"""

from __future__ import annotations

import pytest

from gun_hub.ops.lag import counted_before
from tests.unit.test_records_a_group_lost_to_retention_are_counted_once_and_page import (
    DECISIONS,
    SEEN_FOR_S,
)
from tests.unit.test_the_lag_read_back_holds_a_snapshot_a_minute_old_at_any_interval import (
    on_the_topic,
    read_back,
    showing_the_loss,
)

# What every snapshot shows: the clearance system's reader of gun.decisions committed at
# 10, below the log start 60 (50 lost to retention, counted when first shown).
SHOWN_COUNTED = {("gun-clearance", DECISIONS, 0): 60}


@pytest.mark.parametrize("first_by", ["node-a/7/0a1b2c3d", ""], ids=["named", "legacy"])
async def test_a_loss_shown_for_minutes_is_not_counted_again_after_two_restarts_in_a_minute(
    monkeypatch: pytest.MonkeyPatch, first_by: str
) -> None:
    # P0 measures every 5 s and shows the loss for over nine minutes (it counted it and
    # was scraped many times), then dies; P1 starts, reads it back (trusted: nothing
    # counted), shows the same loss for 40 s and dies; P2 starts.
    p0 = [showing_the_loss(5 * n, first_by) for n in range(112)]  # 0 s to 555 s
    p1 = [showing_the_loss(560 + 5 * n, "node-a/8/4e5f6a7b") for n in range(9)]  # to 600 s
    snapshots = await read_back(monkeypatch, on_the_topic(p0 + p1), now_s=605)
    by_process = {s.by: sorted(x.at for x in snapshots if x.by == s.by) for s in snapshots}
    assert counted_before(snapshots, seen_for_s=SEEN_FOR_S) == SHOWN_COUNTED, (
        "P0 showed the loss for nine minutes, yet P2 takes nothing as counted and counts "
        "the 50 again (a second page); read back per process: "
        + ", ".join(f"{b!r}: {(v[-1] - v[0]).total_seconds():.0f} s" for b, v in by_process.items())
        + " (before stop 59's change, P0's snapshots a minute older than the newest were taken)"
    )


async def test_a_loss_two_live_workers_showed_for_ten_minutes_is_not_counted_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two measuring workers at lag_interval_s 120 s (the interval of the stop 59 review's
    # test), 20 s apart, both showing the loss for ten minutes; a third starts (a worker
    # added, or one of them restarted) at 605 s.
    interval = 120
    a = [showing_the_loss(interval * n, "node-a/7/0a1b2c3d") for n in range(6)]  # to 600 s
    b = [showing_the_loss(interval * n + 20, "node-b/9/8c9d0e1f") for n in range(5)]  # to 500 s
    snapshots = await read_back(monkeypatch, on_the_topic(a + b), now_s=605)
    assert counted_before(snapshots, seen_for_s=SEEN_FOR_S) == SHOWN_COUNTED, (
        f"read back {[(s.by, s.at.time().isoformat()) for s in snapshots]}: one snapshot of "
        "each worker (the record before the window is the other worker's), none a minute "
        "older than its own process's newest: the loss is counted and paged again"
    )
