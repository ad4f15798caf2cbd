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

Nor is one whose last failure was the partner answering and failing (a 5xx, a 429, an
answer unusable: ``CircuitBreaker.a_lookup_may_close``): the trial changes nothing, so its
success proves the partner reachable, not that it applies calls, and a partner whose
lookups answer and whose writes fail had its circuit closed at every reset (review stop
41, G2). The probe stops for such a circuit rather than go on unable to close it: its
lookups would decide nothing and only add calls to a partner that is failing; the next
real call is the trial, as before the probe, and a later failure with no answer starts
the probe again (:meth:`CircuitProbe.watch` after each call).
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
    bookkeeping) each time ``circuit`` allows a trial, until the circuit is closed or its
    last failure is one answered (which ``trial`` cannot prove over)."""

    def __init__(self, circuit: CircuitBreaker, trial: Callable[[], Awaitable[None]]) -> None:
        self._circuit = circuit
        self._trial = trial
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def watch(self) -> None:
        """After a call: start trying the partner if its circuit is no longer closed after
        a failure with no answer (a no-op while the probe runs, the circuit is closed or
        its last failure was answered, or after :meth:`close`)."""
        if self._closed or self.running or not self._may_close():
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

    def _may_close(self) -> bool:
        """Whether a trial of the probe's could close the circuit (G2)."""
        circuit = self._circuit
        return circuit.state is not CircuitState.CLOSED and circuit.a_lookup_may_close

    async def _try_until_closed(self) -> None:
        # Checked after every wait and every trial: a trial or a real call answered with a
        # failure in the meantime hands the circuit to the next real call.
        while self._may_close() and (due_in_s := self._circuit.trial_in_s()) is not None:
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
