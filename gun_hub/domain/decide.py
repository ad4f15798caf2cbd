"""Decision rules (contract section 4): pure functions from verdicts to an outcome.

* LODGED: every document VALID or EXEMPT: RELEASE. Any refusal verdict: REFUSE. Otherwise
  any UNAVAILABLE or UNROUTED (degraded mode): CONTROL_DOCUMENTARY.
* Risk targeting (:mod:`gun_hub.domain.risk`), on a LODGED version that is not refused:
  the stronger of the outcome and the control any hit asks for, each hit named. An outage,
  the override or an authority not connected never softens what a rule asks (a rule on
  live animals keeps its physical control); a REFUSE is never weakened.
* The declarant's override (mention 73000 on a goods item, :mod:`gun_hub.domain.override`): a
  refusal it covers no longer refuses the declaration but sends it to documentary
  control, never to release; a refusal it may not cover (war material) still refuses.
* Rollout (:mod:`gun_hub.domain.rollout`): the documents of an authority that is off or in
  shadow at the office are checked there (UNROUTED, AUTHORITY_NOT_CONNECTED); an
  authority in advice mode only warns (ADVISORY_ONLY): its verdicts neither refuse nor
  hold the declaration.
* PRELODGED: ADVICE, whatever the verdicts; they are warnings.
* CANCELLED and INVALIDATED: CANCELLED (after the deletions or give-backs were asked).
* RELEASED_AFTER_CONTROL: RELEASE (the office released the goods; risk does not apply again).
* Any stage, replaced by a higher version before it was decided: REFUSE, SUPERSEDED
  (:func:`refuse_superseded`); the higher version's decision governs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from gun_contract.model.decision import Decision, DocumentResult, Reason
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.override import (
    NO_OVERRIDE,
    OVERRIDE_APPLIED,
    OVERRIDE_NOT_ACCEPTED,
    OverrideReview,
)
from gun_hub.domain.reasons import document_reason_code
from gun_hub.domain.risk import RiskHit
from gun_hub.domain.rollout import ADVISORY_ONLY, AUTHORITY_NOT_CONNECTED, RolloutMode

DEGRADED_MODE = "DEGRADED_MODE"
# A version a higher one replaced before it was decided (contract section 4: exactly one
# decision per version; review stop 40, W4).
SUPERSEDED = "SUPERSEDED"

# The outcomes risk targeting acts on, weakest first: it raises a release or a control to
# the strongest control a hit asks for, and never touches a refusal.
_TARGETED = (Outcome.RELEASE, Outcome.CONTROL_DOCUMENTARY, Outcome.CONTROL_PHYSICAL)


def _describe(result: DocumentResult) -> str:
    where = f" at {result.authority}" if result.authority else ""
    code = f" (partner code {result.partner_code})" if result.partner_code else ""
    verdict = result.verdict.value.lower().replace("_", " ")
    return (
        f"goods item {result.goods_item}, {result.code} {result.reference}: {verdict}{where}{code}"
    )


def _mode(rollout: Mapping[str, RolloutMode], result: DocumentResult) -> RolloutMode:
    if result.authority is None:
        return RolloutMode.ENFORCE
    return rollout.get(result.authority, RolloutMode.ENFORCE)


def counted(
    results: Sequence[DocumentResult], rollout: Mapping[str, RolloutMode]
) -> list[DocumentResult]:
    """The results the outcome is taken on: not those of an authority in advice mode."""
    return [r for r in results if _mode(rollout, r) is not RolloutMode.ADVICE]


def document_reasons(
    results: Sequence[DocumentResult],
    override: OverrideReview = NO_OVERRIDE,
    rollout: Mapping[str, RolloutMode] | None = None,
) -> list[Reason]:
    """One reason per document that is not plainly acceptable, under its stable code
    (gun_hub/domain/reasons.py); each one the override acted on is followed by a reason saying
    so, each one only advisory likewise. The document of an authority not connected at
    the office (off or shadow) gets that reason instead of UNROUTED's."""
    reasons = []
    for result in results:
        if result.verdict in (Verdict.VALID, Verdict.EXEMPT):
            continue
        mode = _mode(rollout or {}, result)
        if mode in (RolloutMode.OFF, RolloutMode.SHADOW):
            reasons.append(
                Reason(
                    code=AUTHORITY_NOT_CONNECTED,
                    text=f"goods item {result.goods_item}, {result.code} {result.reference}: "
                    f"{result.authority} does not check it through the single window at this "
                    "office yet: present it at the office",
                )
            )
            continue
        reasons.append(Reason(code=document_reason_code(result), text=_describe(result)))
        if mode is RolloutMode.ADVICE:
            reasons.append(
                Reason(
                    code=ADVISORY_ONLY,
                    text=f"{_describe(result)}: {result.authority}'s check is advisory at "
                    "this office: it does not stop the goods",
                )
            )
        elif override.is_covered(result):
            reasons.append(
                Reason(
                    code=OVERRIDE_APPLIED,
                    text=f"{_describe(result)}: covered by the declarant's override "
                    "(mention 73000); documentary control instead",
                )
            )
        elif result in override.declined:
            reasons.append(
                Reason(
                    code=OVERRIDE_NOT_ACCEPTED,
                    text=f"{_describe(result)}: the declarant's override (mention 73000) "
                    "cannot cover this refusal",
                )
            )
    return reasons


