"""The partner's own code on a document's result, as the decision schema can carry it.

``schemas/decision.xsd`` types ``<PartnerCode>`` as ``[0-9A-Za-z]{1,8}`` (contract
section 4). Two codes are the hub contract's rather than a partner's, and both fit:

- :data:`STALE_VERSION` (``STALE``): the partner has seen a newer version of the
  declaration on the document, so the operation changed nothing;
- :func:`rejected_call_code` (``HTTP409``, ``HTTP422``...): the partner read a write-off,
  deletion or give-back and will not apply it as sent.

Adapters of earlier releases sent ``STALE_VERSION`` and ``HTTP_409``: they are still
understood and shown in the contract's form. Any other code the schema cannot carry
(a third-party adapter passing its partner's code on unchanged) is left out of the
decision, never sent invalid; the verdict and the reason code still say what happened,
and the hub logs and counts the code it withheld (found by review, stop 36).
"""

from __future__ import annotations

import re

PARTNER_CODE = re.compile(r"[0-9A-Za-z]{1,8}")
STALE_VERSION = "STALE"
_REJECTED_CALL = re.compile(r"HTTP_?([0-9]{3})")
# What adapters of earlier releases sent, in the contract's form.
_LEGACY = {"STALE_VERSION": STALE_VERSION}


def rejected_call_code(http_status: int) -> str:
    """The code of a call the partner read and would not apply (an HTTP 4xx)."""
    return f"HTTP{http_status}"


def is_rejected_call(code: str | None) -> bool:
    return code is not None and _REJECTED_CALL.fullmatch(code) is not None


def is_stale_version(code: str | None) -> bool:
    return code is not None and _LEGACY.get(code, code) == STALE_VERSION


def contract_partner_code(code: str | None) -> str | None:
    """``code`` as a decision may carry it: unchanged when the schema allows it, an
    earlier release's form of the hub's own codes mapped, anything else None."""
    if code is None or PARTNER_CODE.fullmatch(code):
        return code
    rejected = _REJECTED_CALL.fullmatch(code)
    if rejected is not None:
        return rejected_call_code(int(rejected.group(1)))
    return _LEGACY.get(code)
