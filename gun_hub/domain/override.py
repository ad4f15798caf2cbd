"""The declarant's override: the mention 73000 on a goods item (contract section 3).

In the French single window the declarant may put the special mention 73000 on a goods
item to let its goods go under control when the single window refuses one of its
documents or cannot answer; the use is audited and watched (it was the published
workaround of the June 2025 DELTA G - CERTEX outage, domain notes).

Here, for a lodged declaration, a document result on an item carrying the mention is:

* **covered** when the routing table lets the override cover that verdict for that
  authority (``override_covers``): it no longer refuses the declaration, it sends it to
  documentary control, never to release;
* **declined** when it is a refusal the override may not cover (a war-material refusal):
  the declaration is refused as without the mention, and the reasons say the override
  was not accepted;
* otherwise untouched (a VALID or EXEMPT document: there is nothing to override).

Pure: the decision rules (:mod:`gun_hub.domain.decide`) and the audit and statistics read the
same :class:`OverrideReview`. Nothing is reserved because of an override: the only
reservation of a lodged version is the one its checks asked for, which the partner refused
for a refused document; a documentary control sends no request of its own
(:mod:`gun_hub.domain.lifecycle`), and what the office decides afterwards comes back as a
new version (released after control, or cancelled).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gun_contract.model.decision import DocumentResult
from gun_contract.model.declaration import Declaration, Stage
from gun_contract.model.verdicts import Verdict

OVERRIDE_MENTION = "73000"
OVERRIDE_APPLIED = "OVERRIDE_73000"
OVERRIDE_NOT_ACCEPTED = "OVERRIDE_NOT_ACCEPTED"


class OverridePolicy(Protocol):
    """What an override may cover (the routing table is one)."""

    def override_covers(self, authority: str | None, verdict: Verdict) -> bool: ...


def overriding_items(declaration: Declaration) -> list[int]:
    """The goods items of ``declaration`` that carry the override mention."""
    return [item.number for item in declaration.goods_items if item.mentions(OVERRIDE_MENTION)]


@dataclass(frozen=True, slots=True)
class OverrideReview:
    """What the mention did to one declaration version's document results."""

    items: tuple[int, ...] = ()  # goods items carrying the mention
    covered: tuple[DocumentResult, ...] = ()
    declined: tuple[DocumentResult, ...] = ()

    @property
    def declared(self) -> bool:
        return bool(self.items)

    @property
    def applied(self) -> bool:
        """The mention changed the decision, or named why it is a control."""
        return bool(self.covered)

    def is_covered(self, result: DocumentResult) -> bool:
        return result in self.covered


NO_OVERRIDE = OverrideReview()


def review_override(
    stage: Stage,
    results: Sequence[DocumentResult],
    items: Collection[int],
    policy: OverridePolicy,
) -> OverrideReview:
    """Sort the results of the items carrying the mention into covered and declined.

    Only a lodged declaration's checks block, so only there does the mention act: a
    pre-lodged declaration gets advice whatever it says, and the later stages (release
    after control, cancellation, invalidation) refuse nothing.
    """
    if stage is not Stage.LODGED or not items:
        return OverrideReview(items=tuple(sorted(items)))
    concerned = [r for r in results if r.goods_item in items]
    covered = tuple(
        r
        for r in concerned
        if (r.verdict.is_refusal or r.verdict.is_degraded)
        and policy.override_covers(r.authority, r.verdict)
    )
    declined = tuple(r for r in concerned if r.verdict.is_refusal and r not in covered)
    return OverrideReview(items=tuple(sorted(items)), covered=covered, declined=declined)


def audit_body(
    reference: str,
    version: int,
    declarant_eori: str,
    review: OverrideReview,
) -> dict[str, object]:
    """The audit record of an override that acted (covered or declined something).

    Names documents by goods item, code, verdict and authority, never by reference: the
    audit chain is read by auditors who need the use, not the licence numbers.
    """

    def listed(results: Iterable[DocumentResult]) -> list[dict[str, object]]:
        return [
            {
                "goods_item": r.goods_item,
                "code": r.code,
                "verdict": r.verdict.value,
                "authority": r.authority,
            }
            for r in results
        ]

    return {
        "kind": "OVERRIDE",
        "mention": OVERRIDE_MENTION,
        "reference": reference,
        "version": version,
        "declarant": declarant_eori,
        "goods_items": list(review.items),
        "covered": listed(review.covered),
        "declined": listed(review.declined),
    }
