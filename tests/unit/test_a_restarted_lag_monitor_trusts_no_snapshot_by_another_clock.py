"""Review of the read-back at a lag monitor's start (docs/adr/0029): a loss shown only by
a process that died at once must be counted again by its successor (a second page
rather than none). ``counted_before`` trusts a snapshot when it is dated at least
``seen_for_s`` before the newest snapshot read back; but the newest may come from an
earlier process on another node whose clock ran ahead (the follower accepts snapshots up
to ``AHEAD_AT_MOST``, 300 s, ahead), so the dying process's only snapshot looks a minute
old and is trusted: the loss is taken as counted though nothing ever scraped it, and it
never pages.
"""

from __future__ import annotations

from datetime import timedelta

from gun_hub.ops.lag import counted_before
from tests.unit.test_records_a_group_lost_to_retention_are_counted_once_and_page import (
    DECISIONS,
    SEEN_FOR_S,
    T0,
    Cluster,
    counted,
)


async def test_a_loss_shown_for_moments_is_counted_again_whatever_an_earlier_clock_said() -> None:
    cluster = Cluster("clearance-restart-skewed-clock")
    # P0, on a node whose clock runs 120 s ahead (within the contract's skew), measures
    # the group keeping up, and is stopped (a rolling restart moves the worker).
    cluster.commits = {(DECISIONS, 0): 100}
    cluster.starts[(DECISIONS, 0)] = 60
    ahead = iter([T0 + timedelta(seconds=120 + 5 * n) for n in range(4)])
    p0 = cluster.monitor(clock=lambda: next(ahead))
    before = [await p0.measure() for _ in range(4)]  # its last dated T0 + 135 s
    # P1, on a node with a true clock, starts at T0 + 20 s and finds the group's commit
    # below the log start: it counts 50, publishes one snapshot, and dies a second later,
    # before any scrape.
    cluster.commits = {(DECISIONS, 0): 10}
    p1 = cluster.monitor(clock=lambda: T0 + timedelta(seconds=20))
    before.append(await p1.measure())
    assert counted(cluster.group) == 50
    # P2 reads back: nothing scraped ever saw the 50, so it must count them again.
    p2 = cluster.monitor(clock=lambda: T0 + timedelta(seconds=40))
    p2.recall(counted_before(before, seen_for_s=SEEN_FOR_S))
    await p2.measure()
    assert counted(cluster.group) == 50 + 50, (
        "the loss P1 showed for a second was taken as counted: P0's snapshots, dated "
        "ahead by its clock, made it look a minute old; no page for it"
    )
