"""What a partner says in words is bounded in each document's answer, so no partner text
makes the answer record larger than the response topic takes (review of stop 47).

A partner's message was copied whole into every document's ``detail``: a wordy refusal
(16 kB) to a request of 300 documents made an answer of about 9 MB, over the record limit;
the producer refused it before any I/O, inside the batch's handling (no dead letter for a
record that is not at fault), the poll loop ended and the replica stopped, then every
replica that took the partition: asked again with the same keys, the partner said the
same. The call itself is answered as before; its words are cut to 200 characters, as a
rejection's already were.
"""

from __future__ import annotations

import time
from pathlib import Path

from aiohttp import web
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import MessageSizeTooLargeError

from adapters.base import load_adapter
from adapters.base.runner import AdapterRunner, _Rebalance
from gun_contract.effects import Effects
from gun_contract.envelope import ContentType
from gun_contract.kafka.client import producer_options
from gun_contract.limits import MAX_RECORD_BYTES
from gun_contract.model.exchange import AuthorityResponse, DocumentAnswer
from gun_contract.model.verdicts import Verdict
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import AdapterSettings, SecuritySettings, Settings
from tests.adapter_fixtures import many_documents_request
from tests.conftest import envelope_of
from tests.partner_fixtures import partner_client, serving
from tests.unit.test_a_replica_that_crashes_mid_call_leaves_its_calls_to_be_asked_as_repeats import (  # noqa: E501
    P0,
    GroupConsumer,
)
from tests.unit.test_state_pending_queue import TOPICS

REQUESTS = TOPICS.requests("dgal")
DOCUMENTS = 300
WORDS = "x" * 16_000  # the partner's message, in every answer


class SizeCheckingProducer:
    """Sends nothing; refuses what aiokafka's producer refuses before any I/O (its own
    size check), and keeps what it took."""

    def __init__(self) -> None:
        self._real = AIOKafkaProducer(**producer_options("localhost:9"))
        self.sent: list[bytes] = []

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: object = None,
        partition: int | None = None,
    ) -> object:
        self._real._serialize(key, value, headers)  # raises MessageSizeTooLargeError
        self.sent.append(value)

        async def delivered() -> None:
            return None

        return delivered()

    async def close(self) -> None:
        await self._real.stop()


async def wordy_refusal(_: web.Request) -> web.Response:
    return web.json_response({"result": "REFUSED", "code": "05", "message": WORDS})


async def test_a_wordy_refusal_of_a_large_request_is_answered_with_its_words_cut(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dgal"])
    settings = Settings(
        security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / "state"),
        adapter=AdapterSettings(),
    )
    async with serving(wordy_refusal) as url:
        client = partner_client(url)
        runner = AdapterRunner(
            load_adapter("dgal"), settings, TOPICS, envelope_of("dgal", TOPICS, keys), client
        )
        producer = SizeCheckingProducer()
        runner._producer = producer
        consumer = GroupConsumer({0: (0, "answered:0")}, log_end=0)
        await _Rebalance(runner, consumer).on_partitions_assigned({P0})
        request = many_documents_request("26FR000690I0000901", DOCUMENTS)
        sealed = envelope_of("hub", TOPICS, keys).seal(
            request.model_dump_json().encode(),
            recipient="dgal",
            topic=REQUESTS,
            content_type=ContentType.JSON,
        )
        record = ConsumerRecord(
            REQUESTS, 0, 0, int(time.time() * 1000), 0, request.reference.encode(), sealed,
            None, 0, len(sealed), [],
        )  # fmt: skip
        try:
            try:
                await runner._process({P0: [record]}, producer, consumer)
            except MessageSizeTooLargeError as refused:
                raise AssertionError(f"the answer was too large to send: {refused}") from None
        finally:
            await client.close()
            await producer.close()
            runner.pending.close()

    [answer] = producer.sent
    opened = envelope_of("hub", TOPICS, keys).open(answer, topic=TOPICS.responses("dgal"))
    response = AuthorityResponse.model_validate_json(opened.payload)
    assert len(response.answers) == DOCUMENTS
    assert {a.verdict for a in response.answers} == {Verdict.QUANTITY_INSUFFICIENT}
    assert {len(a.detail or "") for a in response.answers} == {200}


async def test_an_answer_too_large_with_its_words_is_sent_with_its_verdicts_only(
    tmp_path: Path,
) -> None:
    """Whatever words a client puts in the answers (this one's are cut; another
    authority's client may not): an answer that would not fit goes without them."""
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dgal"])
    settings = Settings(
        security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / "state"),
        adapter=AdapterSettings(),
    )
    never_asked = partner_client("http://127.0.0.1:9")  # the answer is built, not asked
    runner = AdapterRunner(
        load_adapter("dgal"), settings, TOPICS, envelope_of("dgal", TOPICS, keys), never_asked
    )
    try:
        request = many_documents_request("26FR000690I0000902", DOCUMENTS)
        wordy = tuple(
            DocumentAnswer(
                goods_item=item.number,
                code=document.code,
                reference=document.reference,
                verdict=Verdict.NOT_FOUND,
                detail=WORDS,
            )
            for item in request.items
            for document in item.documents
        )
        outbox = Effects()
        runner._answer(outbox, request, wordy, 0)
    finally:
        await never_asked.close()
        runner.pending.close()
    [record] = outbox.to(TOPICS.responses("dgal"))
    assert len(record.value) <= MAX_RECORD_BYTES
    opened = envelope_of("hub", TOPICS, keys).open(record.value, topic=TOPICS.responses("dgal"))
    response = AuthorityResponse.model_validate_json(opened.payload)
    assert [a.verdict for a in response.answers] == [Verdict.NOT_FOUND] * DOCUMENTS
    assert {a.detail for a in response.answers} == {None}
