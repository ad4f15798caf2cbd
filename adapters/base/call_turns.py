"""Whose partner call goes out next: the adapter's connections to its partner, shared fairly
between the requests being handled.

An adapter handles many requests at once, and one request may quote thousands of documents,
one partner call each. Fired all at once, one large declaration's calls filled the pool and
every other request's calls waited behind them; with the wait counted in each call's
deadline, the tail and the others timed out UNAVAILABLE while the partner was healthy
(review stop 40, W2). So a call first waits for its turn here, and only then goes out, its
deadline (``adapter.partner_timeout_s``) counting the partner's time alone:

* at most ``slots`` calls are out at once (the adapter's connections to the partner);
* one request holds at most ``per_request`` of them, so a large request leaves room for the
  others even when the partner is slow;
* a free slot goes to the waiting request served least recently (one never served first),
  not to the call that asked first: a request of one document waits for about one call of
  each request ahead of it, not for all of a large one's calls;
* a request waits at most until its deadline (``adapter.partner_queue_wait_s`` after it
  began): a call whose turn has not come by then is not sent (:class:`NoTurnInTime`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress


class NoTurnInTime(Exception):
    """A call's turn did not come before its request's deadline: it was not sent."""


class RequestTurns:
    """One request's calls: how many it holds now, and until when they may wait."""

    def __init__(self, slots: CallTurns, deadline: float) -> None:
        self._slots = slots
        self.deadline = deadline
        self.held = 0
        self.not_sent = 0
        # When it last got a slot (CallTurns' count of slots given; -1: never).
        self.last_served = -1
        # Whether a call of the request the partner could not read (400, 422) counted
        # against the circuit already: once per request (certex._understood_for).
        self.rejection_counted = False

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold a slot for one call (one attempt); raises :class:`NoTurnInTime` when the
        request's deadline passes first."""
        try:
            await self._slots.acquire(self)
        except NoTurnInTime:
            self.not_sent += 1
            raise
        try:
            yield
        finally:
            self._slots.release(self)


class CallTurns:
    """``slots`` calls out at once, at most ``per_request`` of one request's."""

    def __init__(self, slots: int, per_request: int) -> None:
        self._free = slots
        self._per_request = max(1, min(per_request, slots))
        # Requests with calls waiting, each with its calls in the order they asked.
        self._waiting: dict[RequestTurns, deque[asyncio.Future[None]]] = {}
        self._given = 0

    def request(self, wait_at_most_s: float) -> RequestTurns:
        """The turns of a request that begins now and may wait ``wait_at_most_s`` in all."""
        return RequestTurns(self, asyncio.get_running_loop().time() + wait_at_most_s)

    @property
    def free(self) -> int:
        return self._free

    async def acquire(self, request: RequestTurns) -> None:
        if self._free > 0 and request.held < self._per_request and request not in self._waiting:
            # Nobody who could take it is waiting (every release hands slots out at once).
            self._take(request)
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(request, deque()).append(granted)
        try:
            async with asyncio.timeout_at(request.deadline):
                await granted
        except BaseException as err:
            if granted.done() and not granted.cancelled():
                self.release(request)  # granted as it gave up: handed on
            else:
                granted.cancel()
                self._forget(request, granted)
            if isinstance(err, TimeoutError):
                raise NoTurnInTime from None
            raise

    def release(self, request: RequestTurns) -> None:
        request.held -= 1
        self._free += 1
        self._hand_out()

    def _take(self, request: RequestTurns) -> None:
        request.held += 1
        self._free -= 1
        request.last_served = self._given
        self._given += 1

    def _forget(self, request: RequestTurns, granted: asyncio.Future[None]) -> None:
        waiting = self._waiting.get(request)
        if waiting is None:
            return
        with suppress(ValueError):  # handed out meanwhile, and cancelled: not there
            waiting.remove(granted)
        if not waiting:
            del self._waiting[request]

    def _hand_out(self) -> None:
        """Free slots to the waiting requests under their share, the one served least
        recently first (a scan: the requests waiting are at most those in flight)."""
        while self._free > 0:
            request = min(
                (r for r in self._waiting if r.held < self._per_request),
                key=lambda r: r.last_served,
                default=None,
            )
            if request is None:
                return
            waiting = self._waiting[request]
            granted = waiting.popleft()
            if not waiting:
                del self._waiting[request]
            if not granted.done():  # one cancelled meanwhile is skipped
                granted.set_result(None)
                self._take(request)
