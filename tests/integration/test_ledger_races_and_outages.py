"""The exact ledger under racing declarations, and a partner outage with its replay.

A real adapter (in this process) on the real broker, asking a real partner simulator
over HTTP; the conformance harness plays the hub.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp import web

from adapters.base.runner import AdapterRunner
from adapters.conformance.harness import Harness, Quote
from gun_contract.model.exchange import AuthorityResponse, Operation
from gun_contract.model.verdicts import Verdict
from gun_contract.settings import AdapterSettings, Settings
from tests.adapter_fixtures import running_adapter
from tests.conftest import KafkaEnv
from tests.partner_fixtures import Handler, RunningPartner, running_partner

pytestmark = pytest.mark.broker


def adapter_settings(
    kafka_env: KafkaEnv,
    partner: RunningPartner,
    replay_interval_s: float,
    circuit_failure_threshold: int = 2,
) -> Settings:
    settings = kafka_env.settings()
    settings.adapter = AdapterSettings(
        partner_url=partner.url,
        partner_timeout_s=1,
        retry_attempts=2,
        circuit_failure_threshold=circuit_failure_threshold,
        circuit_reset_s=1,
        replay_interval_s=replay_interval_s,
    )
    return settings


@asynccontextmanager
async def playing_the_hub(kafka_env: KafkaEnv, partner: RunningPartner) -> AsyncIterator[Harness]:
    """A harness playing the hub in front of the DGAL adapter."""
    harness = Harness(
        authority="dgal",
        document_type="N853",
        connect=kafka_env.settings().kafka.bootstrap_servers,  # type: ignore[arg-type]
        topics=kafka_env.topics,
        hub_envelope=kafka_env.envelope("hub"),
        partner_url=partner.url,
        answer_timeout_s=30,
        partner_timeout_s=1,
    )
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


@asynccontextmanager
async def adapter_and_hub(
    kafka_env: KafkaEnv,
    partner: RunningPartner,
    replay_interval_s: float,
    circuit_failure_threshold: int = 2,
) -> AsyncIterator[tuple[Harness, AdapterRunner]]:
    """The DGAL adapter running, and a harness playing the hub in front of it."""
    settings = adapter_settings(kafka_env, partner, replay_interval_s, circuit_failure_threshold)
    async with (
        running_adapter("dgal", settings, kafka_env.topics, kafka_env.envelope("dgal")) as adapter,
        playing_the_hub(kafka_env, partner) as harness,
    ):
        yield harness, adapter


@pytest.fixture
async def hub(kafka_env: KafkaEnv, partner: RunningPartner) -> AsyncIterator[Harness]:
    async with adapter_and_hub(kafka_env, partner, replay_interval_s=0.5) as (harness, _):
        yield harness


@pytest.fixture
async def hub_slow_replay(
    kafka_env: KafkaEnv, partner: RunningPartner
) -> AsyncIterator[tuple[Harness, AdapterRunner]]:
    """Replay rounds 3 s apart and a circuit that stays closed: a new version reaches the
    partner through the adapter before the next replay round."""
    async with adapter_and_hub(
        kafka_env, partner, replay_interval_s=3, circuit_failure_threshold=50
    ) as running:
        yield running


async def ask_all(hub: Harness, requests: list) -> list[AuthorityResponse]:  # type: ignore[type-arg]
    for request in requests:
        await hub.publish(request.reference, hub.seal(request))
    return [(await hub.answers(r.request_id, 1, 60))[0] for r in requests]


async def test_racing_declarations_reserve_exactly_what_the_document_covers(hub: Harness) -> None:
    doc = await hub.seed("race")  # one line of 100 KGM
    requests = [hub.request(Operation.RESERVE, [Quote(doc, "7")]) for _ in range(60)]
    answers = await ask_all(hub, requests)
    verdicts = [a.answers[0].verdict for a in answers]
    assert verdicts.count(Verdict.VALID) == 14  # 14 x 7 = 98: the fifteenth does not fit
    assert verdicts.count(Verdict.QUANTITY_INSUFFICIENT) == 46
    assert await hub.ledger(doc) == (Decimal(98), Decimal(0))


async def test_racing_uneven_claims_never_overdraw_and_refuse_only_what_cannot_fit(
    hub: Harness,
) -> None:
    doc = await hub.seed("uneven")
    dice = random.Random(7)
    quantities = [str(dice.randint(1, 25)) for _ in range(40)]
    requests = [hub.request(Operation.RESERVE, [Quote(doc, q)]) for q in quantities]
    answers = await ask_all(hub, requests)
    accepted = [
        Decimal(q)
        for q, a in zip(quantities, answers, strict=True)
        if a.answers[0].verdict is Verdict.VALID
    ]
    refused = [
        Decimal(q)
        for q, a in zip(quantities, answers, strict=True)
        if a.answers[0].verdict is not Verdict.VALID
    ]
    reserved, _ = await hub.ledger(doc)
    assert reserved == sum(accepted) <= 100
    # The balance only shrinks, so a refused claim cannot fit in what is left at the end.
    assert all(q > 100 - reserved for q in refused)
    assert {
        a.answers[0].partner_code for a in answers if a.answers[0].verdict is not Verdict.VALID
    } <= {"05", "02"}


async def test_an_outage_answers_unavailable_promptly_then_replays_write_offs(
    hub: Harness,
) -> None:
    docs = [await hub.seed(f"outage-{n}") for n in range(4)]
    reservations = [hub.request(Operation.RESERVE, [Quote(d, "30")]) for d in docs]
    assert all(a.answers[0].verdict is Verdict.VALID for a in await ask_all(hub, reservations))

    await hub.faults(outage=True)
    began = time.monotonic()
    during = await ask_all(
        hub, [hub.request(Operation.RESERVE, [Quote(docs[0], "5")]) for _ in range(5)]
    )
    elapsed = time.monotonic() - began
    assert all(a.answers[0].verdict is Verdict.UNAVAILABLE for a in during)
    assert elapsed < 10  # five requests: the open circuit answers without waiting
    write_offs = [
        hub.request(Operation.WRITE_OFF, [Quote(d, "30")], reference=r.reference)
        for d, r in zip(docs[:3], reservations[:3], strict=True)
    ]
    deletion = hub.request(
        Operation.DELETE,
        [Quote(docs[3], None, line=None, unit=None)],
        reference=reservations[3].reference,
    )
    assert all(
        a.answers[0].verdict is Verdict.UNAVAILABLE
        for a in await ask_all(hub, [*write_offs, deletion])
    )
    assert await hub.ledger(docs[0]) == (Decimal(30), Decimal(0))  # nothing reached it

    await hub.faults()  # the partner is back: pending operations are replayed in order
    for request in [*write_offs, deletion]:
        *_, replayed = await hub.answers(request.request_id, 2, 30)
        assert replayed.answers[0].verdict is Verdict.VALID
    for doc in docs[:3]:
        assert await hub.ledger(doc) == (Decimal(0), Decimal(30))
    assert await hub.ledger(docs[3]) == (Decimal(0), Decimal(0))


async def test_a_deletion_queued_in_an_outage_never_wipes_the_next_versions_reservation(
    hub_slow_replay: tuple[Harness, AdapterRunner], partner: RunningPartner
) -> None:
    """Defect 7: v1 refused, its DELETE met an outage and was queued; v2 (an amendment)
    reserves once the partner is back. Replaying v1's DELETE after v2's RESERVE would
    wipe v2's reservation and v2's release would then write nothing off."""
    hub, adapter = hub_slow_replay
    doc = await hub.seed("order")
    v1 = hub.request(Operation.RESERVE, [Quote(doc, "60")])
    [answer] = (await ask_all(hub, [v1]))[0].answers
    assert answer.verdict is Verdict.VALID
    reference = v1.reference

    await hub.faults(outage=True)
    delete_v1 = hub.request(
        Operation.DELETE, [Quote(doc, None, line=None, unit=None)], reference=reference
    )
    [answer] = (await ask_all(hub, [delete_v1]))[0].answers
    assert answer.verdict is Verdict.UNAVAILABLE  # queued for replay
    assert len(adapter.pending) == 1
    await hub.faults()

    reserve_v2 = hub.request(Operation.RESERVE, [Quote(doc, "40")], reference=reference, version=2)
    [answer] = (await ask_all(hub, [reserve_v2]))[0].answers
    assert answer.verdict is Verdict.VALID
    assert await hub.ledger(doc) == (Decimal(40), Decimal(0))
    # v2 went out only after v1's queued DELETE was replayed ahead of it (its second
    # answer, published before v2 was sent), and a whole replay round that began after v2's
    # answer finds nothing left to replay: nothing may wipe v2's reservation.
    *_, replayed = await hub.answers(delete_v1.request_id, 2, 30)
    assert replayed.answers[0].verdict is Verdict.VALID
    await asyncio.wait_for(adapter.replay_rounds.one_begun_after_now(), 30)
    assert len(adapter.pending) == 0
    assert await hub.ledger(doc) == (Decimal(40), Decimal(0))

    write_off_v2 = hub.request(
        Operation.WRITE_OFF,
        [Quote(doc, None, line=None, unit=None)],
        reference=reference,
        version=2,
    )
    [answer] = (await ask_all(hub, [write_off_v2]))[0].answers
    assert (answer.verdict, answer.partner_code) == (Verdict.VALID, "01")
    assert await hub.ledger(doc) == (Decimal(0), Decimal(40))  # exactly v2's quantity
    positions = partner.store.positions(doc)
    assert [(p.declaration, p.version, p.state) for p in positions] == [
        (reference, 2, "WRITTEN_OFF")
    ]


@pytest.fixture
async def partner_failing(
    samples: Path, tmp_path: Path
) -> AsyncIterator[tuple[RunningPartner, set[str], list[str]]]:
    """The simulator, up, answering 500 to every call whose idempotency key begins with a
    request id of the set (one operation of one declaration), and to nothing else; the
    list: those calls."""
    failing: set[str] = set()
    failed: list[str] = []

    @web.middleware
    async def fail_one_operation(request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key", "")
        if key.rsplit("/", 1)[0] in failing:
            failed.append(key)
            return web.json_response({"error": "internal error"}, status=500)
        return await handler(request)

    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "l.db", [fail_one_operation]
    ) as running:
        yield running, failing, failed


async def test_a_deletion_the_partner_keeps_failing_does_not_hold_the_next_version_back(
    kafka_env: KafkaEnv, partner_failing: tuple[RunningPartner, set[str], list[str]]
) -> None:
    """Review stop 36, G7: v1 reserved 60 and was refused; the partner, up, answers 500 to
    every call of v1's DELETE (and only to it). v2 (an amendment) is lodged: its
    reservation is sent and applied, v1's queued DELETE is answered STALE (superseded)
    and never sent again, and the ledger holds exactly v2's 40. Before, v2 was answered
    UNAVAILABLE, "not sent: an earlier operation of this declaration waits", in degraded
    mode for as long as the partner failed v1's DELETE."""
    partner, failing, failed = partner_failing
    async with adapter_and_hub(
        kafka_env, partner, replay_interval_s=0.5, circuit_failure_threshold=50
    ) as (hub, adapter):
        doc = await hub.seed("order")
        v1 = hub.request(Operation.RESERVE, [Quote(doc, "60")])
        [answer] = (await ask_all(hub, [v1]))[0].answers
        assert answer.verdict is Verdict.VALID
        reference = v1.reference
        delete_v1 = hub.request(
            Operation.DELETE, [Quote(doc, None, line=None, unit=None)], reference=reference
        )
        failing.add(delete_v1.request_id)
        [answer] = (await ask_all(hub, [delete_v1]))[0].answers
        assert answer.verdict is Verdict.UNAVAILABLE  # queued for replay
        # Stuck: a whole replay round later, the partner still fails it, nothing else.
        await asyncio.wait_for(adapter.replay_rounds.one_begun_after_now(), 30)
        assert len(adapter.pending) == 1
        assert len(failed) >= 2

        reserve_v2 = hub.request(
            Operation.RESERVE, [Quote(doc, "40")], reference=reference, version=2
        )
        [answer] = (await ask_all(hub, [reserve_v2]))[0].answers
        assert (answer.verdict, answer.partner_code) == (Verdict.VALID, None), answer.detail
        *_, superseded = await hub.answers(delete_v1.request_id, 2, 30)
        assert [(a.verdict, a.partner_code) for a in superseded.answers] == [
            (Verdict.MISMATCH, "STALE")
        ]
        calls_when_superseded = len(failed)
        await asyncio.wait_for(adapter.replay_rounds.one_begun_after_now(), 30)
        assert len(adapter.pending) == 0
        assert len(failed) == calls_when_superseded  # never sent again
        assert len(await hub.answers(delete_v1.request_id, 2, 1)) == 2
    assert partner.store.balances(doc)[0].reserved == Decimal(40)
    assert [(p.declaration, p.version, p.state) for p in partner.store.positions(doc)] == [
        (reference, 2, "ACTIVE")
    ]


