"""A circuit opened by a partner outage closes once the partner answers again, with no
declaration to try it: while the circuit is not closed the adapter tries the partner itself
every ``circuit_reset_s`` with a read-only lookup of a document no declaration can quote
(review stop 41: with no traffic after an outage the circuit stayed open for ever, and
``GunHubPartnerCircuitOpen`` with it). Only after an outage with no answer (no connection,
timeouts): a lookup answered proves no more than that the partner answers, so a circuit
opened by the partner answering and failing (a 5xx, a 429) is decided by its next real
call (review stop 41, G2)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.base.certex import CertexHttpPartner
from adapters.base.circuit_probe import CircuitProbe
from adapters.base.resilience import CircuitBreaker, CircuitState
from gun_contract.health import CircuitStatus
from gun_contract.model.exchange import DOCUMENT_REFERENCE_PATTERN, Operation
from gun_contract.model.verdicts import Verdict
from gun_contract.trace import TRACEPARENT, TraceFilter, trace_id_for, tracing
from tests.adapter_fixtures import partner_request
from tests.partner_fixtures import (
    Handler,
    partner_client,
    running_partner,
    serving,
    set_faults,
)

RESET_S = 0.3
# A trial's answer travels on loopback; the margin is for a loaded machine.
SLACK_S = 1.5
DOCUMENT_PATH = re.compile(r"/api/v1/documents/([^/]+)")


@dataclass
class Call:
    at: float
    method: str
    path: str
    keyed: bool


@dataclass
class CallsSeen:
    """Every call the partner got, in order; ``arrived`` is notified at each."""

    calls: list[Call] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def unkeyed(self) -> list[Call]:
        """The calls with no idempotency key: none of a declaration's."""
        return [c for c in self.calls if not c.keyed]

    async def see(self, request: web.Request) -> None:
        self.calls.append(
            Call(
                time.monotonic(),
                request.method,
                request.path,
                "Idempotency-Key" in request.headers,
            )
        )
        async with self.arrived:
            self.arrived.notify_all()

    async def unkeyed_count(self, count: int, within_s: float) -> None:
        async with asyncio.timeout(within_s), self.arrived:
            await self.arrived.wait_for(lambda: len(self.unkeyed) >= count)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            await self.see(request)
        return await handler(request)


def status(partner: CertexHttpPartner) -> CircuitStatus:
    """Read afresh each time (mypy would narrow ``circuit_state`` across calls)."""
    return partner.circuit_state


def state(circuit: CircuitBreaker) -> CircuitState:
    """Read afresh each time, as :func:`status`."""
    return circuit.state


def client(url: str, **settings: Any) -> CertexHttpPartner:
    """One failure opens the circuit, and a call is one attempt: the test says when."""
    return partner_client(
        url,
        **{
            "circuit_failure_threshold": 1,
            "circuit_reset_s": RESET_S,
            "retry_attempts": 1,
            "partner_timeout_s": 1,
            **settings,
        },
    )


async def closed_within(partner: CertexHttpPartner, within_s: float) -> float:
    """Seconds until the client's circuit reads closed (what its heartbeat says), failing
    the test past ``within_s``."""
    began = time.monotonic()
    while partner.circuit_state is not CircuitStatus.CLOSED:
        if time.monotonic() - began > within_s:
            pytest.fail(
                f"the circuit still reads {partner.circuit_state.value} {within_s:g} s "
                "after the partner came back, with no call to try it"
            )
        await asyncio.sleep(0.01)
    return time.monotonic() - began


async def stays_not_closed(partner: CertexHttpPartner, for_s: float) -> None:
    """Fail the test as soon as the client's circuit reads closed within ``for_s``."""
    began = time.monotonic()
    while time.monotonic() - began < for_s:
        assert partner.circuit_state is not CircuitStatus.CLOSED, (
            f"closed {time.monotonic() - began:.2f} s in, with no call of a declaration"
        )
        await asyncio.sleep(0.01)


