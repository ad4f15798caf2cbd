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

So the lane tells both cases: a :class:`NotPublished` notice, in the lane's transaction,
on the hub's deadlines topic at the partition each decision came from (its outbox
record's ``gun.decision.origin``), sealed with the hub's state key as the takeover notices
are (:data:`~gun_hub.pipeline.takeover.NOTICE_STATE`), naming the partition whose
decision was published and its outcome when the lane knows it (it published it since it
took the partition; the decisions it reads back at a takeover are sealed to the
clearance system). Each partition's deadlines agent hands it to ``Takeover`` (takeover.py
``_follow_the_published``):

* the reference is split: every later version read on either partition tells the other
  partitions (``Case.told_others``), so the office's result of a control, or an
  invalidation, read on one partition reaches the case the other holds;
* a later version read there before the notice (the notice waited behind the deadlines
  agent, or the partition was behind on its declarations) tells the others then, if it
  did not;
* the case whose control was not published follows the outcome that was: after a
  release it writes off, after a refusal it deletes, what it holds (under its own
  version: the same idempotency keys as the published case's follow-ups of the same
  documents, which the partners take once), holds nothing any more, waits for no result
  and retires. Beside a published control, or an outcome the lane does not know, it
  keeps holding, and is reported overdue if no result comes: operations are told rather
  than a reservation left at a partner unsaid. Read again, the notice sends those
  follow-ups again (a crash before its offset was committed).

What it does not undo (docs/decisions.md, "One reference on several partitions"): a case
whose release or refusal was not published has sent its write-offs or deletions already,
as it decided; the control published elsewhere then holds what the partner no longer
has. Holding every follow-up until publication would cost every release a round trip
through the publisher; the lasting fix is one case per reference (ADR 0028).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gun_contract.model.verdicts import Outcome

# The field that tells this notice from a takeover notice (``superseded_by``).
KEY = "not_published"


@dataclass(frozen=True, slots=True)
class NotPublished:
    """Of ``version``, the decision the reference's case on ``published_from`` made was
    published, with ``published_outcome`` (None: not known to the lane); told to that
    partition and to the one whose decision was not."""

    version: int
    published_from: int
    published_outcome: Outcome | None = None

    def to_bytes(self) -> bytes:
        fields: dict[str, Any] = {KEY: self.version, "published_from": self.published_from}
        if self.published_outcome is not None:
            fields["published_outcome"] = self.published_outcome.value
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> NotPublished:
        """``ValueError`` naming the notice for fields that do not read as one."""
        version, published_from = fields.get(KEY), fields.get("published_from")
        outcome = fields.get("published_outcome")
        if (
            type(version) is not int
            or version < 1
            or type(published_from) is not int
            or published_from < 0
            or (outcome is not None and outcome not in Outcome.__members__)
        ):
            raise ValueError(
                "a notice of a decision not published must name its version >= 1 "
                "(not_published), the partition whose decision was (published_from) and "
                "that decision's outcome, if any (published_outcome)"
            )
        return cls(version, published_from, None if outcome is None else Outcome(outcome))
