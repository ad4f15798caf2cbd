"""Which stages a trader may lodge through the single window's gateway.

A trader declares: it pre-lodges, lodges, amends (a higher LODGED version) and withdraws
(CANCELLED) its own declarations. Two stages are the customs office's acts, relayed by
the clearance system (contract section 4): RELEASED_AFTER_CONTROL ("sent by the
clearance system when an office releases goods it had held for a control") and
INVALIDATED (a declaration invalidated after release, its written-off quantities given
back). Believed from a trader, the first released its own goods held for a control, or
with no check at all as a first version (neither refusals nor risk rules apply to it),
and the second gave back at each partner the quantity its released goods had used, to
use it again (found by the authorization sweep of stop 56).
"""

from __future__ import annotations

from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.case import Case

SET_BY_CUSTOMS = frozenset({Stage.RELEASED_AFTER_CONTROL, Stage.INVALIDATED})
# Once customs has told the declarant it will examine the goods, or has released them, the
# declaration is no longer the declarant's to amend (UCC article 173) nor to withdraw
# (article 174): a trader's later version was decided from scratch, a random draw
# included, and a documentary control drawn for version 1 was escaped by lodging the same
# goods again as version 2 (review of stop 56). The office's own act comes through the
# clearance system, which may send any version.
ACTED_ON = frozenset(
    {Outcome.CONTROL_DOCUMENTARY, Outcome.CONTROL_PHYSICAL, Outcome.RELEASE, Outcome.CANCELLED}
)
TRADERS_STAGES = tuple(stage for stage in Stage if stage not in SET_BY_CUSTOMS)


def set_by_customs(stage: Stage) -> bool:
    """Whether only the customs office, through the clearance system, sends ``stage``."""
    return stage in SET_BY_CUSTOMS


def not_the_traders_stage(stage: Stage) -> str:
    """How to say, in a refusal, that ``stage`` is not a trader's to lodge."""
    return (
        f"stage {stage.value} is the customs office's act, sent by the clearance system; "
        f"a trader lodges {', '.join(s.value for s in TRADERS_STAGES)}"
    )


def customs_acted_on(known: Case | None) -> bool:
    """Whether customs acted on ``known``'s declaration: this version of one of the
    office's own stages, decided for a control, released or cancelled, or, undecided, a
    cancellation; or an earlier version so (``Case.customs_acted``, carried). A later
    version is then the office's to send. A trader's version refused (unread, or its case
    not opening) is no act of customs: its declaration stays its declarant's unless an
    earlier one was acted on."""
    if known is None:
        return False
    if known.customs_acted or known.stage in SET_BY_CUSTOMS:
        # The office's own stages come only from the clearance system (a trader's are
        # refused before any case is made): the office acted, whatever the hub made of
        # the version (refused over a case that did not open, told to a partition behind;
        # a trader's version superseded the office's release still being written off:
        # reviews of stop 56).
        return True
    if known.decision is not None:
        return known.decision.outcome in ACTED_ON
    # Undecided, a withdrawal under way; or a retired case's marker (its decision gone,
    # its outcome kept), whose stage and outcome are all a marker of before stop 56 keeps
    # of what was done: a cancellation decided CANCELLED, not a withdrawal refused
    # (REFUSE), which was no act (a review of stop 56).
    return known.stage is Stage.CANCELLED and known.outcome in (None, Outcome.CANCELLED)


def not_the_traders_to_amend(known: Case) -> str:
    """How to say, in a refusal, that ``known``'s declaration is no longer its declarant's
    to amend."""
    version = known.version
    outcome = known.decision.outcome if known.decision is not None else None
    if known.stage in SET_BY_CUSTOMS or known.stage is Stage.CANCELLED:
        acted = f"lodged {known.stage.value}"
    elif outcome is Outcome.RELEASE:
        acted = "released"
    else:
        acted = f"decided {outcome.value if outcome else 'by customs'}"
    return (
        f"version {version} was {acted}: a declaration withdrawn, under a control, released "
        "or in the office's hands is not the declarant's to amend or withdraw (UCC "
        "articles 173, 174); a new declaration takes a new reference, and the office's "
        "release, refusal or invalidation comes through the clearance system"
    )
