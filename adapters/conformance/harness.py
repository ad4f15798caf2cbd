"""The conformance harness plays the hub against a running adapter and partner system.

It seals requests with the hub's key onto the authority's request topic, reads the
answers from the response topic (verifying them as the hub does), and drives the partner
system's test API: load documents, switch faults, read the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote as url_segment

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from gun_contract.envelope import ContentType, Envelope, EnvelopeRejected, broker_accepted_at
from gun_contract.kafka.admin import topic_partitions
from gun_contract.kafka.client import ClientConfig, client_options
from gun_contract.model.declaration import Direction, Stage
from gun_contract.model.exchange import (
    AuthorityRequest,
    AuthorityResponse,
    Operation,
    RequestedDocument,
    RequestedItem,
    request_id_for,
)
from gun_contract.topics import TopicRegistry

EORI = "FR12345678901234"
COMMODITY = "0302130000"


def today() -> date:
    return datetime.now(UTC).date()


class ScenarioFailed(AssertionError):
    """A scenario's expectation was not met; the message says what was seen."""


@dataclass(frozen=True, slots=True)
class Quote:
    """One goods item quoting one document line."""

    reference: str
    quantity: str | None = "10"
    line: int | None = 1
    unit: str | None = "KGM"
    code: str | None = None  # None: the authority's own document type
    goods_item: int = 1
    commodity_code: str = COMMODITY