def outcome_for(
    stage: Stage, results: Sequence[DocumentResult], override: OverrideReview = NO_OVERRIDE
) -> Outcome:
    """The outcome the verdicts call for, before any risk targeting. A result the
    override covers is a reason for documentary control, not a refusal."""
    if stage in (Stage.CANCELLED, Stage.INVALIDATED):
        return Outcome.CANCELLED
    if stage is Stage.RELEASED_AFTER_CONTROL:
        # The office released the goods after its control: the hub records it; a write-off
        # the partner could not confirm is replayed by the adapter.
        return Outcome.RELEASE
    if stage is Stage.PRELODGED:
        return Outcome.ADVICE
    if any(r.verdict.is_refusal and not override.is_covered(r) for r in results):
        return Outcome.REFUSE
    if override.applied or any(result.verdict.is_degraded for result in results):
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
    override: OverrideReview = NO_OVERRIDE,
    rollout: Mapping[str, RolloutMode] | None = None,
) -> Decision:
    """The decision for one declaration version, its reasons and per-document results.

    Risk hits (lodged versions only) raise a RELEASE, or a control that degraded mode, a
    deadline, an authority not connected or the override asked for, to the strongest
    control any hit asks for, and are named; they never weaken a REFUSE (nor name it).
    ``override``: what the declarant's override did
    (:func:`gun_hub.domain.override.review_override`).
    ``rollout``: each authority's mode for this version (none: enforce).
    """
    modes = rollout or {}
    outcome = outcome_for(stage, counted(results, modes), override)
    explained = results
    if stage not in (Stage.LODGED, Stage.PRELODGED):
        # A follow-up stage asks only where something was reserved; the documents of the
        # others need no word (nothing is checked at a cancellation or a release).
        explained = [r for r in results if _mode(modes, r) is RolloutMode.ENFORCE]
    reasons = [*extra_reasons, *document_reasons(explained, override, modes)]
    # Degraded mode is a partner that could not answer, not one that is not connected.
    degraded = any(
        result.verdict.is_degraded and _mode(modes, result) is RolloutMode.ENFORCE
        for result in results
    )
    if outcome is Outcome.CONTROL_DOCUMENTARY and degraded:
        reasons.insert(
            0,
            Reason(
                code=DEGRADED_MODE,
                text="some documents could not be checked automatically: check them at the office",
            ),
        )
    if risk and stage is Stage.LODGED and outcome in _TARGETED:
        asked = [hit.action for hit in risk if hit.action in _TARGETED]
        outcome = max((outcome, *asked), key=_TARGETED.index)
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


def refuse_superseded(
    *, reference: str, version: int, by_version: int, decided_at: datetime
) -> Decision:
    """The decision of a version that ``by_version`` replaced before it was decided.

    REFUSE: the one outcome that says "this version is not released" without saying
    anything of the declaration (CANCELLED would tell the clearance system the declaration
    is cancelled, while its newer version goes on). No document results: the version was
    not decided on its documents (the schema allows none); the newer version's decision
    carries the verdicts that govern."""
    return Decision(
        reference=reference,
        version=version,
        outcome=Outcome.REFUSE,
        decided_at=decided_at,
        reasons=(
            Reason(
                code=SUPERSEDED,
                text=f"superseded by version {by_version} before it was decided: "
                f"version {by_version}'s decision governs",
            ),
        ),
    )
