"""Takeover: a later version read on another partition takes over what an earlier held.

The clearance system's producers choose partitions (contract section 2) and cases are
kept per partition (ADR 0005), so the versions of one reference may be read on two
partitions, each keeping a case of its own. A version read where the previous one was
replaces that case (intake.py ``_supersede``); one read elsewhere did not, and the
earlier case went on holding: a documentary control on partition 0 whose
RELEASED_AFTER_CONTROL came on partition 1 kept its reservations "for the control",
was reported CONTROL_RESULT_OVERDUE to operations a week later although the office had
released the goods, and never retired (outside audit of stop 50, F1).

So a version whose earlier versions its partition did not see (its first there above 1,
or a gap in the numbers: versions read elsewhere meanwhile) sends a **notice** to every
other partition of the hub's deadlines topic, keyed by reference (``notices``). Each
partition's deadlines agent hands it here, in event context (only an event may write the
tables), and the case of a lower version of that reference, if the partition holds one,
is taken over as if the version had arrived there:

* undecided, it is decided REFUSE, SUPERSEDED and announced, as ``_supersede`` does;
* decided and kept for a control (``lifecycle.kept_for_control``), it is marked
  ``taken_over_by``: it holds nothing any more (the later version's case wrote off,
  deleted or restated what it was quoted), waits for no control's result, and retires
  like any finalised case; a status ``TAKEN_OVER_BY_LATER_VERSION`` says where;
* anything else (a release or refusal whose follow-ups are sent, a retention marker, the
  same or a higher version, no case) is left as it is.

What the later version's partition does not know it cannot follow up: it is quoted what
the declaration quotes now, so a document the earlier version reserved and the later one
no longer quotes is left to the partner's version guard (``docs/decisions.md``, "One
reference on several partitions"). A notice costs one record per other partition, sent
only for such a version (every version of a declaration sent to one partition: none),
and again when its record is read again (the crash may have lost them; a notice is
idempotent).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.untrusted_json import parse_untrusted
from gun_hub.domain.case import Case
from gun_hub.domain.decide import refuse_superseded
from gun_hub.domain.lifecycle import kept_for_control
from gun_hub.domain.status_events import StatusKind
from gun_hub.pipeline.hub_context import CaseStore, HubContext

_FIELD = "superseded_by"


def is_notice(value: bytes) -> bool:
    """Whether a deadlines-topic value is a notice (a tick's is a number or a word)."""
    return value.startswith(b"{")


def superseded_notice(version: int, read_at: str) -> bytes:
    """The notice of ``version`` read at ``read_at`` (a record's position)."""
    return json.dumps({_FIELD: version, "read_at": read_at}, separators=(",", ":")).encode()


def read_notice(value: bytes) -> tuple[int, str]:
    """(version, where it was read) of a notice; ``ValueError`` naming it otherwise."""
    try:
        fields: Any = parse_untrusted(value)
    except ValueError as err:
        raise ValueError(f"a takeover notice that is not JSON: {err}") from None
    version = fields.get(_FIELD) if isinstance(fields, dict) else None
    read_at = fields.get("read_at", "") if isinstance(fields, dict) else ""
    if type(version) is not int or version < 1 or not isinstance(read_at, str):
        raise ValueError(
            f"a takeover notice must be {{{_FIELD!r}: a version >= 1, 'read_at': a position}}"
        )
    return version, read_at


def tells_other_partitions(version: int, known: Case | None) -> bool:
    """Whether a new ``version`` may supersede a case on another partition: versions
    below it were read elsewhere (or forgotten) if this partition knows none of them, or
    not the one just below."""
    return version > (1 if known is None else known.version + 1)


def notices(
    context: HubContext, reference: str, version: int, source: SourcePosition
) -> Iterator[tuple[str, bytes, bytes, int]]:
    """(topic, key, value, partition) of the notice to each other partition: every hub
    topic has the declarations' partition count (ADR 0005)."""
    value = superseded_notice(version, source.describe())
    for partition in range(context.outbox_partitions):
        if partition != source.partition:
            yield context.topics.deadlines, reference.encode(), value, partition


class Takeover:
    """Handles the notices that reach one partition."""

    def __init__(self, context: HubContext, cases: CaseStore) -> None:
        self._ctx = context
        self._cases = cases

    def handle(self, reference: str, value: bytes, source: SourcePosition) -> Effects:
        by_version, read_at = read_notice(value)
        outbox = Effects()
        key = reference.encode()
        stored = self._cases.get(key)
        if stored is None:
            return outbox
        case = Case.from_bytes(stored)
        if case.version >= by_version or case.taken_over_by is not None:
            return outbox
        ctx = self._ctx
        if not case.decided:
            ctx.emit_status(
                outbox,
                reference,
                case.version,
                StatusKind.SUPERSEDED,
                f"superseded by version {by_version} before a decision (read at {read_at})",
            )
            decision = refuse_superseded(
                reference=reference,
                version=case.version,
                by_version=by_version,
                decided_at=ctx.clock(),
            )
            superseded = case.superseded(by_version, decision)
            superseded.taken_over_by = by_version
            ctx.open_cases.pop(key, None)  # its deadline: nothing waits any more
            ctx.announce(outbox, superseded, source.partition)
            ctx.store_case(self._cases, superseded)
            return outbox
        if not kept_for_control(case):
            return outbox
        case.taken_over_by = by_version
        ctx.open_cases.pop(key, None)  # the control's report date: its result came
        assert case.decision is not None  # noqa: S101 - kept for a control: decided
        ctx.emit_status(
            outbox,
            reference,
            case.version,
            StatusKind.TAKEN_OVER_BY_LATER_VERSION,
            f"what the {case.decision.outcome.value} kept is followed up by version "
            f"{by_version}, read at {read_at}",
        )
        ctx.store_case(self._cases, case)
        return outbox
