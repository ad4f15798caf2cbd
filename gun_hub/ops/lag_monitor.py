"""The lag monitor: committed offsets of every group against the end of every partition.

Watches the groups the topology defines (the hub, its decision publisher, each adapter,
the clearance system), each on the topics it reads, plus whatever else those groups have
committed on. A group that never committed counts its whole backlog as lag: an adapter
that has not started yet is behind, not "unknown".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from gun_hub.kafka.acls import adapter_group
from gun_hub.kafka.admin import partitions_of
from gun_hub.kafka.client import ClientConfig, from_settings
from gun_hub.ops.lag import GrowthWatch, LagSnapshot, PartitionLag, partition_lags, snapshot
from gun_hub.ops.prometheus import OpsState
from gun_hub.settings import Settings
from gun_hub.topics import TopicRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WatchedGroup:
    group: str
    topics: tuple[str, ...]


def watched_groups(
    topics: TopicRegistry, hub_app_id: str, clearance_group: str
) -> list[WatchedGroup]:
    """Every consumer group of the topology and the topics it is meant to read."""
    return [
        WatchedGroup(
            hub_app_id,
            (topics.declarations, *topics.all_responses(), topics.dlq, topics.deadlines),
        ),
        WatchedGroup(f"{hub_app_id}-publisher", (topics.decision_outbox,)),
        *(WatchedGroup(adapter_group(a), (topics.requests(a),)) for a in topics.authorities),
        WatchedGroup(clearance_group, (topics.decisions,)),
    ]


class LagMonitor:
    """Measures lag on demand (``measure``) or periodically (``run``)."""

    def __init__(
        self,
        connect: ClientConfig,
        groups: list[WatchedGroup],
        *,
        growing_after: int = 3,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._connect = connect
        self._groups = groups
        self._growth = GrowthWatch(growing_after)
        self._clock = clock
        options = connect.options()
        # Reads offsets only: the admin client for the groups' commits, a group-less
        # consumer for the partitions' ends.
        self._admin = AIOKafkaAdminClient(**options, client_id="gun-hub-lag-monitor")
        self._offsets = AIOKafkaConsumer(**options, client_id="gun-hub-lag-monitor", group_id=None)

    @classmethod
    def for_settings(cls, settings: Settings, topics: TopicRegistry) -> LagMonitor:
        """The monitor of every group of this deployment (inside a running event loop)."""
        return cls(
            from_settings(settings.kafka),
            watched_groups(topics, settings.hub.app_id, settings.ops.clearance_group),
            growing_after=settings.ops.lag_growing_samples,
        )

    async def start(self) -> None:
        await self._admin.start()
        await self._offsets.start()

    async def stop(self) -> None:
        await self._offsets.stop()
        await self._admin.close()

    async def measure(self) -> LagSnapshot:
        committed_by_group = {
            watched.group: await self._admin.list_consumer_group_offsets(watched.group)
            for watched in self._groups
        }
        read = {
            watched.group: set(watched.topics)
            | {tp.topic for tp in committed_by_group[watched.group]}
            for watched in self._groups
        }
        existing = await partitions_of(self._admin, set().union(*read.values()))
        wanted = {
            group: {
                TopicPartition(topic, partition)
                for topic in topics
                for partition in existing.get(topic, ())
            }
            for group, topics in read.items()
        }
        every = sorted(set().union(*wanted.values()))
        ends = await self._offsets.end_offsets(every)
        starts = await self._offsets.beginning_offsets(every)
        lags: list[PartitionLag] = []
        for watched in self._groups:
            committed = committed_by_group[watched.group]
            lags += partition_lags(
                watched.group,
                _by_name({tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}),
                _by_name({tp: ends[tp] for tp in wanted[watched.group]}),
                _by_name({tp: starts[tp] for tp in wanted[watched.group]}),
            )
        return snapshot(self._clock(), lags, self._growth)

    async def run(
        self,
        state: OpsState,
        interval_s: float,
        publish: Callable[[LagSnapshot], Awaitable[None]],
    ) -> None:
        """Measure every ``interval_s``; keep the latest in ``state``; hand each to
        ``publish``. A failed measurement is logged and retried at the next tick."""
        while True:
            try:
                measured = await self.measure()
            except Exception as err:  # noqa: BLE001 - the monitor must outlive a broker hiccup
                log.warning("lag measurement failed: %s", err)
            else:
                state.lag = measured
                for group in measured.groups:
                    if group.growing:
                        log.warning("group %s: lag keeps growing (%d)", group.group, group.lag)
                await publish(measured)
            await asyncio.sleep(interval_s)


def _by_name(offsets: Mapping[TopicPartition, int]) -> dict[tuple[str, int], int]:
    return {(tp.topic, tp.partition): offset for tp, offset in offsets.items()}
