"""A stored case that does not open: data about its reference, never a reason to stop
(review stop 40-F, F3; ADR 0022).

The ``cases`` table (and the retired cases' markers) are sealed with the hub's state key;
what is restored from the changelog may not open: random bytes any writer of the topic put
under a reference's key, a value in clear from before state encryption, a sealed value
altered. Retried and re-raised, it crash-looped the agent at every start and held its
partition's commit for good. Such a value is treated as unusable data about its key:

* the event that met it is dead-lettered (``STATE_UNREADABLE``, naming the table, the key
  and why it does not open, never its bytes);
* a declaration is refused (reason ``STATE_UNREADABLE``): the hub cannot tell whether the
  version is new, read again or stale, whether it is its declarant's, or what the earlier
  versions reserved, so it decides nothing on it and sends nothing to the partners; the
  refused case takes the place of what did not open, and the next version is decided as a
  declaration the hub has no history of (intake.py);
* any other event (an answer, a deadline or retention tick) forgets what is stored for the
  reference, unopened: its case, its retention entry and its deadline (``UnreadableCases``).

A value sealed with a state key id the worker does not hold (``StateKeyMissing``) is not
this: the key was rotated by another worker and not deployed here yet. The worker stops,
naming it (runtime/app.py), and its restart with the key reads the record again.
"""

from __future__ import annotations

from typing import Protocol

from gun_contract.dead_letter import ErrorClass, SourcePosition, add_dead_letter
from gun_contract.effects import Effects
from gun_contract.model.decision import Reason
from gun_contract.security.state_cipher import StateKeyMissing, StateUnreadable
from gun_hub import metrics
from gun_hub.domain.case import Case
from gun_hub.pipeline.hub_context import CaseStore, OpenCases

# The dead letter's kind and the refusal's reason code: stable, the desk and the clearance
# system filter on them.
STATE_UNREADABLE = "STATE_UNREADABLE"

# What the clearance system reads in the refusal: the reason, and what to do (the table,
# key id and cause are internal: they are in the dead letter).
REFUSAL_TEXT = (
    "the hub's stored state for this reference could not be read, so this version cannot "
    "be checked against the earlier ones (versions, declarant, reservations): refused, "
    "and that state discarded. Send a new version: it is decided as a declaration the hub "
    "has no history of. Reservations the earlier versions made are no longer known to the "
    "hub: the hub's operators should have them checked with the authorities (the dead "
    "letter STATE_UNREADABLE of this reference says why the state did not open)"
)


def read_case(cases: CaseStore, reference: str) -> Case | StateUnreadable | None:
    """The case stored for ``reference``; None when there is none; the
    ``StateUnreadable`` saying why what is stored does not open. A ``StateKeyMissing`` is
    raised: it is no fault of the value (the worker stops on it)."""
    try:
        stored = cases.get(reference.encode())
    except StateKeyMissing:
        raise
    except StateUnreadable as unreadable:
        return unreadable
    return Case.from_bytes(stored) if stored is not None else None


def reference_of(unreadable: StateUnreadable) -> str:
    return unreadable.key.decode("utf-8", errors="replace")


def dead_letter_unreadable(
    outbox: Effects,
    dlq: str,
    data: bytes,
    source: SourcePosition,
    component: str,
    unreadable: StateUnreadable,
    then: str,
) -> None:
    """The record read at ``source`` dead-lettered for the stored value that did not
    open: where it is and why (the exception's message never holds the value), and
    ``then``, what the hub did about it."""
    metrics.DEAD_LETTERS.labels(kind=STATE_UNREADABLE).inc()
    add_dead_letter(
        outbox,
        dlq,
        data,
        error_class=ErrorClass.PERMANENT,
        kind=STATE_UNREADABLE,
        reason=f"{unreadable}; {then}",
        source=source,
        component=component,
        reference=reference_of(unreadable) or None,
    )


class _Discards(Protocol):
    def discard(self, key: bytes) -> None: ...


class UnreadableCases:
    """Forgets what is stored for a reference whose case (or marker) does not open."""

    # What a dead letter says of it once forgotten.
    FORGOTTEN = (
        "what was stored for the reference is forgotten: its next version is decided as a "
        "declaration the hub has no history of (reservations earlier versions made are no "
        "longer known to the hub: have them checked with the authorities)"
    )

    def __init__(self, cases: _Discards, open_cases: OpenCases) -> None:
        self._cases = cases
        self._open_cases = open_cases

    def forget(self, unreadable: StateUnreadable) -> None:
        """The case, its retention entry and its deadline, removed unopened: no later
        event meets the value again, and the deadline timer no longer ticks it."""
        self._cases.discard(unreadable.key)
        self._open_cases.pop(unreadable.key, None)


REFUSAL = Reason(code=STATE_UNREADABLE, text=REFUSAL_TEXT)
