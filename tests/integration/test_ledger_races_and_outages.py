"""The exact ledger under racing declarations, and a partner outage with its replay.

A real adapter (in this process) on the real broker, asking a real partner simulator
over HTTP; the conformance harness plays the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp import web
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from adapters.base import PartnerPort, load_adapter
from adapters.base.runner import AdapterRunner, _Rebalance
from adapters.conformance.harness import Harness, Quote
from gun_contract.health import CircuitStatus
from gun_contract.model.exchange import (
    AuthorityRequest,
    AuthorityResponse,
    DocumentAnswer,
    Operation,
)
from gun_contract.model.verdicts import Verdict
from gun_contract.settings import AdapterSettings, Settings
from tests.adapter_fixtures import running_adapter
from tests.conftest import PARTITIONS, KafkaEnv
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
    caller gave up on it, included: nothing else signals it), and when one reached it."""

    reservation_answered: asyncio.Event
    reservation_received: asyncio.Event


@pytest.fixture
async def slow_partner(samples: Path, tmp_path: Path) -> AsyncIterator[SlowPartner]:
    answered = asyncio.Event()
    received = asyncio.Event()

    @web.middleware
    async def signal(request: web.Request, handler: Handler) -> web.StreamResponse:
        reservation = request.method == "PUT" and "/reservations/" in request.path
        if reservation:
            received.set()
        response = await handler(request)
        if reservation and response.status == 200:
            answered.set()
        return response

    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "l.db", [signal]
    ) as running:
        yield SlowPartner(running.url, running.store, answered, received)


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


class HeldUntilRevoked:
    """The DGAL partner client; the outcome of each reservation call (the partner holding
    it, the client gives up: UNAVAILABLE, the partner may still apply it) reaches the
    replica only once its partitions are being revoked: the batch is still in flight
    when the group takes them back, as with a slow partner during a rebalance."""

    def __init__(self, inner: PartnerPort, held: int) -> None:
        self._inner = inner
        self._held = held
        self.calls: set[str] = set()
        self.all_called = asyncio.Event()
        self.revoking = asyncio.Event()

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        if request.operation is not Operation.RESERVE or self.revoking.is_set():
            return await self._inner.answer(request)
        self.calls.add(request.reference)
        if len(self.calls) == self._held:
            self.all_called.set()
        answers = await self._inner.answer(request)
        await self.revoking.wait()
        return answers

    def may_still_apply(self, request: AuthorityRequest) -> bool:
        return self._inner.may_still_apply(request)

    def sent_before(self, request: AuthorityRequest, accepted: Collection[int] = ()) -> None:
        self._inner.sent_before(request, accepted)

    def accepted_calls(self, request: AuthorityRequest) -> frozenset[int]:
        return self._inner.accepted_calls(request)

    async def close(self) -> None:
        await self._inner.close()

    @property
    def circuit_state(self) -> CircuitStatus:
        return self._inner.circuit_state


def one_reference_per_partition(hub: Harness) -> list[str]:
    """A declaration reference on each request partition (the harness publishes by key,
    with the Java client's partitioner)."""
    partitioner = DefaultPartitioner()
    partitions = list(range(PARTITIONS))
    found: dict[int, str] = {}
    while len(found) < PARTITIONS:
        reference = hub.declaration_reference()
        found.setdefault(partitioner(reference.encode(), partitions, partitions), reference)
    return [found[p] for p in partitions]


