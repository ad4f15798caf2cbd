"""Decision rules (contract section 4): pure functions from verdicts to an outcome.

* LODGED: every document VALID or EXEMPT: RELEASE. Any refusal verdict: REFUSE. Otherwise
  any UNAVAILABLE or UNROUTED (degraded mode): CONTROL_DOCUMENTARY.
* PRELODGED: ADVICE, whatever the verdicts; they are warnings.
* CANCELLED and INVALIDATED: CANCELLED (after the deletions or give-backs were asked).
* RELEASED_AFTER_CONTROL: RELEASE (the office released the goods; risk does not apply again).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gun_hub.model.decision import Decision, DocumentResult, Reason
from gun_hub.model.declaration import Stage
from gun_hub.model.verdicts import Outcome, Verdict
from gun_hub.risk import RiskHit


def _describe(result: DocumentResult) -> str:
    where = f" at {result.authority}" if result.authority else ""
    code = f" (partner code {result.partner_code})" if result.partner_code else ""
    verdict = result.verdict.value.lower().replace("_", " ")
    return (
        f"goods item {result.goods_item}, {result.code} {result.reference}: {verdict}{where}{code}"
    )


def document_reasons(results: Sequence[DocumentResult]) -> list[Reason]:
    """One reason per document that is not plainly acceptable."""
    return [
        Reason(code=result.verdict.value, text=_describe(result))
        for result in results
        if result.verdict not in (Verdict.VALID, Verdict.EXEMPT)
    ]


def outcome_for(stage: Stage, results: Sequence[DocumentResult]) -> Outcome:
    """The outcome the verdicts call for, before any risk targeting."""
    if stage in (Stage.CANCELLED, Stage.INVALIDATED):
        return Outcome.CANCELLED
    if stage is Stage.RELEASED_AFTER_CONTROL:
        # The office released the goods after its control: the hub records it; a write-off
        # the partner could not confirm is replayed by the adapter.
        return Outcome.RELEASE
    if stage is Stage.PRELODGED:
        return Outcome.ADVICE
    if any(result.verdict.is_refusal for result in results):
        return Outcome.REFUSE
    if any(result.verdict.is_degraded for result in results):
        return Outcome.CONTROL_DOCUMENTARY
    return Outcome.RELEASE


def decide(
    *,
    reference: str,
    version: int,
    stage: Stage,
    results: Sequence[DocumentResult],
    decided_at: datetime,
    extra_reasons: Sequence[Reason] = (),
    risk: Sequence[RiskHit] = (),
) -> Decision:
    """The decision for one declaration version, its reasons and per-document results.

    Risk hits only ever raise a RELEASE to a control (the strongest one asked for).
    """
    outcome = outcome_for(stage, results)
    reasons = [*extra_reasons, *document_reasons(results)]
    if outcome is Outcome.CONTROL_DOCUMENTARY:
        reasons.insert(
            0,
            Reason(
                code="DEGRADED_MODE",
                text="some documents could not be checked automatically: check them at the office",
            ),
        )
    if outcome is Outcome.RELEASE and risk and stage is not Stage.RELEASED_AFTER_CONTROL:
        physical = any(hit.action is Outcome.CONTROL_PHYSICAL for hit in risk)
        outcome = Outcome.CONTROL_PHYSICAL if physical else Outcome.CONTROL_DOCUMENTARY
        reasons += [Reason(code=hit.code, text=hit.text) for hit in risk]
    ordered = sorted(results, key=lambda r: (r.goods_item, r.code, r.reference))
    return Decision(
        reference=reference,
        version=version,
        outcome=outcome,
        decided_at=decided_at,
        reasons=tuple(reasons),
        documents=tuple(ordered),
    )


def refuse_unreadable(
    *, reference: str, version: int, reason: Reason, decided_at: datetime
) -> Decision:
    """REFUSE for a declaration that could be identified but not accepted as it is."""
    return Decision(
        reference=reference,
        version=version,
        outcome=Outcome.REFUSE,
        decided_at=decided_at,
        reasons=(reason,),
    )
