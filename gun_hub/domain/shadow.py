"""What an authority in shadow mode would have decided: the pilot's evidence.

The decision of a version is taken without the shadow authorities (rollout.py); beside
it, for each of them, the decision is taken again as if that authority were enforced,
from its recorded answers, and the two are compared. The figures go on the decision's
fact (ops/facts.py) and make the pilot report (``gun-hub rollout report``): per
authority and office, how many declarations it saw, how often it agreed with the
decision taken, and the reasons it gave where it did not.
"""

from __future__ import annotations

from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Verdict
from gun_hub.domain.case import Case
from gun_hub.domain.decide import counted, decide, document_reasons
from gun_hub.domain.override import OverridePolicy, review_override
from gun_hub.domain.rollout import RolloutMode
from gun_hub.ops.facts import RolloutUse


def rollout_uses(case: Case, policy: OverridePolicy) -> list[RolloutUse]:
    """Per authority routed for ``case`` (decided): its mode, and in shadow mode what it
    would have decided and whether that agrees with the decision taken."""
    assert case.decision is not None  # noqa: S101 - called on decided cases only
    if case.stage not in (Stage.LODGED, Stage.PRELODGED):
        return []  # a follow-up stage checks nothing: nothing for the pilot to compare
    uses = []
    for authority, mode in sorted(case.rollout.items()):
        if mode is not RolloutMode.SHADOW:
            uses.append(RolloutUse(authority=authority, mode=mode.value))
            continue
        shadow = [r for r in case.shadow_results if r.authority == authority]
        results = [r for r in case.results if r.authority != authority] + shadow
        modes = {**case.rollout, authority: RolloutMode.ENFORCE}
        would = decide(
            reference=case.reference,
            version=case.version,
            stage=case.stage,
            results=results,
            decided_at=case.decision.decided_at,
            risk=[finding.hit() for finding in case.risk],
            # Advice stays out of the override's review, as in the decision taken
            # (HubContext.override_of): an advisory refusal through it was a control
            # the report said enforcing would keep (review of stop 47).
            override=review_override(
                case.stage, counted(results, modes), case.override_items, policy
            ),
            rollout=modes,
        )
        uses.append(
            RolloutUse(
                authority=authority,
                mode=mode.value,
                would_decide=would.outcome.value,
                agrees=would.outcome is case.decision.outcome,
                # What the authority itself said: the reasons of its own documents.
                reasons=sorted(
                    {
                        reason.code
                        for reason in document_reasons(
                            [r for r in shadow if r.verdict is not Verdict.VALID]
                        )
                    }
                ),
            )
        )
    return uses