async def hung_up(request: web.Request) -> web.Response:
    """No answer: the connection dropped (the partner or the network down)."""
    assert request.transport is not None
    request.transport.close()
    return web.Response()


@dataclass
class Down:
    """In front of the simulator: while ``down``, its API calls get no answer."""

    down: bool = False

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.down and request.path.startswith("/api/"):
            return await hung_up(request)
        return await handler(request)


async def ledger(url: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/admin/ledger") as answer:
        assert answer.status == 200
        return await answer.json()


async def test_the_circuit_closes_within_a_reset_of_the_partner_coming_back_with_no_traffic(
    samples: Path, tmp_path: Path
) -> None:
    seen = CallsSeen()
    outage = Down()
    async with running_partner(
        samples / "partners" / "dgal-documents.json",
        tmp_path / "ledger.db",
        [seen.middleware, outage.middleware],
    ) as running:
        before = await ledger(running.url)
        partner = client(running.url)
        try:
            outage.down = True
            [answer] = await partner.answer(partner_request(Operation.RESERVE))
            assert answer.verdict is Verdict.UNAVAILABLE
            assert partner.circuit_state is CircuitStatus.OPEN
            outage.down = False  # the partner is back; no declaration comes
            took_s = await closed_within(partner, RESET_S + SLACK_S)
            trials = len(seen.unkeyed)
            # Closed, it is tried no more: calls go through again, each deciding.
            await asyncio.sleep(4 * RESET_S)
            assert len(seen.unkeyed) == trials
        finally:
            await partner.close()
        after = await ledger(running.url)
    assert took_s <= RESET_S + SLACK_S
    assert after == before  # the trials changed nothing at the partner
    # Only the declaration's call carried a key; the trials none that could collide. (Its
    # connection dropped, aiohttp sends an idempotent PUT once more: RFC 9112 9.3.1.)
    assert {c.method for c in seen.calls if c.keyed} == {"PUT"}
    assert seen.unkeyed, "closed with no call at all"
    for trial in seen.unkeyed:
        assert trial.method == "GET"  # a read-only lookup
        found = DOCUMENT_PATH.fullmatch(trial.path)
        assert found is not None, trial.path
        # Of a document no declaration can quote (outside the contract's references).
        assert re.match(DOCUMENT_REFERENCE_PATTERN, found.group(1)) is None


async def test_after_an_outage_answered_503_the_next_real_call_closes_the_circuit(
    samples: Path, tmp_path: Path
) -> None:
    """The partner answered every call 503: the adapter makes no trial of its own (a lookup
    answered would prove nothing the 503s did not); the circuit stays half_open with no
    traffic, and the next declaration's call is the trial that closes it (G2)."""
    seen = CallsSeen()
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "ledger.db", [seen.middleware]
    ) as running:
        partner = client(running.url)
        try:
            await set_faults(running.url, outage=True)
            [answer] = await partner.answer(partner_request(Operation.RESERVE))
            assert answer.verdict is Verdict.UNAVAILABLE
            await set_faults(running.url)  # back; no declaration comes
            await stays_not_closed(partner, 3 * RESET_S)
            assert seen.unkeyed == []
            [decided] = await partner.answer(partner_request(Operation.RESERVE))
            assert decided.verdict is Verdict.VALID
            assert partner.circuit_state is CircuitStatus.CLOSED
        finally:
            await partner.close()


