"""How long the adapter's own event loop could not run: what a call's timeout says of the
partner depends on it.

A call's deadline (``adapter.partner_timeout_s``) is wall-clock time. When the adapter's
event loop is held (a long garbage collection, a loaded machine, a long computation),
calls already under way time out without the partner having had that time: their bytes
were not sent, or the answer that came was not read. Counted as the partner's failures,
they opened the circuit, and every trader's declaration asked meanwhile was answered
UNAVAILABLE (degraded mode) while the partner was healthy (stop 44: a unit test with the
loop held 1.2 s saw all 2,000 documents UNAVAILABLE in CI; stop 40 with a 1 s deadline).

A task that wakes every ``tick_s`` sums how late each wake-up came. Its timer is set
before any call's deadline that a stall makes pass, so when the loop runs again it counts
the stall before the calls handle their timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

# Late wake-ups shorter than this are the loop's ordinary business, not a stall.
_TOLERANCE_S = 0.02


class LoopStalls:
    """The seconds this event loop was held, summed since it started watching."""

    def __init__(
        self,
        tick_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        on_held: Callable[[float], None] = lambda _held_s: None,
    ) -> None:
        self._tick_s = tick_s
        self._clock = clock
        self._on_held = on_held  # told each stall's seconds (the operators' metric)
        self._task: asyncio.Task[None] | None = None
        self.stalled_s = 0.0

    def watch(self) -> None:
        """Start watching the running loop (once; again after :meth:`close`)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def since(self, mark: float) -> float:
        """Seconds held since ``stalled_s`` read ``mark``."""
        return self.stalled_s - mark

    async def _run(self) -> None:
        while True:
            before = self._clock()
            await asyncio.sleep(self._tick_s)
            late = self._clock() - before - self._tick_s
            if late > _TOLERANCE_S:
                self.stalled_s += late
                self._on_held(late)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
