"""Circuit breaker and retry backoff: stop calling a partner that is down, try again after
a pause, and space retries so they do not add to a partner's congestion.

Closed: calls go through; ``failure_threshold`` consecutive failures open it. Open: calls
fail at once (the adapter answers UNAVAILABLE promptly instead of holding its queue while
every request times out). After ``reset_after_s`` it lets one trial call through
(half-open): success closes it, failure opens it again. A trial that ends with neither
(cancelled: the adapter stops, an outer deadline) gives its slot back with
:meth:`CircuitBreaker.release`; a slot whose caller never reports is taken back after
``trial_timeout_s``, so the circuit can never stick open. Trials need calls: with no traffic
after an outage the adapter makes its own (:mod:`adapters.base.circuit_probe`), when
:meth:`CircuitBreaker.trial_in_s` says one is due, and only for a circuit whose last failure
got no answer (:attr:`CircuitBreaker.a_lookup_may_close`): the adapter's own trial reads,
and a read answered proves the partner reachable, not that it applies the calls that
failed with an answer (review stop 41, G2).

A partner answering 429 or 503 with ``Retry-After`` asks for a pause: :meth:`CircuitBreaker.pause`
holds every call (live and replayed) until it ends, at most ``RETRY_AFTER_CAP_S``.
"""

from __future__ import annotations

import contextvars
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

