"""The deadline timer: ticks the due cases of this worker's partitions.

It only reads: the tick goes to the hub's deadlines topic, on the partition the
declaration arrived on, and the deadlines agent decides in event context
(pipeline/deadlines.py). A case waiting for answers is ticked only once every response
partition of its partition has been read to the end the broker reports as it sweeps
(pipeline/answer_progress.py): after a long stop, the backlog of answers is read before
any deadline fires. A case
waiting for a control's result is ticked when the report falls due.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from faust.types import TP

from gun_contract.topics import TopicRegistry
from gun_contract.trace import trace_header
from gun_hub.pipeline.answer_progress import AnswerProgress
from gun_hub.pipeline.hub_context import OpenCaseEntry

log = logging.getLogger(__name__)

_RETICK_S = 5.0  # a tick not yet acted on is sent again after this long
_FORGET_S = 60.0


class DeadlineSweep:
    def __init__(
        self, app: Any, topics: TopicRegistry, open_cases: Any, progress: AnswerProgress
    ) -> None:
        self._app = app
        self._topics = topics
        self._open_cases = open_cases
        self._progress = progress
        self._ticked: dict[bytes, float] = {}

    def answers_read(self, partition: int) -> bool:
        """No answer that was in the log at the last sweep waits unread on ``partition``."""
        return all(
            self._progress.read_to_end(self._topics.responses(authority), partition)
            for authority in self._topics.authorities
        )

    async def run(self) -> None:
        now = time.time()
        due: list[tuple[bytes, OpenCaseEntry]] = []
        for key, value in list(self._open_cases.items()):
            try:
                entry = OpenCaseEntry.from_bytes(bytes(value))
            except (ValueError, UnicodeDecodeError):
                log.exception("unreadable open-case entry for %r: ignored", key)
                continue
            if entry.due <= now and self._ticked.get(key, 0.0) < now - _RETICK_S:
                due.append((bytes(key), entry))
        for key in [k for k, at in self._ticked.items() if at < now - _FORGET_S]:
            del self._ticked[key]
        if not due:
            return
        await self._refresh_progress(
            {e.partition for _, e in due if e.partition is not None and not e.waits_for_control}
        )
        for key, entry in due:
            if (
                not entry.waits_for_control
                and entry.partition is not None
                and not self.answers_read(entry.partition)
            ):
                continue  # answers may wait unread: read them first
            self._ticked[key] = now
            await self._app.producer.send(
                self._topics.deadlines,
                key,
                str(entry.version).encode(),
                entry.partition,
                None,
                [trace_header(key.decode("utf-8", "replace"), entry.version)],
            )

    async def _refresh_progress(self, partitions: set[int]) -> None:
        """Ask the broker where each response partition ends, and the consumer how far
        each was handled without a hole."""
        if not partitions:
            return
        tps = [
            TP(self._topics.responses(authority), partition)
            for authority in self._topics.authorities
            for partition in sorted(partitions)
        ]
        consumer = self._app.consumer
        ends = await consumer.highwaters(*tps)
        for tp in tps:
            end = ends.get(tp)
            if end is not None:
                self._progress.set_end(tp.topic, tp.partition, int(end))
            offset = consumer.first_unsettled(tp)
            if offset is not None:
                self._progress.set_read_up_to(tp.topic, tp.partition, int(offset))