class Harness:
    def __init__(
        self,
        *,
        authority: str,
        document_type: str,
        connect: ClientConfig,
        topics: TopicRegistry,
        hub_envelope: Envelope,
        partner_url: str,
        answer_timeout_s: float,
        partner_timeout_s: float,
    ) -> None:
        self.authority = authority
        self.document_type = document_type
        self.run_id = secrets.token_hex(3).upper()
        self.answer_timeout_s = answer_timeout_s
        # Slower than the adapter's deadline for one partner call.
        self.slow_ms = (partner_timeout_s + 1) * 1000
        self._connect = connect
        self._topics = topics
        self._envelope = hub_envelope
        self._partner_url = partner_url.rstrip("/")
        self._answers: dict[str, list[AuthorityResponse]] = defaultdict(list)
        self._arrived = asyncio.Condition()
        self._counter = 0
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self.unverifiable_answers = 0

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        topic = self._topics.responses(self.authority)
        partitions = [
            TopicPartition(topic, p) for p in await topic_partitions(self._connect, topic)
        ]
        self._consumer = AIOKafkaConsumer(**client_options(self._connect), enable_auto_commit=False)
        await self._consumer.start()
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self._consumer.position(tp)
        self._producer = AIOKafkaProducer(**client_options(self._connect), acks="all")
        await self._producer.start()
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        self._reader = asyncio.create_task(self._read_answers())

    async def stop(self) -> None:
        with contextlib.suppress(ScenarioFailed, aiohttp.ClientError):
            await self.faults()  # never leave a partner broken behind us
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for closing in (self._consumer, self._producer):
            if closing is not None:
                await closing.stop()
        if self._http is not None:
            await self._http.close()

    async def _read_answers(self) -> None:
        assert self._consumer is not None  # noqa: S101 - started before the task
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    try:
                        opened = self._envelope.open(
                            record.value or b"",
                            topic=record.topic,
                            position=f"{record.topic}/{record.partition}/{record.offset}",
                            # Judged as the hub judges: at the broker's time (ADR 0006).
                            accepted_at=broker_accepted_at(record.timestamp, record.timestamp_type),
                        )
                    except EnvelopeRejected:
                        self.unverifiable_answers += 1
                        continue
                    response = AuthorityResponse.model_validate_json(opened.payload)
                    async with self._arrived:
                        self._answers[response.request_id].append(response)
                        self._arrived.notify_all()

    # -- names ------------------------------------------------------------------------------

    def document_reference(self, label: str) -> str:
        return f"CONF-{self.run_id}-{label}"

    def declaration_reference(self) -> str:
        self._counter += 1
        return f"26FRCONF{self.run_id}{self._counter:04d}"

    # -- the partner system's test API ------------------------------------------------------

    async def _partner(self, method: str, path: str, body: Any = None) -> Any:
        assert self._http is not None  # noqa: S101
        async with self._http.request(method, self._partner_url + path, json=body) as response:
            payload = await response.json(content_type=None)
            if response.status >= 400:
                raise ScenarioFailed(f"partner test API {method} {path}: {payload}")
            return payload

    async def seed(self, label: str, **changes: Any) -> str:
        """Load one document into the partner system; return its reference."""
        reference = self.document_reference(label)
        document: dict[str, Any] = {
            "reference": reference,
            "type": self.document_type,
            "status": "VALIDATED",
            "holder": EORI,
            "country_of_destination": "FR",
            "valid_from": (today() - timedelta(days=30)).isoformat(),
            "valid_until": (today() + timedelta(days=365)).isoformat(),
            "lines": [{"line": 1, "commodity_code": "0302", "quantity": "100", "unit": "KGM"}],
        }
        document.update(changes)
        await self._partner("PUT", "/admin/documents", {"documents": [document]})
        return reference

    async def faults(self, **faults: Any) -> None:
        await self._partner("PUT", "/admin/faults", faults)

    async def ledger(self, reference: str, line: int = 1) -> tuple[Decimal, Decimal]:
        """(reserved, written off) on one line of a document."""
        balance = await self.balance(reference, line)
        return Decimal(balance["reserved"]), Decimal(balance["written_off"])

    async def balance(self, reference: str, line: int = 1) -> dict[str, Any]:
        """One line of a document as the partner's test API shows it (given back, and
        every declaration's position with its version, included)."""
        body = await self._partner("GET", f"/admin/documents/{url_segment(reference, safe='')}")
        [balance] = [b for b in body["balances"] if b["line"] == line]
        return dict(balance)

    # -- asking the adapter -----------------------------------------------------------------

    def request(
        self,
        operation: Operation,
        quotes: list[Quote],
        *,
        reference: str | None = None,
        version: int = 1,
    ) -> AuthorityRequest:
        reference = reference or self.declaration_reference()
        items: dict[int, list[RequestedDocument]] = defaultdict(list)
        commodity: dict[int, str] = {}
        for quote in quotes:
            items[quote.goods_item].append(
                RequestedDocument(
                    code=quote.code or self.document_type,
                    reference=quote.reference,
                    line=quote.line,
                    quantity=Decimal(quote.quantity) if quote.quantity else None,
                    unit=quote.unit,
                )
            )
            commodity[quote.goods_item] = quote.commodity_code
        return AuthorityRequest(
            request_id=request_id_for(reference, version, self.authority, operation),
            authority=self.authority,
            operation=operation,
            reference=reference,
            version=version,
            stage=Stage.PRELODGED if operation is Operation.CHECK else Stage.LODGED,
            direction=Direction.IMPORT,
            procedure="4000",
            declarant_eori=EORI,
            country_of_dispatch="NO",
            country_of_destination="FR",
            items=tuple(
                RequestedItem(
                    number=number,
                    commodity_code=commodity[number],
                    country_of_origin="NO",
                    documents=tuple(documents),
                )
                for number, documents in sorted(items.items())
            ),
            sent_at=datetime.now(UTC),
        )

    def seal(self, request: AuthorityRequest) -> bytes:
        return self._envelope.seal(
            request.model_dump_json().encode(),
            recipient=self.authority,
            topic=self._topics.requests(self.authority),
            content_type=ContentType.JSON,
        )

    async def publish(self, key: str, value: bytes) -> None:
        assert self._producer is not None  # noqa: S101
        await self._producer.send_and_wait(
            self._topics.requests(self.authority), value, key=key.encode()
        )

    async def ask(self, request: AuthorityRequest, *, copies: int = 1) -> AuthorityResponse:
        """Send ``request`` (``copies`` times, each in a new envelope) and wait for as many
        answers; return the last."""
        # The same request id may have been asked before (restatements): count from here.
        already = len(self._answers[request.request_id])
        for _ in range(copies):
            await self.publish(request.reference, self.seal(request))
        answers = await self.answers(request.request_id, already + copies, self.answer_timeout_s)
        return answers[-1]

    async def answers(
        self, request_id: str, count: int, timeout_s: float
    ) -> list[AuthorityResponse]:
        try:
            async with asyncio.timeout(timeout_s), self._arrived:
                await self._arrived.wait_for(lambda: len(self._answers[request_id]) >= count)
        except TimeoutError:
            seen = len(self._answers[request_id])
            raise ScenarioFailed(
                f"{seen} answer(s) to {request_id} within {timeout_s:.0f}s, expected {count}"
            ) from None
        return list(self._answers[request_id])

    async def no_answer(self, request_id: str, wait_s: float) -> None:
        await asyncio.sleep(wait_s)
        if self._answers[request_id]:
            raise ScenarioFailed(f"{request_id} was answered but should not have been")

    async def until_partner_answers(self, reference: str, timeout_s: float = 60) -> None:
        """After a fault: wait until the adapter reaches the partner again (circuit closed)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            probe = await self.ask(self.request(Operation.CHECK, [Quote(reference, "1")]))
            if probe.answers[0].verdict.value != "UNAVAILABLE":
                return
            await asyncio.sleep(0.5)
        raise ScenarioFailed("the adapter did not reach the partner again after the fault")
