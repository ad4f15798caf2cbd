"""The circuit breaker opens on consecutive failures and probes before closing."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from adapters.base.certex import CertexHttpPartner
from adapters.base.resilience import (
    RETRY_AFTER_CAP_S,
    RETRY_BACKOFF_BASE_S,
    RETRY_BACKOFF_CAP_S,
    Backoff,
    CircuitBreaker,
    CircuitState,
    retry_after_s,
)
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Verdict
from gun_contract.settings import AdapterSettings
from gun_tools.processes import free_port
from tests.adapter_fixtures import partner_request
from tests.partner_fixtures import running_partner, set_faults


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def state(breaker: CircuitBreaker) -> CircuitState:
    """Read afresh each time (mypy would narrow ``breaker.state`` across calls)."""
    return breaker.state


def test_consecutive_failures_open_the_circuit_and_calls_stop() -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=5, clock=Clock())
    for _ in range(2):
        breaker.record_failure(answered=True)
    assert breaker.allow()
    breaker.record_failure(answered=True)
    assert state(breaker) is CircuitState.OPEN
    assert not breaker.allow()


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=Clock())
    breaker.record_failure(answered=True)
    breaker.record_success()
    breaker.record_failure(answered=True)
    assert state(breaker) is CircuitState.CLOSED


def test_after_the_pause_one_trial_goes_through_and_decides() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=5, clock=clock)
    breaker.record_failure(answered=True)
    clock.now += 5
    assert state(breaker) is CircuitState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()  # only one trial at a time
    breaker.record_failure(answered=True)
    assert state(breaker) is CircuitState.OPEN
    clock.now += 5
    assert breaker.allow()
    breaker.record_success()
    assert state(breaker) is CircuitState.CLOSED
    assert breaker.allow()


# -- defect 13: a cancelled trial, and backoff that is more than nominal ----------------------


def test_a_trial_that_ends_without_a_verdict_gives_its_slot_back() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=5, clock=clock)
    breaker.record_failure(answered=True)
    clock.now += 5
    assert breaker.allow()
    breaker.release()  # the trial call was cancelled: neither a success nor a failure
    assert state(breaker) is CircuitState.HALF_OPEN
    assert breaker.allow()  # another call may try at once
    breaker.record_success()
    assert state(breaker) is CircuitState.CLOSED


def test_a_trial_slot_lost_by_a_caller_is_taken_back_after_the_trial_deadline() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=5, trial_timeout_s=10, clock=clock)
    breaker.record_failure(answered=True)
    clock.now += 5
    assert breaker.allow()
    clock.now += 9
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()  # the first trial never reported: it is presumed dead


async def test_a_partner_call_cancelled_during_the_trial_does_not_stick_the_circuit_open() -> None:
    hanging = asyncio.Event()
    trial_of_its_own = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        hanging.set()
        if request.method == "GET":  # the adapter's own trial (review stop 41)
            trial_of_its_own.set()
        await asyncio.sleep(30)
        return web.json_response({"result": "ACCEPTED"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hang)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    partner = CertexHttpPartner(
        AdapterSettings(
            partner_url=f"http://127.0.0.1:{port}",
            partner_timeout_s=10,
            retry_attempts=1,
            circuit_failure_threshold=1,
            circuit_reset_s=0.05,
        ),
        "dgal",
    )
    try:
        partner.circuit.record_failure(answered=False)  # an earlier call got no answer
        await asyncio.sleep(0.06)
        assert partner.circuit.state is CircuitState.HALF_OPEN
        trial = asyncio.create_task(partner.answer(partner_request(Operation.RESERVE)))
        await asyncio.wait_for(hanging.wait(), 5)
        trial.cancel()  # e.g. the adapter stops, or an outer deadline
        with pytest.raises(asyncio.CancelledError):
            await trial
        # The slot given back, the adapter's own trial takes it at once (circuit_probe.py):
        # held by the cancelled call, no trial would have gone for 21 s.
        await asyncio.wait_for(trial_of_its_own.wait(), 5)
    finally:
        await partner.close()
        await runner.cleanup()


def test_retry_delays_grow_exponentially_with_full_jitter_up_to_a_cap() -> None:
    highest = Backoff(base_s=0.25, cap_s=4, draw=lambda low, high: high)
    assert [highest.delay(attempt) for attempt in range(1, 8)] == [0.25, 0.5, 1, 2, 4, 4, 4]
    lowest = Backoff(base_s=0.25, cap_s=4, draw=lambda low, high: low)
    assert {lowest.delay(attempt) for attempt in range(1, 8)} == {0}
    jittered = Backoff(base_s=0.25, cap_s=4, draw=random.Random(7).uniform)
    delays = [jittered.delay(3) for _ in range(200)]
    assert all(0 <= d <= 1 for d in delays)
    assert len(set(delays)) == 200  # full jitter: retries of many callers spread out


def test_the_default_backoff_is_more_than_nominal() -> None:
    assert RETRY_BACKOFF_BASE_S >= 0.2
    assert RETRY_BACKOFF_CAP_S >= 10 * RETRY_BACKOFF_BASE_S


async def test_the_partner_client_waits_between_attempts(samples: Path, tmp_path: Path) -> None:
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "l.db"
    ) as running:
        await set_faults(running.url, fail_next=2)
        partner = CertexHttpPartner(
            AdapterSettings(partner_url=running.url, retry_attempts=3), "dgal"
        )
        partner.backoff = Backoff(base_s=0.25, cap_s=4, draw=lambda low, high: high)
        began = time.monotonic()
        try:
            [answer] = await partner.answer(partner_request(Operation.RESERVE))
        finally:
            await partner.close()
    assert answer.verdict is Verdict.VALID
    assert time.monotonic() - began >= 0.75  # 0.25 s, then 0.5 s


def test_a_pause_the_partner_asks_for_holds_every_call_until_it_ends() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=5, clock=clock)
    breaker.pause(10)
    assert not breaker.allow()
    assert state(breaker) is CircuitState.OPEN  # not calling the partner: the health says so
    breaker.pause(2)  # a shorter pause asked later never cuts the longer one
    clock.now += 9.5
    assert breaker.paused_for_s() == pytest.approx(0.5)
    assert not breaker.allow()
    clock.now += 0.5
    assert breaker.allow()
    assert state(breaker) is CircuitState.CLOSED


def test_a_pause_is_bounded() -> None:
    clock = Clock()
    breaker = CircuitBreaker(clock=clock)
    breaker.pause(86_400)  # "come back tomorrow"
    assert breaker.paused_for_s() == RETRY_AFTER_CAP_S
    clock.now += RETRY_AFTER_CAP_S
    assert breaker.allow()


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("Wed, 21 Oct 2026 07:28:30 GMT", 30.0),  # an HTTP-date, 30 s after "now"
        ("Wed, 21 Oct 2026 07:27:00 GMT", 0.0),  # in the past: no pause
        (None, None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),  # delay-seconds is a whole number
        ("\u0663", None),  # a digit, but not an ASCII one
        ("2026-10-21T07:28:30", None),
        # A year no date holds: OverflowError escaped, the call ended "not understood"
        # and its retries were skipped (review of stop 47).
        ("Mon, 01 Jan 99999999999999999999 00:00:00 GMT", None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    now = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert retry_after_s(header, now) == seconds


# -- review stop 41: when the adapter's own trial is due ------------------------------------


def test_a_trial_is_due_a_reset_after_each_failure_and_never_while_closed() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=5, trial_timeout_s=11, clock=clock)
    assert breaker.trial_in_s() is None
    breaker.record_failure(answered=True)
    assert breaker.trial_in_s() is None  # one failure of two: still closed
    breaker.record_failure(answered=True)
    assert breaker.trial_in_s() == 5
    clock.now += 4
    assert breaker.trial_in_s() == 1
    clock.now += 1
    assert breaker.trial_in_s() == 0
    assert breaker.allow()  # a trial under way: the next is due when it would be taken back
    assert breaker.trial_in_s() == 5  # no later than a reset: it reports sooner
    clock.now += 8
    assert breaker.trial_in_s() == 3
    breaker.record_failure(answered=True)
    assert breaker.trial_in_s() == 5
    clock.now += 5
    assert breaker.allow()
    breaker.record_success()
    assert breaker.trial_in_s() is None


def test_a_trial_waits_for_the_partners_pause() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=5, clock=clock)
    breaker.record_failure(answered=True)
    breaker.pause(30)
    assert breaker.trial_in_s() == 30
    clock.now += 30
    assert breaker.trial_in_s() == 0
    closed = CircuitBreaker(clock=clock)
    closed.pause(10)
    assert closed.trial_in_s() == 10  # waited out; then closed, so none
    clock.now += 10
    assert closed.trial_in_s() is None


def test_only_a_circuit_whose_last_failure_got_no_answer_may_be_closed_by_a_lookup() -> None:
    """Review stop 41, G2: a read answered proves the partner reachable, which matters only
    after failures that got no answer; after answers (a 5xx, a 429) the next real call
    decides."""
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=5, clock=clock)
    assert not breaker.a_lookup_may_close  # nothing failed
    breaker.record_failure(answered=False)
    breaker.record_failure(answered=False)  # down: no connection, timeouts
    assert breaker.a_lookup_may_close
    clock.now += 5
    assert breaker.allow()
    breaker.record_failure(answered=True)  # back, failing: the trial answered 503
    assert not breaker.a_lookup_may_close
    clock.now += 5
    assert breaker.allow()
    breaker.record_failure(answered=False)  # the next trial timed out: down again
    assert breaker.a_lookup_may_close
    clock.now += 5
    assert breaker.allow()
    breaker.record_success()
    assert not breaker.a_lookup_may_close  # closed: nothing to prove
    breaker.record_failure(answered=True)
    breaker.record_failure(answered=False)  # the last one opened it: no answer
    assert state(breaker) is CircuitState.OPEN
    assert breaker.a_lookup_may_close
