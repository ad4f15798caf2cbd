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

SET_BY_CUSTOMS = frozenset({Stage.RELEASED_AFTER_CONTROL, Stage.INVALIDATED})
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
