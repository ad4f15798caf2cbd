"""The retention timer: ticks the cases and markers of this worker's partitions that are
due to leave (pipeline/retention.py).

Like the deadline sweep it only reads and sends: the tick goes to the hub's deadlines
topic on the case's partition, and the deadlines agent acts on it in event context, so
deletions reach the right changelog partition as tombstones. It looks at the due times
the worker keeps in memory for the next hour (``RetentionIndex``), never at the cases
themselves: one look costs what is due, and the small retention entries are read again
once every half hour.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiokafka.errors import KafkaError

from gun_contract.topics import TopicRegistry
from gun_hub import metrics
from gun_hub.pipeline.retention import RETENTION_TICK, RetentionIndex

log = logging.getLogger(__name__)


class RetentionSweep:
    def __init__(
        self, app: Any, topics: TopicRegistry, entries_table: Any, index: RetentionIndex
    ) -> None:
        self._app = app
        self._topics = topics
        self._entries = entries_table
        self._index = index

    def owned(self) -> set[int] | None:
        """The deadlines partitions this worker handles now (None: a rebalance is on)."""
        try:
            return {
                tp.partition
                for tp in self._app.assignor.assigned_actives()
                if tp.topic == self._topics.deadlines
            }
        except Exception:  # the assignment is being changed: next time
            log.debug("partition assignment unknown; retention waits", exc_info=True)
            return None

    async def run(self) -> None:
        if self._app.rebalancing or self._app.in_recovery:
            return  # the partitions' entries are being recovered: look once they are
        owned = self.owned()
        if owned is None:
            return
        now = time.time()
        # RocksDB iterates a snapshot, so the scan may yield to the agents as it goes.
        await self._index.refresh(owned, self._entries.items, now)
        metrics.CASES_RETAINED.set(len(self._index))
        for partition in sorted(owned):
            for key in self._index.due(partition, now):
                try:
                    await self._app.producer.send(
                        self._topics.deadlines, key, RETENTION_TICK, partition, None, None
                    )
                except KafkaError:
                    log.warning("retention tick for %r not sent; sent at the next look", key)
                    self._index.push(partition, now, key)
                    return
