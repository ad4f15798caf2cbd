"""A circuit opened by a partner outage closes once the partner answers again, with no
declaration to try it: while the circuit is not closed the adapter tries the partner itself
every ``circuit_reset_s`` with a read-only lookup of a document no declaration can quote
(review stop 41: with no traffic after an outage the circuit stayed open for ever, and
``GunHubPartnerCircuitOpen`` with it)."""

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


async def ledger(url: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/admin/ledger") as answer:
        assert answer.status == 200
        return await answer.json()


async def test_the_circuit_closes_within_a_reset_of_the_partner_coming_back_with_no_traffic(
    samples: Path, tmp_path: Path
) -> None:
    seen = CallsSeen()
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "ledger.db", [seen.middleware]
    ) as running:
        before = await ledger(running.url)
        partner = client(running.url)
        try:
            await set_faults(running.url, outage=True)
            [answer] = await partner.answer(partner_request(Operation.RESERVE))
            assert answer.verdict is Verdict.UNAVAILABLE
            assert partner.circuit_state is CircuitStatus.OPEN
            await set_faults(running.url)  # the partner is back; no declaration comes
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
    # Only the declaration's call carried a key; the trials none that could collide.
    assert [c.method for c in seen.calls if c.keyed] == ["PUT"]
    assert seen.unkeyed, "closed with no call at all"
    for trial in seen.unkeyed:
        assert trial.method == "GET"  # a read-only lookup
        found = DOCUMENT_PATH.fullmatch(trial.path)
        assert found is not None, trial.path
        # Of a document no declaration can quote (outside the contract's references).
        assert re.match(DOCUMENT_REFERENCE_PATTERN, found.group(1)) is None


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
        (503, {"error": "down"}),
        (401, {"message": "Unauthorized"}),  # a gateway, or the lookup authorised apart
        (404, {"message": "no such route"}),  # a wrong URL, or no lookup served
        (405, {"message": "method not allowed"}),
        (501, {"message": "not implemented"}),
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
        return web.json_response({"error": "down"}, status=503)

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


async def test_a_trial_carries_no_trace_of_the_declaration_whose_call_opened_the_circuit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    traced: list[str | None] = []

    async def partner(request: web.Request) -> web.Response:
        if request.method == "GET":
            traced.append(request.headers.get(TRACEPARENT))
            return web.json_response({"result": "NOT_FOUND", "document": "x"}, status=404)
        return web.json_response({"error": "down"}, status=503)

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
        return web.json_response({"error": "down"}, status=503)

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
            self.circuit.record_failure()


async def test_no_trial_is_made_while_a_call_holds_the_trial_slot() -> None:
    circuit = CircuitBreaker(failure_threshold=1, reset_after_s=0.05, trial_timeout_s=60)
    trials = Trials(circuit, succeeds=True)
    probe = CircuitProbe(circuit, trials)
    circuit.record_failure()
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
    circuit.pause(0.2)  # a 429 with Retry-After: the circuit reads open meanwhile
    probe.watch()
    try:
        assert probe.running
        await asyncio.wait_for(probe.stopped(), 2)
        assert circuit.state is CircuitState.CLOSED
        assert trials.made == 0
    finally:
        await probe.close()


async def test_a_closed_probe_makes_no_further_trial() -> None:
    circuit = CircuitBreaker(failure_threshold=1, reset_after_s=0.05)
    trials = Trials(circuit)
    probe = CircuitProbe(circuit, trials)
    circuit.record_failure()
    probe.watch()
    await asyncio.wait_for(trials.one_made.wait(), 2)
    await probe.close()  # the adapter stops
    made = trials.made
    probe.watch()  # a call ending after the stop
    assert not probe.running
    await asyncio.sleep(0.2)
    assert trials.made == made
