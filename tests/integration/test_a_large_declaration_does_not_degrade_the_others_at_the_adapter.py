"""The DGAL adapter on the real broker, its partner (the simulator over HTTP) healthy at
100 ms a call: a request quoting 2,000 distinct documents and 20 one-document requests of
other declarations read while it is being answered. Every answer is the partner's (the
small ones VALID, none UNAVAILABLE), and the partner gets one call per document.

Review stop 40, W2: all 20 small declarations got UNAVAILABLE (CONTROL_DOCUMENTARY in
degraded mode), the large one 4,393 of its 5,994 documents, with the partner healthy."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from adapters.base.runner import AdapterRunner
from gun_contract.envelope import ContentType
from gun_contract.model.exchange import AuthorityRequest, AuthorityResponse, Operation
from gun_contract.model.verdicts import Verdict
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.settings import AdapterSettings
from tests.adapter_fixtures import many_documents_request, partner_request, running_adapter
from tests.conftest import KafkaEnv
from tests.partner_fixtures import CallsCounted, RunningPartner, counted_dgal_partner

pytestmark = pytest.mark.broker

LARGE = many_documents_request("26FRWB0000000002", 2000)
SMALL = [
    partner_request(Operation.RESERVE, reference=f"26FRWV00000001{n:02d}", quantity="1")
    for n in range(1, 21)
]


@pytest.fixture
async def calls() -> CallsCounted:
    return CallsCounted(LARGE.request_id, after=200)


@pytest.fixture
async def partner(
    samples: Path, tmp_path: Path, calls: CallsCounted
) -> AsyncIterator[RunningPartner]:
    async with counted_dgal_partner(samples, tmp_path, calls, 100) as running:
        yield running


@pytest.fixture
async def adapter(kafka_env: KafkaEnv, partner: RunningPartner) -> AsyncIterator[AdapterRunner]:
    settings = kafka_env.settings()
    # 2,000 calls at 0.1 s through 64 connections take about 4 s: with the wait for a
    # connection counted in a 1 s deadline, most would time out.
    settings.adapter = AdapterSettings(partner_url=partner.url, partner_timeout_s=1)
    async with running_adapter(
        "dgal", settings, kafka_env.topics, kafka_env.envelope("dgal")
    ) as runner:
        yield runner


async def send(kafka_env: KafkaEnv, producer: AIOKafkaProducer, request: AuthorityRequest) -> None:
    """Publish ``request`` as the hub does: keyed by its reference, sealed for DGAL."""
    topic = kafka_env.topics.requests("dgal")
    sealed = kafka_env.envelope(HUB_PARTY).seal(
        request.model_dump_json().encode(),
        recipient="dgal",
        topic=topic,
        content_type=ContentType.JSON,
    )
    await producer.send_and_wait(topic, sealed, key=request.reference.encode())


async def answers(kafka_env: KafkaEnv, count: int) -> dict[str, AuthorityResponse]:
    """The first ``count`` answers on DGAL's response topic, by reference."""
    topic = kafka_env.topics.responses("dgal")
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_env.bootstrap,
        auto_offset_reset="earliest",
        fetch_max_bytes=50_000_000,
        max_partition_fetch_bytes=50_000_000,
    )
    await consumer.start()
    read: dict[str, AuthorityResponse] = {}
    try:
        async with asyncio.timeout(120):
            while len(read) < count:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    for record in batch:
                        opened = kafka_env.envelope(HUB_PARTY).open(
                            record.value or b"", topic=topic
                        )
                        response = AuthorityResponse.model_validate_json(opened.payload)
                        read[response.reference] = response
    finally:
        await consumer.stop()
    return read


async def test_small_declarations_read_during_a_large_one_are_answered_valid(
    kafka_env: KafkaEnv, adapter: AdapterRunner, calls: CallsCounted
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_env.bootstrap, max_request_size=10_000_000)
    await producer.start()
    try:
        await send(kafka_env, producer, LARGE)
        # Read while the large one is being answered: its calls are under way.
        await asyncio.wait_for(calls.under_way.wait(), 60)
        for request in SMALL:
            await send(kafka_env, producer, request)
    finally:
        await producer.stop()
    read = await answers(kafka_env, 1 + len(SMALL))
    small = {r.reference: [a.verdict for a in read[r.reference].answers] for r in SMALL}
    assert small == {r.reference: [Verdict.VALID] for r in SMALL}
    large = Counter(a.verdict for a in read[LARGE.reference].answers)
    assert large == Counter({Verdict.NOT_FOUND: 2000}), large
    # One call per document: nothing timed out, nothing was asked twice.
    assert Counter(calls.of(LARGE.request_id).values()) == Counter({1: 2000})
