"""A hub worker that joined its group and was given no partition (more workers than
partitions: a standby, or a surge pod in a rolling update) is ready, and says it is idle;
it used to stay not ready for good, stalling a rolling update at its progress deadline
(found by review, stop 37, H7). Before its first rebalance ends, it is not ready."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from gun_hub.runtime.readiness import GroupMembership, waiting_for


def worker(assigned: set[Any], *, rebalancing: bool = False) -> Any:
    return SimpleNamespace(
        consumer=SimpleNamespace(assignment=lambda: assigned),
        rebalancing=rebalancing,
        in_recovery=False,
        producer=SimpleNamespace(started=True),
    )


def started_publisher() -> Any:
    ready = asyncio.Event()
    ready.set()
    return SimpleNamespace(ready=ready, stalled=lambda longer_than_s: [])


def caught_up_rollout() -> Any:
    caught_up = asyncio.Event()
    caught_up.set()
    return SimpleNamespace(caught_up=caught_up)


def test_before_its_first_rebalance_ends_a_worker_without_partitions_is_not_ready() -> None:
    idle = worker(set())
    membership = GroupMembership(idle)
    waiting = waiting_for(idle, started_publisher(), caught_up_rollout(), 60, membership)
    assert waiting == ["no partitions assigned yet"]
    assert not membership.idle()


async def test_a_worker_given_no_partition_by_a_completed_rebalance_is_ready_and_idle() -> None:
    idle = worker(set())
    membership = GroupMembership(idle)
    await membership.rebalance_completed(sender=None)
    assert waiting_for(idle, started_publisher(), caught_up_rollout(), 60, membership) == []
    assert membership.idle()


async def test_a_worker_with_partitions_is_not_idle_and_one_rebalancing_is_not_ready() -> None:
    busy = worker({("gun.declarations", 0)})
    membership = GroupMembership(busy)
    await membership.rebalance_completed(sender=None)
    assert waiting_for(busy, started_publisher(), caught_up_rollout(), 60, membership) == []
    assert not membership.idle()
    moving = worker(set(), rebalancing=True)
    member = GroupMembership(moving)
    await member.rebalance_completed(sender=None)
    assert waiting_for(moving, started_publisher(), caught_up_rollout(), 60, member) == [
        "consumer group rebalancing"
    ]
