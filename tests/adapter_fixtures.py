"""A real adapter (aiokafka loop) running inside the test process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal

from adapters.base import PartnerPort, load_adapter
from adapters.base.pending import PendingOperations
from adapters.base.replay import Replayer
from adapters.base.runner import AdapterRunner
from gun_contract.envelope import Envelope
from gun_contract.health import CircuitStatus
from gun_contract.model.declaration import Direction, Stage
from gun_contract.model.exchange import (
    AuthorityRequest,
    DocumentAnswer,
    Operation,
    RequestedDocument,
    RequestedItem,
    request_id_for,
)
from gun_contract.model.verdicts import Verdict
from gun_contract.security.replay import FollowsCommits
from gun_contract.settings import Settings
from gun_contract.topics import TopicRegistry
from tests.conftest import envelope_of


@asynccontextmanager
async def running_adapter(
    authority: str,
    settings: Settings,
    topics: TopicRegistry,
    envelope: Envelope,
    partner: PartnerPort | None = None,
    replay_memory: FollowsCommits | None = None,
) -> AsyncIterator[AdapterRunner]:
    """Start ``authority``'s adapter, wait until it consumes, stop it cleanly after
    (``partner``: another client of the partner system than the package's own;
    ``replay_memory``: the envelope's, told the adapter's commits)."""
    spec = load_adapter(authority)
    runner = AdapterRunner(
        spec,
        settings,
        topics,
        envelope,
        partner or spec.partner(settings.adapter),
        replay_memory=replay_memory,
    )
    ready = asyncio.Event()
    task = asyncio.create_task(runner.run(ready))
    await asyncio.wait_for(ready.wait(), 30)
    try:
        yield runner
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)


def partner_request(
    operation: Operation,
    *,
    reference: str = "26FR000690I0000401",
    version: int = 1,
    document: str = "CHEDP.FR.2026.0001234",
    quantity: str | None = "300",
    authority: str = "dgal",
) -> AuthorityRequest:
    """A request of the hub to ``authority`` quoting one line of one N853 document
    (``quantity`` None: a follow-up that quotes the document only, as the hub sends)."""
    return AuthorityRequest(
        request_id=request_id_for(reference, version, authority, operation),
        authority=authority,
        operation=operation,
        reference=reference,
        version=version,
        stage=Stage.LODGED,
        direction=Direction.IMPORT,
        procedure="4000",
        declarant_eori="FR12345678901234",
        country_of_destination="FR",
        items=(
            RequestedItem(
                number=1,
                commodity_code="0302130000",
                documents=(
                    RequestedDocument(
                        code="N853",
                        reference=document,
                        line=1 if quantity else None,
                        quantity=Decimal(quantity) if quantity else None,
                        unit="KGM" if quantity else None,
                    ),
                ),
            ),
        ),
        sent_at=datetime.now(UTC),
    )


def many_documents_request(
    reference: str, documents: int, operation: Operation = Operation.RESERVE
) -> AuthorityRequest:
    """A request of the hub to DGAL quoting ``documents`` distinct CHED-P, six to a goods
    item (as in review stop 40, W2), each unknown to the sample partner: answered
    NOT_FOUND, a definitive answer."""
    items = tuple(
        RequestedItem(
            number=number,
            commodity_code="0302130000",
            documents=tuple(
                RequestedDocument(
                    code="N853",
                    reference=f"CHEDP.FR.2027.{n:07d}",
                    line=1,
                    quantity=Decimal(1),
                    unit="KGM",
                )
                for n in range((number - 1) * 6, min(number * 6, documents))
            ),
        )
        for number in range(1, (documents + 5) // 6 + 1)
    )
    return AuthorityRequest(
        request_id=request_id_for(reference, 1, "dgal", operation),
        authority="dgal",
        operation=operation,
        reference=reference,
        version=1,
        stage=Stage.LODGED,
        direction=Direction.IMPORT,
        procedure="4000",
        declarant_eori="FR12345678901234",
        country_of_destination="FR",
        items=items,
        sent_at=datetime.now(UTC),
    )


Published = list[tuple[str, Verdict, str | None]]


def replayer_publishing_to(
    pending: PendingOperations, client: PartnerPort, published: Published
) -> Replayer:
    """A replayer whose answers to the hub are kept in ``published`` (request id, verdict,
    partner code)."""

    async def publish(
        request: AuthorityRequest, answers: tuple[DocumentAnswer, ...], _partition: int | None
    ) -> None:
        published.extend((request.request_id, a.verdict, a.partner_code) for a in answers)

    return Replayer(pending, client, publish)


Rule = Callable[[AuthorityRequest], Verdict]


class PartnerAnsweringByRule:
    """A partner client that answers every document of a request with the verdict
    ``rule`` gives the request (tests may switch it), never leaves a call that may still
    apply, and records the request ids it is asked."""

    def __init__(
        self,
        rule: Rule = lambda request: Verdict.VALID,
        *,
        unavailable_detail: str = "partner down",
    ) -> None:
        self.asked: list[str] = []
        self.rule = rule
        self.unavailable_detail = unavailable_detail

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        self.asked.append(request.request_id)
        verdict = self.rule(request)
        return tuple(
            DocumentAnswer(
                goods_item=item.number,
                code=document.code,
                reference=document.reference,
                verdict=verdict,
                detail=self.unavailable_detail if verdict is Verdict.UNAVAILABLE else None,
            )
            for item in request.items
            for document in item.documents
        )

    def may_still_apply(self, request: AuthorityRequest) -> bool:
        return False  # its calls never outlive their answer

    def sent_before(self, request: AuthorityRequest, accepted: Collection[int] = ()) -> None:
        return None

    def accepted_calls(self, request: AuthorityRequest) -> frozenset[int]:
        return frozenset()

    async def close(self) -> None:
        return None

    @property
    def circuit_state(self) -> CircuitStatus:
        return CircuitStatus.CLOSED


def adapter_runner(
    authority: str, settings: Settings, topics: TopicRegistry, partner: PartnerPort | None = None
) -> AdapterRunner:
    """``authority``'s adapter as its process builds it, with the keys ``settings`` name,
    not started (``partner``: a :class:`PartnerAnsweringByRule` answering VALID unless
    given)."""
    return AdapterRunner(
        load_adapter(authority),
        settings,
        topics,
        envelope_of(authority, topics, settings.security.keys_dir),
        PartnerAnsweringByRule() if partner is None else partner,
    )