@dataclass
class SlowPartner(RunningPartner):
    """The simulator, telling when it answered a reservation call (the one it held, whose
    caller gave up on it, included: nothing else signals it)."""

    reservation_answered: asyncio.Event


@pytest.fixture
async def slow_partner(samples: Path, tmp_path: Path) -> AsyncIterator[SlowPartner]:
    answered = asyncio.Event()

    @web.middleware
    async def signal(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.method == "PUT" and "/reservations/" in request.path and response.status == 200:
            answered.set()
        return response

    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "l.db", [signal]
    ) as running:
        yield SlowPartner(running.url, running.store, answered)


def verdicts(answer: AuthorityResponse) -> list[tuple[Verdict, str | None]]:
    return [(a.verdict, a.partner_code) for a in answer.answers]


async def test_a_refused_declarations_deletion_waits_for_a_reservation_still_in_progress(
    kafka_env: KafkaEnv, slow_partner: SlowPartner
) -> None:
    """Review stop 39, P1: the partner holds v1's reservation of 10 (its retry meets 409
    "being processed", so the adapter answers UNAVAILABLE); the hub refuses the
    declaration (another authority refused) and sends the DELETE of v1. It is queued behind
    the reservation (UNAVAILABLE: FOLLOW_UP_PENDING), sent once the partner has answered
    the reservation, and finds it: 01, nothing left reserved. Before, the DELETE reached
    the partner first, was answered 02 (VALID, RESERVATION_DELETED), and the partner then
    applied the reservation: 10 reserved for a refused declaration for ever."""
    held_s = 8.0  # past the live call (2 x 1 s) and the DELETE's answer
    async with adapter_and_hub(kafka_env, slow_partner, replay_interval_s=0.5) as (hub, adapter):
        doc = await hub.seed("late-reservation")
        await hub.faults(in_progress_next=1, hang_s=held_s)
        reserve = hub.request(Operation.RESERVE, [Quote(doc, "10")])
        [answer] = (await ask_all(hub, [reserve]))[0].answers
        assert answer.verdict is Verdict.UNAVAILABLE
        assert "still processing" in (answer.detail or "")
        delete = hub.request(
            Operation.DELETE, [Quote(doc, None, line=None, unit=None)], reference=reserve.reference
        )
        [pending] = await ask_all(hub, [delete])
        assert verdicts(pending) == [(Verdict.UNAVAILABLE, None)]  # queued behind
        assert not slow_partner.reservation_answered.is_set()  # the partner still holds it

        await asyncio.wait_for(slow_partner.reservation_answered.wait(), held_s + 30)
        *_, done = await hub.answers(delete.request_id, 2, 30)
        assert verdicts(done) == [(Verdict.VALID, "01")]
        await asyncio.wait_for(adapter.replay_rounds.one_begun_after_now(), 30)
        assert len(adapter.pending) == 0
        assert len(await hub.answers(reserve.request_id, 1, 1)) == 1  # never answered again
    assert slow_partner.store.balances(doc)[0].reserved == Decimal(0)


