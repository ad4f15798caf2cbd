"""Quantity rules of a partner system, as pure functions over a document and positions.

A *position* is what one declaration holds on one document: per line, the quantity
reserved and the quantity written off. A reservation restates the declaration's whole
position (idempotent, like a PUT): the new position replaces the old one, and is bounded
by what the other declarations leave of each line.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Context, Decimal, localcontext
from enum import StrEnum
from typing import ParamSpec, TypeVar

from partner_sim.documents import DocumentStatus, PartnerDocument

_P = ParamSpec("_P")
_R = TypeVar("_R")

# A claim's quantity has up to 30 digits (the API's bound, api.py), and Python's default
# context keeps 28: a 30-digit claim was reserved rounded, two claims on one line summed
# short, and a claim just above what a line authorises accepted as equal to it (review
# of stop 56). Every sum and difference of quantities is made in this context, exact for
# any count of such quantities a ledger can hold.
EXACT = Context(prec=80)


def exact(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """``function`` run with the ledger's exact decimal context."""

    @functools.wraps(function)
    def in_exact_context(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with localcontext(EXACT):
            return function(*args, **kwargs)

    return in_exact_context


class RefusalCode(StrEnum):
    """CERTEX reservation refusal reasons (domain.md)."""

    NOT_A_BASE = "01"
    ALREADY_USED = "02"
    COMMODITY_MISMATCH = "03"
    INAPPROPRIATE_STATUS = "04"
    QUANTITY_INSUFFICIENT = "05"
    WRITE_OFF_EXISTS = "06"
    LINE_MISMATCH = "07"
    DESTINATION_MISMATCH = "08"
    HOLDER_MISMATCH = "09"
    UNIT_MISMATCH = "10"
    QUANTITY_NOT_VALIDATABLE = "11"


class ClearanceCode(StrEnum):
    """CERTEX write-off (clearance) outcomes (domain.md), also used for deletions and
    give-backs: 03 is "already done" for a write-off (consumed) and a give-back (given
    back), 05 "an active reservation exists" for a give-back of what was never written off.
    """

    EXECUTED = "01"
    NO_RECORD = "02"
    ALREADY_CONSUMED = "03"
    EXECUTED_STATUS_CHANGED = "04"
    ACTIVE_RESERVATION_EXISTS = "05"


STALE_VERSION = "STALE_VERSION"
"""Refusal code of an operation older than the newest version this partner has seen for
the declaration's position on the document (not a CERTEX code: the hub's contract)."""


@dataclass(frozen=True, slots=True)
class RequestedLine:
    """One goods item's claim on one document."""

    goods_item: int
    line: int | None
    quantity: Decimal | None
    unit: str | None
    commodity_code: str


@dataclass(frozen=True, slots=True)
class PositionRequest:
    declaration: str
    document_type: str
    declarant_eori: str
    country_of_destination: str | None
    lines: tuple[RequestedLine, ...]
    version: int | None = None  # the declaration version; None: not judged (a legacy client)


@dataclass(frozen=True, slots=True)
class Holding:
    """What one declaration holds on one line of the document."""

    reserved: Decimal = Decimal(0)
    written_off: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return EXACT.add(self.reserved, self.written_off)


@dataclass(frozen=True, slots=True)
class Refusal:
    code: RefusalCode
    message: str


@exact
def requested_per_line(lines: Sequence[RequestedLine]) -> dict[int, Decimal]:
    """The declaration's position: quantity per document line, summed over goods items
    (:func:`evaluate` has refused a claim that states no line or no quantity)."""
    totals: dict[int, Decimal] = defaultdict(Decimal)
    for line in lines:
        if line.line is not None and line.quantity is not None:
            totals[line.line] += line.quantity
    return dict(totals)


@exact
def evaluate(
    document: PartnerDocument,
    request: PositionRequest,
    *,
    others: Mapping[int, Decimal],
    own_written_off: bool,
    today: date,
) -> Refusal | None:
    """Why ``request`` cannot hold its position on ``document``, or None if it can.

    ``others`` is, per line, what every *other* declaration holds (reserved plus written
    off); the requesting declaration's own current reservation is replaced, not added to.
    """
    if request.document_type != document.type:
        return Refusal(
            RefusalCode.NOT_A_BASE,
            f"document is a {document.type}, quoted as {request.document_type}",
        )
    if document.status is not DocumentStatus.VALIDATED:
        return Refusal(RefusalCode.INAPPROPRIATE_STATUS, f"status is {document.status.value}")
    if document.valid_until is not None and today > document.valid_until:
        return Refusal(RefusalCode.INAPPROPRIATE_STATUS, f"expired on {document.valid_until}")
    if document.valid_from is not None and today < document.valid_from:
        return Refusal(RefusalCode.INAPPROPRIATE_STATUS, f"valid from {document.valid_from}")
    if own_written_off:
        return Refusal(RefusalCode.WRITE_OFF_EXISTS, "a write-off for this declaration exists")
    if document.holder is not None and document.holder != request.declarant_eori:
        return Refusal(RefusalCode.HOLDER_MISMATCH, "declarant is not the document's holder")
    if (
        document.country_of_destination is not None
        and request.country_of_destination is not None
        and document.country_of_destination != request.country_of_destination
    ):
        return Refusal(
            RefusalCode.DESTINATION_MISMATCH,
            f"document is for {document.country_of_destination}, "
            f"declared {request.country_of_destination}",
        )
    if not request.lines:
        return Refusal(RefusalCode.QUANTITY_NOT_VALIDATABLE, "no line claimed")
    for claim in request.lines:
        refusal = _check_claim(document, claim)
        if refusal is not None:
            return refusal
    for number, wanted in sorted(requested_per_line(request.lines).items()):
        line = document.line(number)
        assert line is not None  # noqa: S101 - _check_claim has refused unknown lines
        left = line.quantity - others.get(number, Decimal(0))
        if wanted > left:
            if left <= 0:
                return Refusal(RefusalCode.ALREADY_USED, f"line {number} is fully used")
            return Refusal(
                RefusalCode.QUANTITY_INSUFFICIENT,
                f"line {number}: {wanted} {line.unit} wanted, {left} left",
            )
    return None


def _check_claim(document: PartnerDocument, claim: RequestedLine) -> Refusal | None:
    """Why one goods item's claim cannot be validated, or None.

    Every line of a document authorises a quantity (documents.py): each document is
    quantity-managed, so a claim must state the line it draws on and how much, with its
    unit. One that states neither, or a line without a quantity, cannot be validated
    (CERTEX 11): before, it was accepted and reserved nothing, so a declaration went out
    on the document without using any of it, even once the line was fully used (found by
    review, stop 36, D7).
    """
    if claim.quantity is not None and claim.unit is None:
        return Refusal(RefusalCode.QUANTITY_NOT_VALIDATABLE, "quantity without a unit")
    if claim.line is None:
        if claim.quantity is not None:
            return Refusal(RefusalCode.QUANTITY_NOT_VALIDATABLE, "quantity without a line")
        return Refusal(
            RefusalCode.QUANTITY_NOT_VALIDATABLE,
            f"goods item {claim.goods_item} states no line and no quantity",
        )
    line = document.line(claim.line)
    if line is None:
        return Refusal(RefusalCode.LINE_MISMATCH, f"document has no line {claim.line}")
    if claim.quantity is None:
        return Refusal(
            RefusalCode.QUANTITY_NOT_VALIDATABLE,
            f"goods item {claim.goods_item} states no quantity on line {claim.line}",
        )
    if claim.quantity <= 0:
        # A claim draws something: a negative one freed quantity for other declarations
        # beyond what the line authorises, and a zero one went out on a line fully used,
        # its write-off consuming nothing (stop 36's D7 through a zero; review stop 56).
        return Refusal(
            RefusalCode.QUANTITY_NOT_VALIDATABLE,
            f"goods item {claim.goods_item} claims {claim.quantity} on line {claim.line}: "
            "a claim draws more than nothing",
        )
    if claim.unit is not None and claim.unit != line.unit:
        return Refusal(
            RefusalCode.UNIT_MISMATCH, f"line {claim.line} is in {line.unit}, not {claim.unit}"
        )
    if not claim.commodity_code.startswith(line.commodity_code):
        return Refusal(
            RefusalCode.COMMODITY_MISMATCH,
            f"line {claim.line} covers {line.commodity_code}, declared {claim.commodity_code}",
        )
    return None
