"""The circuit breaker opens on consecutive failures and probes before closing."""

from __future__ import annotations

from adapters.base.resilience import CircuitBreaker, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_consecutive_failures_open_the_circuit_and_calls_stop() -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=5, clock=Clock())
    for _ in range(2):
        breaker.record_failure()
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert not breaker.allow()


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=Clock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED


def test_after_the_pause_one_trial_goes_through_and_decides() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=5, clock=clock)
    breaker.record_failure()
    clock.now += 5
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()  # only one trial at a time
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    clock.now += 5
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.allow()
