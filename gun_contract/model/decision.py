"""The hub's decision on one declaration version (contract section 4)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, field_validator

from gun_contract.model.partner_codes import contract_partner_code
from gun_contract.model.verdicts import Outcome, Verdict


class Reason(BaseModel):
    """Why the outcome is what it is; ``code`` is stable, ``text`` is for people."""

    model_config = ConfigDict(frozen=True)

    code: str
    text: str


class DocumentResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    goods_item: int
    code: str
    reference: str
    authority: str | None
    verdict: Verdict
    # Only what decision.xsd's PartnerCodeType carries (partner_codes.py): a result kept
    # in a case table by an earlier release is shown in the contract's form too.
    partner_code: str | None = None

    @field_validator("partner_code")
    @classmethod
    def _contract_form(cls, code: str | None) -> str | None:
        return contract_partner_code(code)


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    reference: str
    version: int
    outcome: Outcome
    decided_at: datetime
    reasons: tuple[Reason, ...] = ()
    documents: tuple[DocumentResult, ...] = ()
