"""A decision as readable lines, and the same decision fit to be shown outside customs.

The clearance system is entitled to every document reference of a decision (contract
section 4); a printout a trader may read (the demo's) is not: the reference of a document
checked by a confidential authority (war material, DGA) is masked there, in its document
result and wherever a reason's text quotes it. Verdicts, codes and outcomes stay.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from gun_contract.model.decision import Decision

# A leading document-type prefix ("EXP-", "LEMG.") says nothing about which licence it is.
_TYPE_PREFIX = re.compile(r"^[A-Za-z]+(?=[^A-Za-z0-9])")
KEPT_LAST = 4  # enough for the holder to recognise its own licence
# Fewer characters than this left to hide and the last ones are hidden too.
_MASKED_AT_LEAST = 4


def mask_reference(reference: str) -> str:
    """``EXP-2026-0042`` -> ``EXP-****-0042``: the type prefix and the last four
    characters stay, every other letter or digit becomes ``*``, separators stay."""
    prefix_match = _TYPE_PREFIX.match(reference)
    prefix = prefix_match.group(0) if prefix_match else ""
    body = reference[len(prefix) :]
    positions = [i for i, char in enumerate(body) if char.isalnum()]
    shown = set(positions[-KEPT_LAST:]) if len(positions) >= KEPT_LAST + _MASKED_AT_LEAST else set()
    return prefix + "".join(
        char if not char.isalnum() or i in shown else "*" for i, char in enumerate(body)
    )


def masked(decision: Decision, confidential: Collection[str]) -> Decision:
    """``decision`` with the reference of every document of a ``confidential`` authority
    masked, in its result and in the reasons' texts."""
    secret = {
        d.reference: mask_reference(d.reference)
        for d in decision.documents
        if d.authority is not None and d.authority in confidential
    }
    if not secret:
        return decision
    # Longest first: a reference that contains another is replaced whole.
    quoted = re.compile("|".join(re.escape(r) for r in sorted(secret, key=len, reverse=True)))
    return decision.model_copy(
        update={
            "documents": tuple(
                d.model_copy(update={"reference": secret.get(d.reference, d.reference)})
                for d in decision.documents
            ),
            "reasons": tuple(
                r.model_copy(update={"text": quoted.sub(lambda m: secret[m.group(0)], r.text)})
                for r in decision.reasons
            ),
        }
    )


def decision_lines(decision: Decision, source: str = "") -> list[str]:
    """The outcome (and where the declaration came from, when given), then one line per
    reason and per document result."""
    came_from = f"  {source}" if source else ""
    lines = [f"{decision.reference} v{decision.version}{came_from}: {decision.outcome.value}"]
    lines += [f"    reason {reason.code}: {reason.text}" for reason in decision.reasons]
    lines += [
        f"    item {d.goods_item} {d.code} {d.reference}: {d.verdict.value}"
        + (f" ({d.authority})" if d.authority else "")
        + (f" partner code {d.partner_code}" if d.partner_code else "")
        for d in decision.documents
    ]
    return lines
