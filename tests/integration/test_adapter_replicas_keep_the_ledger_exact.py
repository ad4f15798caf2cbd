"""Two replicas of one adapter keep the partner's ledger exact through a partner outage,
a rebalance and a replica that stops (issue 12).

The real DGAL adapter twice in this process (one consumer group, each replica its own
pending file) on the real broker, a real partner simulator over HTTP; the conformance
harness plays the hub. Deletions met by the outage are queued by the replica that read
them; the partitions then move, twice. In the end each deletion reached the partner once,
before its declaration's next version, which reserves and is written off exactly.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AsyncExitStack, asynccontextmanager
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from adapters.base import PartnerPort, load_adapter
from adapters.base.runner import AdapterRunner
from adapters.conformance.harness import Harness, Quote
from gun_contract.health import CircuitStatus
from gun_contract.kafka.acls import adapter_group
from gun_contract.model.exchange import (
    AuthorityRequest,
    AuthorityResponse,
    DocumentAnswer,
    Operation,
)
from gun_contract.model.verdicts import Verdict
from gun_contract.settings import AdapterSettings
from tests.adapter_fixtures import running_adapter
from tests.conftest import PARTITIONS, KafkaEnv
from tests.partner_fixtures import RunningPartner

pytestmark = pytest.mark.broker

DECLARATIONS = 4  # spread over the request partitions by their keys


class Unreachable:
    """The real partner client, but calls about ``blocked`` declarations fail as if the
    partner were down for them alone (one declaration's follow-up stays pending while
    the partner answers the rest)."""

    def __init__(self, inner: PartnerPort, blocked: set[str]) -> None:
        self._inner = inner
        self._blocked = blocked

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        if request.reference in self._blocked:
            return tuple(
                DocumentAnswer(
                    goods_item=item.number,
                    code=document.code,
                    reference=document.reference,
                    verdict=Verdict.UNAVAILABLE,
                    detail="unreachable for this test",
                )
                for item in request.items
                for document in item.documents
            )
        return await self._inner.answer(request)

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


@asynccontextmanager
async def replica(
    kafka_env: KafkaEnv,
    partner: RunningPartner,
    replica_id: str,
    blocked: set[str] | None = None,
    commit_interval_s: float = AdapterSettings().commit_interval_s,
) -> AsyncIterator[AdapterRunner]:
    settings = kafka_env.settings()
    settings.adapter = AdapterSettings(
        partner_url=partner.url,
        partner_timeout_s=1,
        retry_attempts=2,
        circuit_failure_threshold=2,
        circuit_reset_s=1,
        replay_interval_s=0.5,
        replica_id=replica_id,
        commit_interval_s=commit_interval_s,
    )
    client = load_adapter("dgal").partner(settings.adapter)
    async with running_adapter(
        "dgal",
        settings,
        kafka_env.topics,
        kafka_env.envelope("dgal"),
        Unreachable(client, blocked if blocked is not None else set()),
    ) as runner:
        yield runner


async def until(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    """Until ``condition`` holds (state of the replicas in this process, looked at)."""
    async with asyncio.timeout(timeout_s):
        while True:
            if condition():
                return
            await asyncio.sleep(0.1)


async def until_owned(replicas: list[AdapterRunner]) -> None:
    """Until the group settled: every request partition owned by exactly one replica."""
    await until(
        lambda: (
            sorted(p for r in replicas for p in r.ownership.partitions) == list(range(PARTITIONS))
        )
    )


async def until_answered(
    hub: Harness, request_id: str, verdict: Verdict, timeout_s: float = 60
) -> AuthorityResponse:
    """The first answer to ``request_id`` with ``verdict`` (after any UNAVAILABLE)."""
    count = 1
    async with asyncio.timeout(timeout_s):
        while True:
            answers = await hub.answers(request_id, count, timeout_s)
            for answer in answers:
                if answer.answers[0].verdict is verdict:
                    return answer
            count = len(answers) + 1


async def test_deletions_queued_by_a_replica_reach_the_partner_once_and_in_version_order(
    kafka_env: KafkaEnv, partner: RunningPartner, hub: Harness
) -> None:
    async with AsyncExitStack() as first_stack:
        first = await first_stack.enter_async_context(replica(kafka_env, partner, "a"))
        await until_owned([first])
        docs = [await hub.seed(f"replicas-{n}") for n in range(DECLARATIONS)]
        reservations = [hub.request(Operation.RESERVE, [Quote(d, "60")]) for d in docs]
        for reservation in reservations:
            assert (await hub.ask(reservation)).answers[0].verdict is Verdict.VALID

        # The partner goes down: each declaration's deletion is queued by the first replica.
        await hub.faults(outage=True)
        deletions = [
            hub.request(
                Operation.DELETE,
                [Quote(d, None, line=None, unit=None)],
                reference=r.reference,
            )
            for d, r in zip(docs, reservations, strict=True)
        ]
        for deletion in deletions:
            assert (await hub.ask(deletion)).answers[0].verdict is Verdict.UNAVAILABLE
        assert len(first.pending) == DECLARATIONS

        # A second replica joins (the partitions are shared out again), then the first
        # stops, its queue in its own file: every partition ends with the second replica.
        async with replica(kafka_env, partner, "b") as second:
            await until_owned([first, second])
            await first_stack.aclose()
            await until_owned([second])

            # Nothing reached the partner meanwhile; now it is back.
            for doc in docs:
                assert await hub.ledger(doc) == (Decimal(60), Decimal(0))
            await hub.faults()
            for deletion in deletions:
                applied = await until_answered(hub, deletion.request_id, Verdict.VALID)
                # 01: the deletion found version 1's reservation (02 would be "no record",
                # STALE_VERSION a newer version applied first).
                assert applied.answers[0].partner_code == "01"
            for doc in docs:
                assert await hub.ledger(doc) == (Decimal(0), Decimal(0))

            # Each declaration's version 2 reserves and is written off exactly.
            for doc, reservation in zip(docs, reservations, strict=True):
                reserve_v2 = hub.request(
                    Operation.RESERVE,
                    [Quote(doc, "40")],
                    reference=reservation.reference,
                    version=2,
                )
                assert (await hub.ask(reserve_v2)).answers[0].verdict is Verdict.VALID
                write_off_v2 = hub.request(
                    Operation.WRITE_OFF,
                    [Quote(doc, None, line=None, unit=None)],
                    reference=reservation.reference,
                    version=2,
                )
                [answer] = (await hub.ask(write_off_v2)).answers
                assert (answer.verdict, answer.partner_code) == (Verdict.VALID, "01")
            assert len(second.pending) == 0

    for doc, reservation in zip(docs, reservations, strict=True):
        assert await hub.ledger(doc) == (Decimal(0), Decimal(40))
        positions = partner.store.positions(doc)
        assert [(p.declaration, p.version, p.state) for p in positions] == [
            (reservation.reference, 2, "WRITTEN_OFF")
        ]


def on_the_same_partition(hub: Harness, reference: str) -> str:
    """A new declaration reference whose requests share ``reference``'s partition (the
    harness publishes by key, with the Java client's partitioner)."""
    partitioner = DefaultPartitioner()
    partitions = list(range(PARTITIONS))
    wanted = partitioner(reference.encode(), partitions, partitions)
    while True:
        other = hub.declaration_reference()
        if partitioner(other.encode(), partitions, partitions) == wanted:
            return other


