"""What keeps a hub worker from processing now: its readiness probe's reasons.

A worker the group gave no partition (more workers than partitions: a standby, a surge
pod in a rolling update) is ready once its first rebalance has ended: it is a healthy
member waiting for work, and one never ready would stall a rolling update (found by
review, stop 37).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

import faust

from gun_hub.runtime.publisher import DecisionPublisher
from gun_hub.runtime.rollout_follower import RolloutFollower

log = logging.getLogger(__name__)


class GroupMembership:
    """Whether the worker's consumer group has completed a rebalance since it started
    (``on_rebalance_complete``: recovery done, streams resumed), whatever it was given."""

    def __init__(self, app: faust.App) -> None:
        self._app = app
        self.joined = False

    async def rebalance_completed(self, sender: Any, **_: Any) -> None:
        self.joined = True
        if self.idle():
            log.info(
                "this worker holds no partition (more workers than partitions): ready, "
                "idle until a rebalance gives it some"
            )

    def idle(self) -> bool:
        """A member holding no partition, waiting for work."""
        return self.joined and not self._app.consumer.assignment()


def waiting_for(
    app: faust.App,
    publisher: DecisionPublisher,
    rollout: RolloutFollower,
    stall_s: float,
    membership: GroupMembership,
    audit_fenced: Callable[[], Collection[int]] = lambda: (),
) -> list[str]:
    """What keeps the hub from processing now (empty: ready). ``audit_fenced``: the
    audit partitions whose lanes, fenced while assigned here, wait to be taken again
    (audit_lanes.py ``fenced``)."""
    waiting = []
    if not rollout.caught_up.is_set():
        waiting.append("rollout modes not read yet")
    if not app.consumer.assignment() and not membership.joined:
        waiting.append("no partitions assigned yet")
    if app.rebalancing:
        waiting.append("consumer group rebalancing")
    if app.in_recovery:
        waiting.append("tables recovering from their changelogs")
    if not app.producer.started:
        waiting.append("producer not started")
    if not publisher.ready.is_set():
        waiting.append("decision publisher not started")
    if stalled := publisher.stalled(longer_than_s=stall_s):
        partitions = ", ".join(str(p) for p in stalled)
        waiting.append(
            f"decision publisher stalled: outbox partition(s) {partitions} unpublished "
            f"for more than {stall_s:g} s"
        )
    if fenced := audit_fenced():
        partitions = ", ".join(str(p) for p in sorted(fenced))
        waiting.append(
            f"audit partition(s) {partitions} fenced: taken again once it is clear no other "
            "worker took them"
        )
    return waiting
