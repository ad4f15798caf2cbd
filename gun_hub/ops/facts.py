"""Facts on the hub's internal ``hub.facts`` topic: what the statistics are made of, and
who lodged each declaration.

The status topic is for the trader's eyes and carries no declarant or document numbers;
these facts do, for customs officers' statistics and for the trader lookup's ownership
check (ADR 0007). A war-material licence (a confidential authority's document) is counted
by its code but its reference and quantities are never written here: the statistics never
hold what the status lookup must not show.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from gun_contract.model.encoding import json_bytes


class DocumentUse(BaseModel):
    """A document quoted by a decided declaration and the verdict it got."""

    model_config = ConfigDict(frozen=True)

    goods_item: int
    code: str
    reference: str | None  # None for a confidential authority's document
    authority: str | None  # None: exempt or unrouted (checked by no authority)
    verdict: str


class ReceivedFact(BaseModel):
    """A declaration version the intake accepted for checking, and who lodged it.

    Emitted with the first records about that version (before its ``RECEIVED`` status),
    so the trader lookup knows the declarant while the version is being checked, not only
    once it is decided. Names no document: nothing confidential.
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["RECEIVED"] = "RECEIVED"
    reference: str
    version: int
    declarant_eori: str
    received_at: datetime
    # The receipt's id its status events carry (status_events.lodging); None from a hub of
    # before stop 53.
    lodging: str | None = None


class OverrideUse(BaseModel):
    """The declarant's override (mention 73000) on a decided version: how many goods
    items carried it, and how many document results it covered or could not cover."""

    model_config = ConfigDict(frozen=True)

    goods_items: int
    covered: int = 0
    declined: int = 0


class RolloutUse(BaseModel):
    """An authority's rollout mode on a decided version (rollout.py); in shadow mode, what
    it would have decided, whether that agrees with the decision taken, and the reason
    codes of its answers (pipeline/shadow.py). Codes only: no document is named."""

    model_config = ConfigDict(frozen=True)

    authority: str
    mode: str
    would_decide: str | None = None
    agrees: bool | None = None
    reasons: list[str] = []


class DecisionFact(BaseModel):
    """One decision of one declaration version."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["DECIDED"] = "DECIDED"
    reference: str
    version: int
    declarant_eori: str
    stage: str
    outcome: str
    decided_at: datetime
    authorities: list[str]
    documents: list[DocumentUse]
    override: OverrideUse | None = None  # None: no goods item carried the mention
    office: str = ""
    rollout: list[RolloutUse] = []


class WrittenOff(BaseModel):
    """Quantity written off (or given back) on one document line by one goods item."""

    model_config = ConfigDict(frozen=True)

    # None: stated by a hub before stop 37-s, which did not name it. Several goods items
    # may draw on one line (the partner adds their claims up): each is its own quantity.
    goods_item: int | None = None
    code: str
    reference: str
    line: int | None = None
    quantity: Decimal | None = None  # None: the declaration gave no quantity
    unit: str | None = None


class WriteOffFact(BaseModel):
    """An authority confirmed the write-off of a released declaration's documents."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["WRITTEN_OFF"] = "WRITTEN_OFF"
    reference: str
    version: int
    authority: str
    at: datetime
    documents: list[WrittenOff]


class GivenBackFact(BaseModel):
    """An authority confirmed it gave back what a declaration had written off (an
    invalidation after a release): the quantities return to the documents' lines.

    A kind of its own, not a write-off of negative quantity: a view older than the hub
    that reads it skips it (and counts it skipped) instead of adding it up as written off.
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["GIVEN_BACK"] = "GIVEN_BACK"
    reference: str
    version: int  # the invalidation's
    authority: str
    at: datetime
    documents: list[WrittenOff]


AnyFact = ReceivedFact | DecisionFact | WriteOffFact | GivenBackFact
Fact = Annotated[AnyFact, Field(discriminator="kind")]
FACT = TypeAdapter(Fact)


def fact_bytes(fact: AnyFact) -> bytes:
    return json_bytes(fact)
