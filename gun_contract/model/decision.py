"""The hub's decision on one declaration version (contract section 4)."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, field_validator

from gun_contract.model.partner_codes import contract_partner_code
from gun_contract.model.verdicts import Outcome, Verdict

# decision.xsd ReasonTextType: maxLength 2048 (characters). A longer text is cut, keeping
# its start (what is wrong) and its end (libxml2 says where last), and says so.
REASON_TEXT_MAX_CHARS = 2048
_REASON_TAIL_CHARS = 160
# What XML 1.0 cannot carry at all (Char production): shown as U+FFFD.
_NOT_XML_CHARS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def bounded_reason_text(text: str) -> str:
    """``text`` as a decision may carry it: XML characters only, at most
    :data:`REASON_TEXT_MAX_CHARS` characters (found by review, stop 36)."""
    text = _NOT_XML_CHARS.sub("\ufffd", text)
    if len(text) <= REASON_TEXT_MAX_CHARS:
        return text
    cut = f" [... reason cut to {REASON_TEXT_MAX_CHARS} characters from {len(text)} ...] "
    head = REASON_TEXT_MAX_CHARS - len(cut) - _REASON_TAIL_CHARS
    return text[:head] + cut + text[-_REASON_TAIL_CHARS:]


class Reason(BaseModel):
    """Why the outcome is what it is; ``code`` is stable, ``text`` is for people."""

    model_config = ConfigDict(frozen=True)

    code: str
    # Bounded to the schema wherever a reason comes from (intake quoting libxml2, a
    # risk rule's description, a document's description).
    text: str

    @field_validator("text")
    @classmethod
    def _fits_the_schema(cls, text: str) -> str:
        return bounded_reason_text(text)


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