async def test_a_reservation_answered_in_an_outage_is_not_applied_after_a_rebalance(
    kafka_env: KafkaEnv, partner: RunningPartner, hub: Harness
) -> None:
    """Declaration X's deletion stays pending (its partner calls fail), which holds the
    partition's commit. Meanwhile declaration Y, on the same partition, met the outage with
    its reservation (answered UNAVAILABLE, nothing reserved) and was cancelled once the
    partner was back (its deletion found nothing to delete). The partition then moves: its
    next owner reads Y's requests again, but must not reserve now what Y's deletion,
    answered already and remembered by the partner under its idempotency key, would
    never free."""
    blocked: set[str] = set()
    doc_x, doc_y = await hub.seed("pending-x"), await hub.seed("late-y")
    async with AsyncExitStack() as first_stack:
        first = await first_stack.enter_async_context(replica(kafka_env, partner, "a", blocked))
        await until_owned([first])
        reserve_x = hub.request(Operation.RESERVE, [Quote(doc_x, "60")])
        assert (await hub.ask(reserve_x)).answers[0].verdict is Verdict.VALID
        blocked.add(reserve_x.reference)
        delete_x = hub.request(
            Operation.DELETE,
            [Quote(doc_x, None, line=None, unit=None)],
            reference=reserve_x.reference,
        )
        assert (await hub.ask(delete_x)).answers[0].verdict is Verdict.UNAVAILABLE

        reference_y = on_the_same_partition(hub, reserve_x.reference)
        await hub.faults(outage=True)
        reserve_y = hub.request(Operation.RESERVE, [Quote(doc_y, "30")], reference=reference_y)
        assert (await hub.ask(reserve_y)).answers[0].verdict is Verdict.UNAVAILABLE
        await hub.faults()
        await hub.until_partner_answers(doc_y)  # its circuit closed again
        delete_y = hub.request(
            Operation.DELETE, [Quote(doc_y, None, line=None, unit=None)], reference=reference_y
        )
        [answer] = (await hub.ask(delete_y)).answers
        assert (answer.verdict, answer.partner_code) == (Verdict.VALID, "02")  # no record

        async with replica(kafka_env, partner, "b", blocked) as second:
            await until_owned([first, second])
            await first_stack.aclose()
            await until_owned([second])
            # X's deletion is read again from the commit and pending with the second
            # replica (it was the first replica's alone); Y's requests are read again too.
            await until(lambda: bool(second.pending.queued(reserve_x.reference)))
            blocked.clear()
            applied = await until_answered(hub, delete_x.request_id, Verdict.VALID)
            assert applied.answers[0].partner_code == "01"
            # Answer first, then forget (adapters/base/replay.py): the answer can be read a
            # moment before the queue lets go of it (a CI run of stop 32 saw it there).
            await until(lambda: len(second.pending) == 0)

    assert await hub.ledger(doc_x) == (Decimal(0), Decimal(0))
    # Y never held anything: its reservation was not applied behind its deletion.
    assert await hub.ledger(doc_y) == (Decimal(0), Decimal(0))
    assert partner.store.positions(doc_y) == []


