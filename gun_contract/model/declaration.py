"""A customs declaration, as parsed from the contract's XML (architecture.md section 3)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Stage(StrEnum):
    """Where the declaration is in its life: it decides what the checks may do."""

    PRELODGED = "PRELODGED"  # coherence checks only: warnings, nothing reserved
    LODGED = "LODGED"  # blocking checks: documents must be valid and quantities reserved
    CANCELLED = "CANCELLED"  # reservations are deleted at each partner
    # The office released goods it had held for a control: what the control kept
    # reserved is written off, then RELEASE.
    RELEASED_AFTER_CONTROL = "RELEASED_AFTER_CONTROL"
    # Invalidated after release: the written-off quantities are given back, then CANCELLED.
    INVALIDATED = "INVALIDATED"


class Direction(StrEnum):
    IMPORT = "IMPORT"
    EXPORT = "EXPORT"


class Quantity(BaseModel):
    """An amount with its unit; a quantity never travels without its unit."""

    model_config = ConfigDict(frozen=True)

    value: Decimal
    unit: str


class DocumentRef(BaseModel):
    """A regulatory document quoted on a goods item (data element 12 03)."""

    model_config = ConfigDict(frozen=True)

    code: str
    reference: str
    line: int | None = None
    quantity: Quantity | None = None


class AdditionalInformation(BaseModel):
    """A coded mention on a goods item (data element 12 02), e.g. 73000, the declarant's
    override of a single-window refusal (:mod:`gun_hub.domain.override`)."""

    model_config = ConfigDict(frozen=True)

    code: str
    text: str | None = None


class GoodsItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    number: int
    commodity_code: str
    description: str
    country_of_origin: str | None = None
    net_mass: Quantity | None = None
    documents: tuple[DocumentRef, ...] = ()
    additional_information: tuple[AdditionalInformation, ...] = ()

    def mentions(self, code: str) -> bool:
        """Whether the item carries the additional information ``code``."""
        return any(info.code == code for info in self.additional_information)


class Declarant(BaseModel):
    model_config = ConfigDict(frozen=True)

    eori: str
    name: str


class Declaration(BaseModel):
    """One version of one declaration; ``(reference, version)`` identifies it."""

    model_config = ConfigDict(frozen=True)

    reference: str
    version: int
    stage: Stage
    direction: Direction
    procedure: str
    lodged_at: datetime
    customs_office: str
    declarant: Declarant
    country_of_dispatch: str | None = None
    country_of_destination: str | None = None
    goods_items: tuple[GoodsItem, ...]
