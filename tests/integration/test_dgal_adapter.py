"""The DGAL adapter on the real broker, asking a real (simulated) TRACES over HTTP."""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from adapters.base.certex import CertexHttpPartner
from adapters.base.runner import AdapterRunner
from adapters.base.spec import PartnerPort
from gun_contract.dead_letter import HEADER_ERROR_KIND, HEADER_ERROR_REASON, header_value
from gun_contract.envelope import ContentType
from gun_contract.health import CircuitStatus
from gun_contract.model.exchange import (
    AuthorityRequest,
    AuthorityResponse,
    DocumentAnswer,
    Operation,
)
from gun_contract.model.verdicts import Verdict
from gun_contract.security import jose_envelope
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.settings import AdapterSettings
from gun_hub.domain.requests import build_requests
from gun_hub.domain.routing import route_documents
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


# -- defects 1 and 3: a backlog read late opens; no record stops the adapter -----------------


def header_bomb() -> bytes:
    """A compact JWE whose protected header decodes to 3000 nested brackets."""
    header = base64.urlsafe_b64encode(b"[" * 3000).rstrip(b"=")
    return header + b".AAAA.AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA"


def sealed_payload(kafka_env: KafkaEnv, payload: bytes) -> bytes:
    """A genuine envelope from the hub around a payload that is not a request."""
    return kafka_env.envelope(HUB_PARTY).seal(
        payload,
        recipient="dgal",
        topic=kafka_env.topics.requests("dgal"),
        content_type=ContentType.JSON,
    )


async def send_raw(kafka_env: KafkaEnv, records: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_env.bootstrap, max_request_size=8 * 1024 * 1024
    )
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(kafka_env.topics.requests("dgal"), value, key=key)
    finally:
        await producer.stop()


async def test_every_poisoned_record_is_dead_lettered_with_a_reason_and_the_adapter_goes_on(
    kafka_env: KafkaEnv, adapter: AdapterRunner, partner: RunningPartner
) -> None:
    dice = random.Random(3)
    key = b"26FR000690I0000110"
    poison: list[tuple[bytes | None, bytes | None]] = [
        (key, dice.randbytes(2048)),
        (key, b"[" * 3000),
        (key, header_bomb()),
        (key, b""),
        (key, None),  # a tombstone
        (None, b"\xff\xfe not even text"),
        (None, b""),
        (key, dice.randbytes(6 * 1024 * 1024)),  # far above any request, below the topic limit
        (key, sealed_payload(kafka_env, b"[" * 3000)),  # signed, but a JSON bomb inside
        (key, sealed_payload(kafka_env, b"\xc3\x28 invalid utf-8")),
        (key, sealed_payload(kafka_env, b'{"request_id": 1}')),
    ]
    await send_raw(kafka_env, poison)
    await send(kafka_env, seal(kafka_env, request_for(kafka_env, "5", "26FR000690I0000111")))
    [answered] = await read(kafka_env, kafka_env.topics.responses("dgal"), 1)
    assert response_of(kafka_env, answered).reference == "26FR000690I0000111"
    dead = await read(kafka_env, kafka_env.topics.dlq, len(poison))
    assert len(dead) == len(poison)
    for record in dead:
        headers = list(record.headers)
        assert header_value(headers, HEADER_ERROR_KIND), headers
        assert header_value(headers, HEADER_ERROR_REASON), headers
    assert partner.store.balances("CHEDP.FR.2026.0001234")[0].reserved == Decimal(5)


class BuggyPartner:
    """The real client, with a bug that raises for one declaration."""

    def __init__(self, inner: PartnerPort, broken: str) -> None:
        self._inner = inner
        self._broken = broken

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        if request.reference == self._broken:
            raise RecursionError("maximum recursion depth exceeded (a bug)")
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


async def test_an_unexpected_error_on_one_record_dead_letters_it_and_the_next_is_answered(
    kafka_env: KafkaEnv, partner: RunningPartner
) -> None:
    settings = kafka_env.settings()
    settings.adapter = AdapterSettings(partner_url=partner.url, partner_timeout_s=2)
    buggy = BuggyPartner(CertexHttpPartner(settings.adapter, "dgal"), "26FR000690I0000112")
    async with running_adapter(
        "dgal", settings, kafka_env.topics, kafka_env.envelope("dgal"), partner=buggy
    ):
        await send(
            kafka_env,
            seal(kafka_env, request_for(kafka_env, "5", "26FR000690I0000112")),
            seal(kafka_env, request_for(kafka_env, "6", "26FR000690I0000113")),
        )
        [answered] = await read(kafka_env, kafka_env.topics.responses("dgal"), 1)
        [dead] = await read(kafka_env, kafka_env.topics.dlq, 1)
    assert response_of(kafka_env, answered).reference == "26FR000690I0000113"
    headers = list(dead.headers)
    assert header_value(headers, HEADER_ERROR_KIND) == "UNHANDLED_ERROR"
    reason = header_value(headers, HEADER_ERROR_REASON) or ""
    assert reason.startswith("RecursionError raised at tests.integration.test_dgal_adapter:")
    assert "a bug" not in reason  # its text, in the log only (gun_contract/validation.py)


async def test_a_request_read_hours_after_the_broker_accepted_it_still_opens(
    kafka_env: KafkaEnv, partner: RunningPartner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog: the adapter reads the request three hours after it was written."""
    waiting = seal(kafka_env, request_for(kafka_env, "7", "26FR000690I0000114"))
    await send(kafka_env, waiting)

    class ThreeHoursLater:
        @staticmethod
        def time() -> float:
            return time.time() + 3 * 3600

    monkeypatch.setattr(jose_envelope, "time", ThreeHoursLater)
    settings = kafka_env.settings()
    settings.adapter = AdapterSettings(partner_url=partner.url, partner_timeout_s=2)
    async with running_adapter("dgal", settings, kafka_env.topics, kafka_env.envelope("dgal")):
        [record] = await read(kafka_env, kafka_env.topics.responses("dgal"), 1)
    [answer] = response_of(kafka_env, record).answers
    assert answer.verdict is Verdict.VALID
    assert partner.store.balances("CHEDP.FR.2026.0001234")[0].reserved == Decimal(7)