# -- commits: throttled in the loop, made at once when partitions move or a replica stops


async def group_commits(kafka_env: KafkaEnv) -> dict[int, tuple[int, str]]:
    """The adapter group's commit (offset, metadata) per request partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_env.bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(adapter_group(kafka_env.topics, "dgal"))
    finally:
        await admin.close()
    topic = kafka_env.topics.requests("dgal")
    return {tp.partition: (o.offset, o.metadata) for tp, o in offsets.items() if tp.topic == topic}


async def request_ends(kafka_env: KafkaEnv) -> dict[int, int]:
    """The end offset of each request partition that holds a record."""
    topic = kafka_env.topics.requests("dgal")
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_env.bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {tp.partition: end for tp, end in ends.items() if end > 0}


async def answer_reservations(hub: Harness) -> None:
    for n in range(DECLARATIONS * 3):
        doc = await hub.seed(f"commits-{n}")
        reservation = hub.request(Operation.RESERVE, [Quote(doc, "1")])
        assert (await hub.ask(reservation)).answers[0].verdict is Verdict.VALID


def assert_committed_up_to_the_end(
    commits: dict[int, tuple[int, str]], ends: dict[int, int], *, handed_over: bool
) -> None:
    """Every request partition committed past its last record, its metadata saying so;
    ``handed_over``: by the commit of a revocation or a stop, which says it handed the
    partition over (with the group generation it owned it in)."""
    assert {p: commits.get(p, (None, ""))[0] for p in ends} == ends
    for partition, end in ends.items():
        said = commits[partition][1]
        if handed_over:
            assert re.fullmatch(rf"answered:{end};handed-over:\d+", said), said
        else:
            assert said == f"answered:{end}"


async def test_what_a_replica_answered_is_committed_when_its_partitions_move(
    kafka_env: KafkaEnv, partner: RunningPartner, hub: Harness
) -> None:
    """A replica commits at most every ``commit_interval_s`` (an hour here), yet when a
    second replica joins, what the first answered is committed before the partitions
    move: the new owners ask the partner nothing again."""
    async with replica(kafka_env, partner, "a", commit_interval_s=3600) as first:
        await until_owned([first])
        await answer_reservations(hub)
        ends = await request_ends(kafka_env)
        before = await group_commits(kafka_env)
        # The interval held the commits back: the test would prove nothing otherwise.
        assert any(before.get(p, (0, ""))[0] < end for p, end in ends.items())

        async with replica(kafka_env, partner, "b", commit_interval_s=3600) as second:
            await until_owned([first, second])
            assert_committed_up_to_the_end(await group_commits(kafka_env), ends, handed_over=True)


async def test_a_replica_that_stops_commits_what_it_answered(
    kafka_env: KafkaEnv, partner: RunningPartner, hub: Harness
) -> None:
    async with replica(kafka_env, partner, "a", commit_interval_s=3600) as only:
        await until_owned([only])
        await answer_reservations(hub)
        ends = await request_ends(kafka_env)
    assert_committed_up_to_the_end(await group_commits(kafka_env), ends, handed_over=True)


async def test_a_batch_with_an_answer_unavailable_is_committed_without_waiting(
    kafka_env: KafkaEnv, partner: RunningPartner, hub: Harness
) -> None:
    """The interval never holds back the commit of a reservation answered UNAVAILABLE: read
    again after a crash, once the partner is back, it would be applied then (ADR 0014)."""
    blocked: set[str] = set()
    async with replica(kafka_env, partner, "a", blocked, commit_interval_s=3600) as only:
        await until_owned([only])
        await answer_reservations(hub)
        doc = await hub.seed("commits-outage")
        reservation = hub.request(Operation.RESERVE, [Quote(doc, "1")])
        blocked.add(reservation.reference)
        assert (await hub.ask(reservation)).answers[0].verdict is Verdict.UNAVAILABLE
        ends = await request_ends(kafka_env)
        wanted = {p: (end, f"answered:{end}") for p, end in ends.items()}
        # The commit follows the poll that answered: the broker's group state is looked
        # at until it shows it (no event to await in another process's coordinator).
        async with asyncio.timeout(15):
            for _ in itertools.count():
                commits = await group_commits(kafka_env)
                if commits == wanted:
                    break
                await asyncio.sleep(0.2)
        assert_committed_up_to_the_end(commits, ends, handed_over=False)