async def test_no_trial_is_sent_while_the_circuit_is_closed() -> None:
    seen = CallsSeen()
    answers = iter([500, 200, 500, 500])  # failures, but never 3 in a row

    async def partner_up(request: web.Request) -> web.Response:
        await seen.see(request)
        status = next(answers, 200)
        return web.json_response({"result": "ACCEPTED"} if status == 200 else {}, status=status)

    async with serving(partner_up) as url:
        partner = client(url, circuit_failure_threshold=3)
        try:
            for _ in range(4):
                await partner.answer(partner_request(Operation.RESERVE))
            assert partner.circuit_state is CircuitStatus.CLOSED
            await asyncio.sleep(4 * RESET_S)  # what must not happen has time to
        finally:
            await partner.close()
    assert seen.unkeyed == []


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"message": "Unauthorized"}),  # a gateway, or the lookup authorised apart
        (404, {"message": "no such route"}),  # a wrong URL, or no lookup served
        (405, {"message": "method not allowed"}),
        (501, {"message": "not implemented"}),
        # Accepted for processing: a lookup the partner takes to answer later says
        # nothing of it applying calls (stop 53's open item: it closed the circuit).
        (202, {"result": "PROCESSING"}),
    ],
)
async def test_a_trial_the_partner_does_not_answer_keeps_the_circuit_open(
    status: int, body: dict[str, Any]
) -> None:
    seen = CallsSeen()
    trial_answer: tuple[int, dict[str, Any]] = (status, body)

    async def partner(request: web.Request) -> web.Response:
        await seen.see(request)
        if request.method == "GET":
            return web.json_response(trial_answer[1], status=trial_answer[0])
        return await hung_up(request)

    async with serving(partner) as url:
        adapter = client(url)
        try:
            await adapter.answer(partner_request(Operation.RESERVE))
            await seen.unkeyed_count(3, within_s=3 * RESET_S + SLACK_S)
            assert adapter.circuit_state is not CircuitStatus.CLOSED
            trials = seen.unkeyed
            assert [t.method for t in trials] == ["GET"] * len(trials)
            gaps = [b.at - a.at for a, b in itertools.pairwise(trials)]
            assert all(gap >= 0.8 * RESET_S for gap in gaps), gaps  # once a reset, no storm
            # The partner's own "no such document" is an answer: the partner is back.
            trial_answer = (404, {"result": "NOT_FOUND", "document": "x"})
            await closed_within(adapter, RESET_S + SLACK_S)
        finally:
            await adapter.close()


async def test_a_trial_answered_503_hands_the_circuit_to_the_next_real_call() -> None:
    """Down (no answer), then back answering 503: the partner answers, failing; a lookup
    answered later would not prove it applies calls, so the adapter's trials end, and the
    next declaration's call decides (G2)."""
    seen = CallsSeen()

    async def partner(request: web.Request) -> web.Response:
        await seen.see(request)
        if request.method == "GET":
            return web.json_response({"error": "starting"}, status=503)
        return await hung_up(request)

    async with serving(partner) as url:
        adapter = client(url)
        try:
            await adapter.answer(partner_request(Operation.RESERVE))
            await seen.unkeyed_count(1, within_s=RESET_S + SLACK_S)
            await until(lambda: not adapter._probe.running, SLACK_S, "the probe stopped")
            await asyncio.sleep(3 * RESET_S)  # what must not happen has time to
            assert len(seen.unkeyed) == 1
            assert adapter.circuit_state is CircuitStatus.HALF_OPEN
        finally:
            await adapter.close()


async def test_a_trial_carries_no_trace_of_the_declaration_whose_call_opened_the_circuit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    traced: list[str | None] = []

    async def partner(request: web.Request) -> web.Response:
        if request.method == "GET":
            traced.append(request.headers.get(TRACEPARENT))
            return web.json_response({"result": "NOT_FOUND", "document": "x"}, status=404)
        return await hung_up(request)

    caplog.handler.addFilter(TraceFilter())
    caplog.set_level(logging.INFO, logger="adapters.base.certex")
    async with serving(partner) as url:
        adapter = client(url)
        try:
            with tracing(trace_id_for("26FR000690I0000401", 1)):
                await adapter.answer(partner_request(Operation.RESERVE))
            await closed_within(adapter, RESET_S + SLACK_S)
        finally:
            await adapter.close()
    assert traced == [None]
    [closed] = [r for r in caplog.records if "answers again" in r.getMessage()]
    # Its own trial, in a context of its own: the log names no declaration's trace.
    assert getattr(closed, "trace_id", "unset") is None


