"""Records for operations only (the lag monitor's snapshots, the adapters' heartbeats),
sent without waiting for the broker: a refusal is still logged and counted.

Their senders go on at once (a measurement or a heartbeat held for the producer's
delivery timeout would be late itself), so nothing awaited what ``send`` handed back: a
snapshot the broker refused (``gun.ops.lag`` made compacted by hand: a record without a
key is corrupt there) was lost without a line, and with it the dashboards that would
have shown the outage (review stop 37, K4). Each failure, whether refused before it was
queued or after, is counted; the first is logged as a warning, then at most one every
``every_s`` seconds, saying how many failed in between.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

LOG_EVERY_S = 60.0


class WatchedSends:
    """Sends of one kind (``what``: "lag snapshot", "heartbeat") whose delivery nobody
    waits for; ``count`` is called once per failed one (its metric)."""

    def __init__(
        self,
        what: str,
        count: Callable[[], None],
        every_s: float = LOG_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._what = what
        self._count = count
        self._every_s = every_s
        self._clock = clock
        self._logged_at: float | None = None
        self._quiet = 0  # failures since the last one logged

    async def send(self, queue: Callable[[], Awaitable[Awaitable[Any]]]) -> None:
        """Queue a record (``queue``: the producer's ``send``, which returns its delivery)
        and watch its delivery from a callback; returns once it is queued."""
        try:
            delivery = await queue()
        except Exception as error:  # noqa: BLE001 - refused before queueing: counted, logged
            self.failed(error)
            return
        asyncio.ensure_future(delivery).add_done_callback(self._settled)

    def _settled(self, delivery: asyncio.Future[Any]) -> None:
        if delivery.cancelled():
            return  # the producer stopped with it queued: the process is stopping
        error = delivery.exception()
        if error is not None:
            self.failed(error)

    def failed(self, error: BaseException) -> None:
        self._count()
        now = self._clock()
        if self._logged_at is not None and now - self._logged_at < self._every_s:
            self._quiet += 1
            return
        since = f" ({self._quiet} more not sent since the last warning)" if self._quiet else ""
        log.warning("%s not sent: %s: %s%s", self._what, type(error).__name__, error, since)
        self._logged_at = now
        self._quiet = 0
