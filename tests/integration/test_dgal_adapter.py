"""The DGAL adapter on the real broker, asking a real (simulated) TRACES over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from adapters.base.runner import AdapterRunner
from gun_hub.dead_letter import HEADER_ERROR_KIND, header_value
from gun_hub.envelope import ContentType
from gun_hub.model.exchange import AuthorityRequest, AuthorityResponse, Operation
from gun_hub.model.verdicts import Verdict
from gun_hub.routing import build_requests, route_documents
from gun_hub.security.entitlements import HUB_PARTY
from gun_hub.settings import AdapterSettings
from tests.adapter_fixtures import running_adapter
from tests.builders import declaration, document, goods_item
from tests.conftest import KafkaEnv
from tests.partner_fixtures import RunningPartner

pytestmark = pytest.mark.broker


@pytest.fixture
async def adapter(kafka_env: KafkaEnv, partner: RunningPartner) -> AsyncIterator[AdapterRunner]:
    settings = kafka_env.settings()
    settings.adapter = AdapterSettings(partner_url=partner.url, partner_timeout_s=2)
    async with running_adapter(
        "dgal", settings, kafka_env.topics, kafka_env.envelope("dgal")
    ) as runner:
        yield runner


def request_for(kafka_env: KafkaEnv, quantity: str, reference: str) -> AuthorityRequest:
    decl = declaration(
        reference=reference,
        items=(goods_item(1, (document("N853", "CHEDP.FR.2026.0001234", 1, quantity),)),),
    )
    routed = route_documents(decl, kafka_env.routing)
    [request] = build_requests(
        decl, kafka_env.routing, routed.authorities, Operation.RESERVE, datetime.now(UTC)
    )
    return request


async def send(kafka_env: KafkaEnv, *records: tuple[bytes, bytes]) -> None:
    """Publish ``(key, value)`` records on DGAL's request topic, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka_env.bootstrap)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(kafka_env.topics.requests("dgal"), value, key=key)
    finally:
        await producer.stop()


def seal(kafka_env: KafkaEnv, request: AuthorityRequest) -> tuple[bytes, bytes]:
    """The record the hub would publish for ``request``: keyed by reference, sealed."""
    return request.reference.encode(), kafka_env.envelope(HUB_PARTY).seal(
        request.model_dump_json().encode(),
        recipient="dgal",
        topic=kafka_env.topics.requests("dgal"),
        content_type=ContentType.JSON,
    )


async def read(kafka_env: KafkaEnv, topic: str, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_env.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(30):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records += batch
    finally:
        await consumer.stop()
    return records


def response_of(kafka_env: KafkaEnv, record: ConsumerRecord[bytes, bytes]) -> AuthorityResponse:
    opened = kafka_env.envelope(HUB_PARTY).open(record.value or b"", topic=record.topic)
    assert opened.sender == "dgal"
    return AuthorityResponse.model_validate_json(opened.payload)


async def test_a_covered_reservation_is_answered_valid_and_reserved(
    kafka_env: KafkaEnv, adapter: AdapterRunner, partner: RunningPartner
) -> None:
    await send(kafka_env, seal(kafka_env, request_for(kafka_env, "400", "26FR000690I0000101")))
    [record] = await read(kafka_env, kafka_env.topics.responses("dgal"), 1)
    response = response_of(kafka_env, record)
    assert [a.verdict for a in response.answers] == [Verdict.VALID]
    assert record.key == b"26FR000690I0000101"
    assert partner.store.balances("CHEDP.FR.2026.0001234")[0].reserved == Decimal(400)


async def test_a_request_sent_again_gives_the_same_answer_and_reserves_once(
    kafka_env: KafkaEnv, adapter: AdapterRunner, partner: RunningPartner
) -> None:
    # What a hub restarted mid-batch does: the same request in a new envelope.
    request = request_for(kafka_env, "700", "26FR000690I0000102")
    await send(kafka_env, seal(kafka_env, request), seal(kafka_env, request))
    records = await read(kafka_env, kafka_env.topics.responses("dgal"), 2)
    responses = [response_of(kafka_env, r) for r in records]
    assert [r.answers[0].verdict for r in responses] == [Verdict.VALID] * 2
    assert {r.request_id for r in responses} == {request.request_id}
    assert partner.store.balances("CHEDP.FR.2026.0001234")[0].reserved == Decimal(700)


async def test_a_replayed_record_is_dead_lettered_and_not_acted_on(
    kafka_env: KafkaEnv, adapter: AdapterRunner, partner: RunningPartner
) -> None:
    first = seal(kafka_env, request_for(kafka_env, "300", "26FR000690I0000106"))
    await send(kafka_env, first)
    await read(kafka_env, kafka_env.topics.responses("dgal"), 1)
    partner.store.delete("CHEDP.FR.2026.0001234", "26FR000690I0000106")  # a clean ledger
    await send(kafka_env, first)  # the very same bytes, published again
    [dead] = await read(kafka_env, kafka_env.topics.dlq, 1)
    assert header_value(list(dead.headers), HEADER_ERROR_KIND) == "ENVELOPE_REPLAY"
    assert partner.store.balances("CHEDP.FR.2026.0001234")[0].reserved == 0
    assert len(await read(kafka_env, kafka_env.topics.responses("dgal"), 1)) == 1


async def test_an_unknown_refusal_ends_as_the_partners_code(
    kafka_env: KafkaEnv, adapter: AdapterRunner
) -> None:
    await send(kafka_env, seal(kafka_env, request_for(kafka_env, "99999", "26FR000690I0000103")))
    [record] = await read(kafka_env, kafka_env.topics.responses("dgal"), 1)
    [answer] = response_of(kafka_env, record).answers
    assert answer.verdict is Verdict.QUANTITY_INSUFFICIENT
    assert answer.partner_code == "05"


async def test_garbage_goes_to_the_dead_letter_topic_and_the_adapter_goes_on(
    kafka_env: KafkaEnv, adapter: AdapterRunner
) -> None:
    good = seal(kafka_env, request_for(kafka_env, "1", "26FR000690I0000104"))
    await send(kafka_env, (b"26FR000690I0000104", b"\x00garbage"), good)
    [dead] = await read(kafka_env, kafka_env.topics.dlq, 1)
    assert dead.value == b"\x00garbage"
    assert header_value(list(dead.headers), HEADER_ERROR_KIND) == "ENVELOPE_MALFORMED"
    [answered] = await read(kafka_env, kafka_env.topics.responses("dgal"), 1)
    assert response_of(kafka_env, answered).reference == "26FR000690I0000104"


async def test_a_partner_that_is_down_is_answered_unavailable_promptly(
    kafka_env: KafkaEnv, partner: RunningPartner, adapter: AdapterRunner
) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        await http.put(f"{partner.url}/admin/faults", json={"outage": True})
    await send(kafka_env, seal(kafka_env, request_for(kafka_env, "1", "26FR000690I0000105")))
    [record] = await read(kafka_env, kafka_env.topics.responses("dgal"), 1)
    [answer] = response_of(kafka_env, record).answers
    assert answer.verdict is Verdict.UNAVAILABLE
    assert answer.detail is not None
    assert "503" in answer.detail
