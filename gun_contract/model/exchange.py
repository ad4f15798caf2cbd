"""What the hub and a partner adapter say to each other (JSON inside the envelope).

A request carries only what its authority checks (data minimisation): the goods items
quoting that authority's documents, and the declaration fields its checks need.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

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

    def idempotency_key_for(self, code: str, reference: str) -> str:
        """The ``Idempotency-Key`` of this request's call about one quoted document (code
        and reference): the request id, then a digest of the document.

        One key per call, as a partner keeping keys per client (the IETF idempotency-key
        draft, Stripe-like APIs) expects: with the request id alone on every document's
        call, such a partner answered the second document from the first one's memory (it
        was never written off) or refused it 422 (found by review, stop 37, J1). Derived
        from the request only, so a retry, a replay and a request read again after a
        restart carry the same key and are applied once. The digest keeps the reference,
        a war-material licence number for DGA, out of the header; 64 bits tell apart the
        few documents of one request. (Named apart from the ``idempotency_key`` property
        of earlier releases, the request id, so a caller of that one fails loudly.)"""
        document = hashlib.sha256(f"{code}\x1f{reference}".encode()).hexdigest()[:16]
        return f"{self.request_id}/{document}"


# The contract's bounds of a quoted document (schemas/common-types.xsd: GoodsItemNumberType,
# DocumentCodeType, DocumentReferenceType), anchored: pydantic searches a pattern. What a
# partner answers about is what the hub asked, which the declaration schema bounded: an
# answer outside them is malformed, refused at parsing (review stop 37, i3: free text of
# any length reached the trader's status history).
DOCUMENT_CODE_PATTERN = r"^[A-Z][0-9A-Z]{3}$"
DOCUMENT_REFERENCE_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z._/\-]{0,69}$"
MAX_GOODS_ITEM = 999


class DocumentAnswer(BaseModel):
    """The authority's verdict on one quoted document of one goods item."""

    model_config = ConfigDict(frozen=True)

    goods_item: int = Field(ge=1, le=MAX_GOODS_ITEM)
    code: str = Field(pattern=DOCUMENT_CODE_PATTERN)
    reference: str = Field(pattern=DOCUMENT_REFERENCE_PATTERN)
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