RETRY_BACKOFF_BASE_S = 0.25
"""Upper bound of the first retry's delay; each further retry doubles it (full jitter)."""
RETRY_BACKOFF_CAP_S = 4.0
"""No retry waits longer than this. With the default 5 s deadline and 3 attempts, one
request takes at most about 16 s, well inside the hub's 30 s answer deadline."""
TRIAL_TIMEOUT_S = 30.0
# The trial slot the current task holds (CircuitBreaker.allow): only the task whose call
# took it gives it back or fails it. A call let through while the circuit was closed and
# ending after it opened (cancelled by a rebalance, excused by a stall, failing late) freed
# the slot of the trial under way, and a second trial went at once (review of stop 54).
# Each adapter call, and the probe's trial, runs in a task of its own.
_TRIAL_HELD: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "circuit_trial_held", default=None
)
"""A half-open trial that has not reported after this long is presumed lost."""
RETRY_AFTER_CAP_S = 60.0
"""The longest pause a partner's ``Retry-After`` holds calls for: a partner asking for an
hour (maintenance) is tried again after this, like any other outage."""


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_after_s: float = 5.0,
        trial_timeout_s: float = TRIAL_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failure_threshold
        self._reset_after_s = reset_after_s
        self._trial_timeout_s = trial_timeout_s
        self._clock = clock
        self._failures = 0
        # Whether the last failure got an answer (a 5xx, a 429, an answer unusable) rather
        # than none (no connection, a timeout); None after a success.
        self._last_failure_answered: bool | None = None
        self._opened_at: float | None = None
        self._trial_started_at: float | None = None
        self._trial: object | None = None  # the slot's token, held by one task's context
        self._paused_until: float | None = None

    @property
    def reset_after_s(self) -> float:
        return self._reset_after_s

    @property
    def state(self) -> CircuitState:
        if self.paused_for_s() > 0:
            return CircuitState.OPEN  # the adapter is not calling the partner: say so
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._clock() - self._opened_at >= self._reset_after_s:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    def allow(self) -> bool:
        """Whether a call may go to the partner now. A call allowed must end in
        :meth:`record_success`, :meth:`record_failure` or :meth:`release`."""
        if self.paused_for_s() > 0:
            return False
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN and not self._trial_in_flight():
            self._trial_started_at = self._clock()
            self._trial = object()
            _TRIAL_HELD.set(self._trial)
            return True
        return False

    @property
    def a_lookup_may_close(self) -> bool:
        """Whether a read-only trial answered may close the circuit: only one whose last
        failure got no answer (the partner or the network was down), which an answer
        proves over. One whose last failure was the partner answering and failing (a 5xx,
        a 429) is decided by its next real call: a partner whose lookups answer and whose
        writes fail had its circuit closed by every lookup, about half the time, and its
        failing writes sent to it with all their retries (review stop 41, G2)."""
        return self._last_failure_answered is False

    def record_success(self) -> None:
        self._failures = 0
        self._last_failure_answered = None
        self._opened_at = None
        self._trial_started_at = None
        self._trial = None

    def record_failure(self, *, answered: bool) -> None:
        """A call failed: ``answered`` when the partner (or a gateway in front of it) gave
        an answer, a failing one, rather than none (see :attr:`a_lookup_may_close`)."""
        self._failures += 1
        self._last_failure_answered = answered
        holds_trial = self._holds_trial()
        if holds_trial or self._failures >= self._threshold:
            self._opened_at = self._clock()
        if holds_trial:
            self._free_trial()

    def pause(self, seconds: float) -> None:
        """The partner asked for no call for ``seconds`` (``Retry-After``), bounded by
        ``RETRY_AFTER_CAP_S``; a shorter pause never cuts a longer one asked before."""
        until = self._clock() + min(max(seconds, 0.0), RETRY_AFTER_CAP_S)
        self._paused_until = max(until, self._paused_until or until)

    def paused_for_s(self) -> float:
        """How long the partner's pause still holds calls (0: none)."""
        if self._paused_until is None:
            return 0.0
        return max(self._paused_until - self._clock(), 0.0)

    def trial_in_s(self) -> float | None:
        """Seconds until :meth:`allow` lets a trial call through (0: now), or None while
        the circuit is closed (no trial to make). While a trial is under way, until its
        slot would be taken back, at most ``reset_after_s``: it reports sooner."""
        paused_s = self.paused_for_s()
        if paused_s > 0:
            return paused_s
        if self._opened_at is None:
            return None
        now = self._clock()
        opened_for = now - self._opened_at
        if opened_for < self._reset_after_s:
            return self._reset_after_s - opened_for
        if self._trial_in_flight():
            assert self._trial_started_at is not None  # noqa: S101 - in flight: started
            left = self._trial_started_at + self._trial_timeout_s - now
            return min(left, self._reset_after_s)
        return 0.0

    def release(self) -> None:
        """An allowed call ended with no verdict on the partner (cancelled): free the
        trial slot if this call holds it, so the next call may try."""
        if self._holds_trial():
            self._free_trial()

    def _holds_trial(self) -> bool:
        """Whether the current task's call is the trial under way."""
        return self._trial is not None and _TRIAL_HELD.get() is self._trial

    def _free_trial(self) -> None:
        self._trial_started_at = None
        self._trial = None

    def _trial_in_flight(self) -> bool:
        if self._trial_started_at is None:
            return False
        return self._clock() - self._trial_started_at < self._trial_timeout_s


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (RFC 9110: delay-seconds or an
    HTTP-date), or None when absent or unreadable (the ordinary backoff applies)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # a year no date holds
        return None
    if when.tzinfo is None:
        return None  # not an HTTP-date (always GMT)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


class Backoff:
    """Exponential backoff with full jitter: the delay before retry ``n`` (1, 2, ...) is
    drawn uniformly from 0 to ``min(cap_s, base_s * 2 ** (n - 1))``, so callers that failed
    together do not retry together."""

    def __init__(
        self,
        *,
        base_s: float = RETRY_BACKOFF_BASE_S,
        cap_s: float = RETRY_BACKOFF_CAP_S,
        draw: Callable[[float, float], float] | None = None,
    ) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        # Jitter, not cryptography.
        self._draw = draw or random.Random().uniform  # noqa: S311

    def delay(self, retry: int) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** min(max(retry - 1, 0), 62))
        return self._draw(0.0, ceiling)
