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
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from decimal import Decimal

import pytest

from adapters.base.runner import AdapterRunner
from adapters.conformance.harness import Harness, Quote
from gun_contract.model.exchange import AuthorityResponse, Operation
from gun_contract.model.verdicts import Verdict
from gun_contract.settings import AdapterSettings
from tests.adapter_fixtures import running_adapter
from tests.conftest import PARTITIONS, KafkaEnv
from tests.partner_fixtures import RunningPartner

pytestmark = pytest.mark.broker

DECLARATIONS = 4  # spread over the request partitions by their keys


@asynccontextmanager
async def replica(
    kafka_env: KafkaEnv, partner: RunningPartner, replica_id: str
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
    )
    async with running_adapter(
        "dgal", settings, kafka_env.topics, kafka_env.envelope("dgal")
    ) as runner:
        yield runner


@pytest.fixture
async def hub(kafka_env: KafkaEnv, partner: RunningPartner) -> AsyncIterator[Harness]:
    harness = Harness(
        authority="dgal",
        document_type="N853",
        connect=kafka_env.bootstrap,
        topics=kafka_env.topics,
        hub_envelope=kafka_env.envelope("hub"),
        partner_url=partner.url,
        answer_timeout_s=60,
        partner_timeout_s=1,
    )
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


async def until_owned(replicas: list[AdapterRunner], timeout_s: float = 60) -> None:
    """Until the group settled: every request partition owned by exactly one replica."""
    async with asyncio.timeout(timeout_s):
        while True:
            owned = [p for r in replicas for p in r.ownership.partitions]
            if sorted(owned) == list(range(PARTITIONS)):
                return
            await asyncio.sleep(0.1)


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