async def until(holds: Callable[[], bool], within_s: float, what: str) -> None:
    began = time.monotonic()
    while not holds():
        if time.monotonic() - began > within_s:
            pytest.fail(f"not {what} within {within_s:g} s")
        await asyncio.sleep(0.01)


async def test_a_partner_not_serving_the_lookup_has_its_circuit_closed_by_the_next_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A trial answered as if the lookup were not there decides nothing: taken for a
    failure, it would reopen the circuit at every trial, before any call could try, and
    a partner serving the declarations' calls would be given up on for good."""
    seen = CallsSeen()
    up = False

    async def partner(request: web.Request) -> web.Response:
        await seen.see(request)
        if request.method == "GET":
            return web.Response(status=404, text="404: Not Found")  # no such route
        if up:
            return web.json_response({"result": "ACCEPTED"})
        return await hung_up(request)

    caplog.set_level(logging.WARNING, logger="adapters.base.certex")
    async with serving(partner) as url:
        adapter = client(url)
        try:
            await adapter.answer(partner_request(Operation.RESERVE))
            up = True
            await seen.unkeyed_count(1, within_s=RESET_S + SLACK_S)
            # Its slot given back: the next call is the trial, not turned away.
            await until(lambda: adapter.circuit.trial_in_s() == 0, SLACK_S, "given back")
            [answer] = await adapter.answer(partner_request(Operation.RESERVE))
            assert answer.verdict is Verdict.VALID
            assert adapter.circuit_state is CircuitStatus.CLOSED
        finally:
            await adapter.close()
    warned = [r for r in caplog.records if "did not answer the adapter's own trial" in r.message]
    assert len(warned) == 1


async def test_a_partner_answering_lookups_and_failing_writes_is_not_closed_by_a_trial() -> None:
    """A lookup answered proves only that the partner answers. Its writes answered 503 (a
    ledger read-only or failed over, a maintenance page on the write API), the adapter's own
    trial closed the circuit every reset: it read closed about half the time,
    ``GunHubPartnerCircuitOpen`` could not fire, the failing partner got ~3x the calls and
    each declaration waited out its retries (review stop 41, G2). A circuit opened by
    answers is decided by its next real call, as before the trial existed."""
    seen = CallsSeen()

    async def reads_up_writes_down(request: web.Request) -> web.Response:
        await seen.see(request)
        if request.method == "GET":
            return web.json_response({"result": "NOT_FOUND", "document": "x"}, status=404)
        return web.json_response({"error": "write service unavailable"}, status=503)

    async with serving(reads_up_writes_down) as url:
        adapter = client(url)
        try:
            [answer] = await adapter.answer(partner_request(Operation.RESERVE))
            assert answer.verdict is Verdict.UNAVAILABLE
            # No declaration comes for several resets: nothing of the adapter's own closes it.
            await stays_not_closed(adapter, 4 * RESET_S)
            assert seen.unkeyed == []  # no trial of its own: it could decide nothing
            assert adapter.circuit_state is CircuitStatus.HALF_OPEN
            # The next declaration's call is the trial; it fails and reopens the circuit...
            [trial] = await adapter.answer(partner_request(Operation.RESERVE))
            assert trial.verdict is Verdict.UNAVAILABLE
            assert status(adapter) is CircuitStatus.OPEN
            writes = len(seen.calls)
            # ... and while open, a declaration is answered UNAVAILABLE at once, not sent.
            began = time.monotonic()
            [at_once] = await adapter.answer(partner_request(Operation.RESERVE))
            assert time.monotonic() - began < RESET_S
            assert at_once.verdict is Verdict.UNAVAILABLE
            assert at_once.detail is not None
            assert "circuit open" in at_once.detail
            assert len(seen.calls) == writes
            await stays_not_closed(adapter, 2 * RESET_S)
            assert seen.unkeyed == []
        finally:
            await adapter.close()


