"""Only the call that holds a half-open circuit's trial slot gives it back.

Found by the review of stop 54: ``CircuitBreaker.release`` (and a failure) freed the trial
slot whoever called it. The adapter calls ``release`` for any call that ends with no
verdict (cancelled by a rebalance or a stop, a timeout excused by a stall of its own loop),
including a call let through while the circuit was still closed and under way since: the
trial under way lost its slot, and the next call went through as a second trial at once.
A partner coming back from an outage got concurrent trials, each with its retries, and
"one trial call decides" no longer held. Each call is a task of its own, as in the adapter."""

from __future__ import annotations

import asyncio

from adapters.base.resilience import CircuitBreaker, CircuitState


def state(circuit: CircuitBreaker) -> CircuitState:
    """Read afresh (mypy would narrow ``circuit.state`` across the awaits)."""
    return circuit.state


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_call_that_is_not_the_trial_cannot_give_the_trials_slot_away() -> None:
    clock = Clock()
    circuit = CircuitBreaker(failure_threshold=1, reset_after_s=5.0, clock=clock)
    a_ends = asyncio.Event()

    async def call_a() -> None:
        """Let through while closed; slow; ends with no verdict (cancelled, or excused)."""
        assert circuit.allow()
        await a_ends.wait()
        circuit.release()

    async def call_b() -> None:
        assert circuit.allow()
        circuit.record_failure(answered=False)  # times out: the circuit opens

    a = asyncio.create_task(call_a())
    await asyncio.sleep(0)  # A under way
    await asyncio.create_task(call_b())
    clock.now = 5.0
    assert circuit.state is CircuitState.HALF_OPEN
    trial_allowed = asyncio.Event()
    trial_ends = asyncio.Event()

    async def trial() -> None:
        assert circuit.allow()  # the one trial
        trial_allowed.set()
        await trial_ends.wait()
        circuit.record_success()

    t = asyncio.create_task(trial())
    await trial_allowed.wait()
    assert not circuit.allow()  # nobody else while the trial is under way
    a_ends.set()
    await a
    assert not circuit.allow(), (
        "a second trial was let through while the first is still under way: the slot "
        "was released by a call that never held it"
    )
    trial_ends.set()
    await t
    assert state(circuit) is CircuitState.CLOSED


async def test_a_late_failure_of_another_call_leaves_the_trial_its_slot() -> None:
    clock = Clock()
    circuit = CircuitBreaker(failure_threshold=1, reset_after_s=5.0, clock=clock)
    old_fails = asyncio.Event()

    async def old_call() -> None:
        assert circuit.allow()
        await old_fails.wait()
        circuit.record_failure(answered=False)

    old = asyncio.create_task(old_call())
    await asyncio.sleep(0)
    circuit.record_failure(answered=False)  # another call's: open
    clock.now = 5.0
    trial_held = asyncio.Event()
    trial_ends = asyncio.Event()

    async def trial() -> None:
        assert circuit.allow()
        trial_held.set()
        await trial_ends.wait()
        circuit.record_success()

    t = asyncio.create_task(trial())
    await trial_held.wait()
    old_fails.set()
    await old
    clock.now = 10.0  # a reset after the old call's failure reopened it
    assert not circuit.allow(), "the old call's failure freed the slot of the trial under way"
    trial_ends.set()
    await t
    assert state(circuit) is CircuitState.CLOSED