async def test_a_restart_keeps_the_deletion_behind_a_reservation_still_in_progress(
    kafka_env: KafkaEnv, slow_partner: SlowPartner
) -> None:
    """The same, with the adapter stopped after queuing the DELETE and started again while
    the partner still holds the reservation: its pending file forgets both rows (the log
    holds them), and it reads them again from the commit, whose metadata names the
    reservation as unsettled. It asks the reservation again with its key (409) instead of
    taking it for answered, and keeps the DELETE behind it."""
    held_s = 30.0  # past the live call, a stop, a start and a rebalance on a loaded machine
    settings = adapter_settings(kafka_env, slow_partner, replay_interval_s=0.5)
    envelope = kafka_env.envelope("dgal")
    async with playing_the_hub(kafka_env, slow_partner) as hub:
        doc = await hub.seed("late-reservation-restart")
        reserve = hub.request(Operation.RESERVE, [Quote(doc, "10")])
        delete = hub.request(
            Operation.DELETE, [Quote(doc, None, line=None, unit=None)], reference=reserve.reference
        )
        async with running_adapter("dgal", settings, kafka_env.topics, envelope) as first:
            await hub.faults(in_progress_next=1, hang_s=held_s)
            [answer] = (await ask_all(hub, [reserve]))[0].answers
            assert answer.verdict is Verdict.UNAVAILABLE
            [pending] = await ask_all(hub, [delete])
            assert verdicts(pending) == [(Verdict.UNAVAILABLE, None)]
            assert len(first.pending) == 2
        async with running_adapter("dgal", settings, kafka_env.topics, envelope) as second:
            # The DELETE read again and answered again: still behind the reservation.
            _, again = await hub.answers(delete.request_id, 2, 60)
            assert verdicts(again) == [(Verdict.UNAVAILABLE, None)]
            await asyncio.wait_for(second.replay_rounds.one_begun_after_now(), 30)
            assert not slow_partner.reservation_answered.is_set(), "held too briefly to tell"
            assert slow_partner.store.balances(doc)[0].reserved == Decimal(0)
            assert len(second.pending) == 2

            await asyncio.wait_for(slow_partner.reservation_answered.wait(), held_s + 30)
            *_, done = await hub.answers(delete.request_id, 3, 30)
            assert verdicts(done) == [(Verdict.VALID, "01")]
            await asyncio.wait_for(second.replay_rounds.one_begun_after_now(), 30)
            assert len(second.pending) == 0
        assert len(await hub.answers(reserve.request_id, 1, 1)) == 1  # never answered again
    assert slow_partner.store.balances(doc)[0].reserved == Decimal(0)