# -- the probe against the breaker: when a trial is its to make ---------------------------


class Trials:
    """A stand-in trial call: counts, and records ``outcome`` on the circuit."""

    def __init__(self, circuit: CircuitBreaker, succeeds: bool = False) -> None:
        self.circuit = circuit
        self.succeeds = succeeds
        self.made = 0
        self.one_made = asyncio.Event()

    async def __call__(self) -> None:
        self.made += 1
        self.one_made.set()
        if self.succeeds:
            self.circuit.record_success()
        else:
            self.circuit.record_failure(answered=False)  # a lookup unanswered


async def test_no_trial_is_made_while_a_call_holds_the_trial_slot() -> None:
    circuit = CircuitBreaker(failure_threshold=1, reset_after_s=0.05, trial_timeout_s=60)
    trials = Trials(circuit, succeeds=True)
    probe = CircuitProbe(circuit, trials)
    circuit.record_failure(answered=False)
    await asyncio.sleep(0.06)  # half_open: a trial is due
    assert circuit.allow()  # a declaration's call takes it and is under way
    probe.watch()
    try:
        await asyncio.sleep(0.5)  # ten resets: what must not happen has time to
        assert trials.made == 0
        circuit.record_success()  # the declaration's call answered: closed
        await asyncio.wait_for(probe.stopped(), 1)
        assert trials.made == 0  # closed: the probe ended with no call
    finally:
        await probe.close()


async def test_a_pause_asked_while_closed_is_waited_out_with_no_trial() -> None:
    circuit = CircuitBreaker(failure_threshold=5, reset_after_s=0.05)
    trials = Trials(circuit)
    probe = CircuitProbe(circuit, trials)
    circuit.record_failure(answered=True)  # a 429 with Retry-After: an answer...
    circuit.pause(0.2)  # ... asking for a pause: the circuit reads open meanwhile
    probe.watch()
    try:
        assert circuit.state is CircuitState.OPEN
        assert not probe.running  # the partner answered: no lookup of its own to prove it
        await asyncio.sleep(0.3)
        assert state(circuit) is CircuitState.CLOSED  # one failure of five
        assert trials.made == 0
    finally:
        await probe.close()


async def test_the_probe_stops_once_a_call_fails_with_an_answer() -> None:
    """Down (no answer), the probe tries; a real call then answered 503 hands the circuit
    to the next real call: the probe ends, its lookup could not close it (G2)."""
    circuit = CircuitBreaker(failure_threshold=1, reset_after_s=0.05, trial_timeout_s=60)
    trials = Trials(circuit)
    probe = CircuitProbe(circuit, trials)
    circuit.record_failure(answered=False)
    probe.watch()
    try:
        await asyncio.wait_for(trials.one_made.wait(), 2)
        circuit.record_failure(answered=True)  # e.g. a declaration's trial answered 503
        await asyncio.wait_for(probe.stopped(), 2)
        made = trials.made
        probe.watch()  # after that call: nothing to start
        assert not probe.running
        await asyncio.sleep(0.2)
        assert trials.made == made
        assert circuit.state is not CircuitState.CLOSED
        circuit.record_failure(answered=False)  # the next call got no answer: down again
        probe.watch()
        assert probe.running
    finally:
        await probe.close()


async def test_a_closed_probe_makes_no_further_trial() -> None:
    circuit = CircuitBreaker(failure_threshold=1, reset_after_s=0.05)
    trials = Trials(circuit)
    probe = CircuitProbe(circuit, trials)
    circuit.record_failure(answered=False)
    probe.watch()
    await asyncio.wait_for(trials.one_made.wait(), 2)
    await probe.close()  # the adapter stops
    made = trials.made
    probe.watch()  # a call ending after the stop
    assert not probe.running
    await asyncio.sleep(0.2)
    assert trials.made == made
