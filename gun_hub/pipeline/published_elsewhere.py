"""A version two partitions' cases decided: the one whose decision was not published
follows the one that was.

The clearance system's producers choose partitions (contract section 2), and a version
sealed twice (two message ids: no replay) may be read on two partitions, whose cases of
the reference each decide it (ADR 0005). Both decisions go to the reference's lane of the
publisher, which publishes the first it reads and drops the other as a duplicate
(runtime/publisher.py). When the two cases decided differently (one released on its
partner's answer, the other, whose answer did not come in time, sent the goods to a
documentary control at its deadline), the case whose control was not published kept its
reservations for a control the clearance system never ordered (it received the
release), reported it CONTROL_RESULT_OVERDUE a week later and never retired (a review of
stop 58).

So the lane tells it: a :class:`NotPublished` notice, in the lane's transaction, on the
hub's deadlines topic at the partition the dropped decision came from (its outbox
record's ``gun.decision.origin``), sealed with the hub's state key as the takeover notices
are (:data:`~gun_hub.pipeline.takeover.NOTICE_STATE`). The deadlines agent hands it to
:func:`follow_the_published`: a case of that version kept for a control holds nothing any
more (``taken_over_by`` its own version: the case that decided the version published
follows up the same documents under the same idempotency keys), waits for no result, and
retires like any finalised case. A later version read there tells the other partitions
(takeover.py ``tells_other_partitions``), so a control's result read here still ends the
control the other partition published. Read again, it finds nothing to do.

What it does not undo (docs/decisions.md, "One reference on several partitions"): a case
whose release or refusal was not published has sent its write-offs or deletions already,
as it decided; the control published elsewhere then holds what the partner no longer
has. Holding every follow-up until publication would cost every release a round trip
through the publisher; the lasting fix is one case per reference.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from gun_contract.effects import Effects
from gun_hub.domain.case import Case
from gun_hub.domain.lifecycle import kept_for_control
from gun_hub.pipeline.hub_context import CaseStore, HubContext

log = logging.getLogger(__name__)

# The field that tells this notice from a takeover notice (``superseded_by``).
KEY = "not_published"


@dataclass(frozen=True, slots=True)
class NotPublished:
    """The decision of ``version`` decided on this partition was not published: the one
    the reference's case on ``published_from`` decided was."""

    version: int
    published_from: int

    def to_bytes(self) -> bytes:
        return json.dumps(
            {KEY: self.version, "published_from": self.published_from}, separators=(",", ":")
        ).encode()

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> NotPublished:
        """``ValueError`` naming the notice for fields that do not read as one."""
        version, published_from = fields.get(KEY), fields.get("published_from")
        if (
            type(version) is not int
            or version < 1
            or type(published_from) is not int
            or published_from < 0
        ):
            raise ValueError(
                "a notice of a decision not published must name its version >= 1 "
                "(not_published) and the partition whose decision was (published_from)"
            )
        return cls(version, published_from)


def follow_the_published(
    context: HubContext, cases: CaseStore, reference: str, notice: NotPublished
) -> Effects:
    """What this partition's case of ``reference`` does on ``notice``, in event context:
    a control of that version holds nothing any more; anything else stays as it is (a
    later version here, a release or refusal followed up already, a retired case)."""
    outbox = Effects()
    stored = cases.get(reference.encode())
    if stored is None:
        return outbox
    case = Case.from_bytes(stored)
    if case.version != notice.version or not kept_for_control(case):
        return outbox
    assert case.decision is not None  # noqa: S101 - kept for a control: decided
    log.info(
        "%s version %d: the %s decided here was not published (the decision of partition "
        "%d's case was): nothing held here for a control",
        reference,
        case.version,
        case.decision.outcome.value,
        notice.published_from,
    )
    case.taken_over_by = case.version
    context.open_cases.pop(reference.encode(), None)  # its report date: nothing waits
    context.store_case(cases, case)
    return outbox
