"""The documents a partner system knows, as loaded from a JSON file.

File format (see README, "Partner documents file")::

    {"documents": [{
        "reference": "CHEDP.FR.2026.0001234", "type": "N853", "status": "VALIDATED",
        "holder": "FR12345678901234", "country_of_destination": "FR",
        "valid_from": "2026-01-01", "valid_until": "2027-12-31",
        "lines": [{"line": 1, "commodity_code": "0302", "quantity": "5000", "unit": "KGM"}]
    }]}
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DocumentStatus(StrEnum):
    """Life-cycle states seen in TRACES and CERTEX; only VALIDATED accepts reservations."""

    SUBMITTED = "SUBMITTED"
    IN_PROGRESS = "IN_PROGRESS"
    VALIDATED = "VALIDATED"
    REPLACED = "REPLACED"
    DELETED = "DELETED"
    CANCELLED = "CANCELLED"
    SPLIT = "SPLIT"
    SUSPENDED = "SUSPENDED"


class DocumentLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    line: int = Field(ge=1)
    commodity_code: str = Field(pattern=r"^[0-9]{2,10}$")
    quantity: Decimal = Field(gt=0)
    unit: str = Field(pattern=r"^[A-Z]{3}$")


class PartnerDocument(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reference: str = Field(min_length=1, max_length=70)
    type: str = Field(pattern=r"^[A-Z][0-9A-Z]{3}$")
    status: DocumentStatus
    holder: str | None = None
    country_of_destination: str | None = None
    valid_from: date | None = None
    valid_until: date | None = None
    lines: tuple[DocumentLine, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _lines_are_unique(self) -> PartnerDocument:
        numbers = [line.line for line in self.lines]
        if len(numbers) != len(set(numbers)):
            raise ValueError(f"document {self.reference} has duplicate line numbers")
        return self

    def line(self, number: int) -> DocumentLine | None:
        return next((line for line in self.lines if line.line == number), None)


class DocumentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: list[PartnerDocument]

    @model_validator(mode="after")
    def _references_are_unique(self) -> DocumentsFile:
        references = [document.reference for document in self.documents]
        duplicates = sorted({r for r in references if references.count(r) > 1})
        if duplicates:
            raise ValueError(f"duplicate document references: {duplicates}")
        return self


def load_documents(path: Path) -> list[PartnerDocument]:
    """Read and validate a documents file; raises ``ValueError`` naming the fault."""
    return DocumentsFile.model_validate_json(path.read_bytes()).documents
