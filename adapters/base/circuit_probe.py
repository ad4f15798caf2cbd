"""The adapter's own trial call to a partner whose circuit is not closed.

A circuit breaker closes only when a trial call succeeds, and trials are real calls: with
no declaration and no pending operation after an outage (a night, a weekend), the circuit
stayed open or half_open for ever, the heartbeat said the partner was down when it was
back, ``GunHubPartnerCircuitOpen`` stayed on, and the next trader's declaration was the
trial (review stop 41). So while the circuit is not closed, a :class:`CircuitProbe` takes
the trial slot whenever one is due (every ``circuit_reset_s`` after a failure, once a
partner's ``Retry-After`` pause is over) and no call holds it, and makes a call of its
own that changes nothing at the partner; the call's answer decides as a real trial's
would, or, when it may concern that call only, gives the slot back to the next call
(certex.py ``_trial_call``), tried again a reset later. It stops as soon as the circuit
is closed: a closed circuit is never probed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable

from adapters.base.resilience import CircuitBreaker, CircuitState
from gun_contract.validation import fault_without_text

log = logging.getLogger(__name__)


class CircuitProbe:
    """Runs ``trial`` (one call, its outcome recorded on ``circuit`` by the caller's own
    bookkeeping) each time ``circuit`` allows a trial, until the circuit is closed."""

    def __init__(self, circuit: CircuitBreaker, trial: Callable[[], Awaitable[None]]) -> None:
        self._circuit = circuit
        self._trial = trial
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def watch(self) -> None:
        """After a call: start trying the partner if its circuit is no longer closed (a
        no-op while the probe runs, the circuit is closed, or after :meth:`close`)."""
        if self._closed or self.running or self._circuit.state is CircuitState.CLOSED:
            return
        # A context of its own: started from a declaration's call, the trials would carry
        # its trace (gun_contract/trace.py) into the log, and they belong to none.
        self._task = asyncio.get_running_loop().create_task(
            self._try_until_closed(), name="partner-circuit-probe", context=contextvars.Context()
        )

    async def stopped(self) -> None:
        """Return once the probe is not running: the circuit closed, or :meth:`close`."""
        if self._task is not None:
            await asyncio.wait({self._task})  # neither raises its end nor cancels it

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _try_until_closed(self) -> None:
        while (due_in_s := self._circuit.trial_in_s()) is not None:
            if due_in_s > 0:
                await asyncio.sleep(due_in_s)
                continue
            if self._circuit.allow():
                try:
                    await self._trial()
                except Exception as err:  # noqa: BLE001 - a bug must not end the trials
                    log.warning("the partner's trial call failed: %s", fault_without_text(err))
            if self._circuit.trial_in_s() == 0:
                # A trial that decided nothing (its slot given back): the next call may
                # decide; the next trial of the adapter's own is a reset away.
                await asyncio.sleep(self._circuit.reset_after_s)
