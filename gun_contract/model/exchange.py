"""What the hub and a partner adapter say to each other (JSON inside the envelope).

A request carries only what its authority checks (data minimisation): the goods items
quoting that authority's documents, and the declaration fields its checks need.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from gun_contract.model.declaration import Direction, Stage
from gun_contract.model.partner_codes import (
    STALE_VERSION,
    contract_partner_code,
    is_rejected_call,
    is_stale_version,
    rejected_call_code,
)
from gun_contract.model.verdicts import Verdict


class Operation(StrEnum):
    """Quantity-management operations, as CERTEX and its partners define them."""

    CHECK = "CHECK"  # read only: is the document valid and does it cover the quantity?
    RESERVE = "RESERVE"  # restate this declaration's whole position on the document
    WRITE_OFF = "WRITE_OFF"  # consume the reservation at release
    DELETE = "DELETE"  # drop the reservation (refused, cancelled, superseded)
    # Give a write-off back (declaration invalidated after release): the quantity
    # returns to the document's balance.
    GIVE_BACK = "GIVE_BACK"


class RequestedDocument(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    reference: str
    line: int | None = None
    quantity: Decimal | None = None
    unit: str | None = None


class RequestedItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    number: int
    commodity_code: str
    country_of_origin: str | None = None
    documents: tuple[RequestedDocument, ...]


class AuthorityRequest(BaseModel):
    """One question from the hub to one authority about one declaration version."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    authority: str
    operation: Operation
    reference: str
    version: int
    stage: Stage
    direction: Direction
    procedure: str
    declarant_eori: str
    country_of_dispatch: str | None = None
    country_of_destination: str | None = None
    items: tuple[RequestedItem, ...]
    sent_at: datetime

    @property
    def idempotency_key(self) -> str:
        """Names this operation for the partner: a retried or replayed call carries the
        same key and is applied once (the request id is deterministic per reference,
        version, authority and operation)."""
        return self.request_id


class DocumentAnswer(BaseModel):
    """The authority's verdict on one quoted document of one goods item."""

    model_config = ConfigDict(frozen=True)

    goods_item: int
    code: str
    reference: str
    verdict: Verdict
    partner_code: str | None = None
    detail: str | None = None

    @property
    def call_rejected(self) -> bool:
        """The partner rejected the call itself (``rejected_call_code``): the verdict says
        nothing of the document, only that the operation was not applied."""
        return is_rejected_call(self.partner_code)

    @property
    def stale_version(self) -> bool:
        """The partner has seen a newer version of the declaration on this document: the
        operation is superseded and changed nothing."""
        return is_stale_version(self.partner_code)


# The codes of the hub contract itself (gun_contract/model/partner_codes.py): a follow-up
# the partner rejected ends with rejected_call_code(status) as a refusal, for operations to
# look at (adapters/base/certex.py); an operation of an older version with STALE_VERSION.
__all__ = [
    "STALE_VERSION",
    "AuthorityRequest",
    "AuthorityResponse",
    "DocumentAnswer",
    "Operation",
    "RequestedDocument",
    "RequestedItem",
    "contract_partner_code",
    "rejected_call_code",
    "request_id_for",
]


class AuthorityResponse(BaseModel):
    """The adapter's answer to one :class:`AuthorityRequest`."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    authority: str
    operation: Operation
    reference: str
    version: int
    answers: tuple[DocumentAnswer, ...]
    answered_at: datetime


def request_id_for(reference: str, version: int, authority: str, operation: Operation) -> str:
    """Deterministic id: a redelivered request is recognisably the same request."""
    return f"{reference}/{version}/{authority}/{operation.value}"