async def test_a_rebalance_keeps_the_deletion_behind_a_reservation_in_flight_at_the_revocation(
    kafka_env: KafkaEnv, slow_partner: SlowPartner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review stop 39-G, G2. Replica A is asking the partner a reservation on each request
    partition when a second replica, B, joins: the partner holds the calls (A's retry
    meets 409: UNAVAILABLE, the partner may still apply them), and A's batch is still in
    flight as the group revokes its partitions. A waits for it, then commits naming the
    four reservations, then forgets them. Whichever partitions go to B, B asks each of
    its reservations again with its key (409: still in progress, not a refusal) and
    keeps the refused declaration's DELETE behind it until the partner has applied it:
    the DELETE finds it (01), nothing stays reserved. Before, A committed before its batch
    ended: no commit named them, B asked them as first attempts, took the 409 for a
    refusal, and the DELETEs went first (02), the partner then reserving 10 for each
    refused declaration for ever."""
    held_s = 30.0  # past the live calls, a stop, a start and a rebalance on a loaded machine
    settings_a = adapter_settings(kafka_env, slow_partner, replay_interval_s=0.5)
    settings_a.adapter.replica_id = "a"
    settings_b = adapter_settings(kafka_env, slow_partner, replay_interval_s=0.5)
    settings_b.adapter.replica_id = "b"
    envelope = kafka_env.envelope("dgal")
    held = HeldUntilRevoked(load_adapter("dgal").partner(settings_a.adapter), PARTITIONS)
    revoking = _Rebalance.on_partitions_revoked

    async def signalled(listener: _Rebalance, revoked: set[TopicPartition]) -> None:
        if revoked and listener._runner._partner is held:
            held.revoking.set()
        await revoking(listener, revoked)

    monkeypatch.setattr(_Rebalance, "on_partitions_revoked", signalled)
    async with playing_the_hub(kafka_env, slow_partner) as hub:
        references = one_reference_per_partition(hub)
        docs = [await hub.seed(f"revoked-in-flight-{p}") for p in range(PARTITIONS)]
        reservations = [
            hub.request(Operation.RESERVE, [Quote(doc, "10")], reference=reference)
            for doc, reference in zip(docs, references, strict=True)
        ]
        deletions = [
            hub.request(Operation.DELETE, [Quote(doc, None, line=None, unit=None)], reference=ref)
            for doc, ref in zip(docs, references, strict=True)
        ]
        # Every partition committed first (the review's case: "answered:<n>" before).
        async with running_adapter("dgal", settings_a, kafka_env.topics, envelope):
            for doc, reference in zip(docs, references, strict=True):
                check = hub.request(Operation.CHECK, [Quote(doc, "1")], reference=reference)
                assert (await hub.ask(check)).answers[0].verdict is Verdict.VALID
        # The four reservations wait in the log: A's first batch holds all of them.
        await hub.faults(in_progress_next=PARTITIONS, hang_s=held_s)
        for reservation in reservations:
            await hub.publish(reservation.reference, hub.seal(reservation))
        async with running_adapter("dgal", settings_a, kafka_env.topics, envelope, held) as first:
            await asyncio.wait_for(held.all_called.wait(), 30)
            async with running_adapter("dgal", settings_b, kafka_env.topics, envelope) as second:
                for reservation in reservations:
                    [answer] = (await hub.answers(reservation.request_id, 1, 60))[0].answers
                    assert answer.verdict is Verdict.UNAVAILABLE
                await asyncio.wait_for(held.revoking.wait(), 30)
                for deletion in deletions:
                    await hub.publish(deletion.reference, hub.seal(deletion))
                for deletion in deletions:
                    [waiting] = await hub.answers(deletion.request_id, 1, 60)
                    # Queued behind the reservation, on whichever replica owns it now.
                    assert verdicts(waiting) == [(Verdict.UNAVAILABLE, None)], deletion.reference
                assert not slow_partner.reservation_answered.is_set(), "held too briefly to tell"
                assert second.ownership.partitions, "B was given no partition"

                await asyncio.wait_for(slow_partner.reservation_answered.wait(), held_s + 30)
                for deletion in deletions:
                    *_, done = await hub.answers(deletion.request_id, 2, 60)
                    assert verdicts(done) == [(Verdict.VALID, "01")], deletion.reference
                for replica in (first, second):
                    await asyncio.wait_for(replica.replay_rounds.one_begun_after_now(), 30)
                    assert len(replica.pending) == 0
        for reservation in reservations:
            # Answered once, by A; never refused by B.
            assert len(await hub.answers(reservation.request_id, 1, 1)) == 1
    for doc in docs:
        assert slow_partner.store.balances(doc)[0].reserved == Decimal(0)


async def test_a_crash_keeps_the_deletion_behind_a_reservation_its_replica_had_sent(
    kafka_env: KafkaEnv, slow_partner: SlowPartner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica sends v1's reservation, the partner holds it, and the replica dies with
    the call under way (cancelled hard, nothing committed: as a SIGKILL). Its last
    commit names nothing; it is even the clean hand-over of the replica before it, whose
    generation has passed. The replica started again reads the reservation from that
    commit, below the log's end at its assignment: it may have been sent, so it is asked
    as a repeat, the partner's 409 is "still in progress", and it is queued with its key;
    the refused declaration's DELETE, appended after, waits behind it and finds it once
    the partner has applied it (01), nothing left reserved. Before, the reservation was
    asked as a first attempt, the 409 read as a refusal, and the DELETE went first (02,
    RESERVATION_DELETED), the partner then reserving 10 for a refused declaration for
    ever (review stop 39, P1, through a crash; stop 40)."""
    held_s = 30.0  # past the crash, a start and the live calls, on a loaded machine
    settings = adapter_settings(kafka_env, slow_partner, replay_interval_s=0.5)
    envelope = kafka_env.envelope("dgal")
    spec = load_adapter("dgal")
    async with playing_the_hub(kafka_env, slow_partner) as hub:
        doc = await hub.seed("late-reservation-crash")
        reserve = hub.request(Operation.RESERVE, [Quote(doc, "10")])
        delete = hub.request(
            Operation.DELETE, [Quote(doc, None, line=None, unit=None)], reference=reserve.reference
        )
        # The partition committed first, and handed over by a clean stop.
        async with running_adapter("dgal", settings, kafka_env.topics, envelope):
            check = hub.request(Operation.CHECK, [Quote(doc, "1")], reference=reserve.reference)
            assert (await hub.ask(check)).answers[0].verdict is Verdict.VALID

        crashing = AdapterRunner(
            spec, settings, kafka_env.topics, envelope, spec.partner(settings.adapter)
        )
        ready = asyncio.Event()
        running = asyncio.create_task(crashing.run(ready))
        await asyncio.wait_for(ready.wait(), 30)
        await hub.faults(in_progress_next=1, hang_s=held_s)
        await hub.publish(reserve.reference, hub.seal(reserve))
        await asyncio.wait_for(slow_partner.reservation_received.wait(), 30)

        async def killed(*_: object, **__: object) -> None:
            return None  # a SIGKILL commits nothing more

        monkeypatch.setattr(crashing, "_commit", killed)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        assert not await hub.answers(reserve.request_id, 0, 1)  # it answered nothing

        async with running_adapter("dgal", settings, kafka_env.topics, envelope) as restarted:
            [answer] = (await hub.answers(reserve.request_id, 1, 60))[0].answers
            assert answer.verdict is Verdict.UNAVAILABLE
            assert "still processing" in (answer.detail or ""), answer.detail
            [pending] = await ask_all(hub, [delete])
            assert verdicts(pending) == [(Verdict.UNAVAILABLE, None)]  # queued behind
            assert not slow_partner.reservation_answered.is_set(), "held too briefly to tell"
            assert slow_partner.store.balances(doc)[0].reserved == Decimal(0)

            await asyncio.wait_for(slow_partner.reservation_answered.wait(), held_s + 30)
            *_, done = await hub.answers(delete.request_id, 2, 30)
            assert verdicts(done) == [(Verdict.VALID, "01")]
            await asyncio.wait_for(restarted.replay_rounds.one_begun_after_now(), 30)
            assert len(restarted.pending) == 0
        assert len(await hub.answers(reserve.request_id, 1, 1)) == 1  # answered once
    assert slow_partner.store.balances(doc)[0].reserved == Decimal(0)
