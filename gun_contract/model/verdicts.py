"""The coded vocabulary of answers: per-document verdicts and per-declaration outcomes."""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    """What the hub concluded about one quoted document (contract section 4)."""

    VALID = "VALID"
    EXEMPT = "EXEMPT"  # a declared exemption (Y code): recorded, nothing to verify
    NOT_FOUND = "NOT_FOUND"
    INVALID_STATUS = "INVALID_STATUS"
    ALREADY_USED = "ALREADY_USED"
    QUANTITY_INSUFFICIENT = "QUANTITY_INSUFFICIENT"
    MISMATCH = "MISMATCH"
    UNAVAILABLE = "UNAVAILABLE"  # the authority did not answer in time: degraded mode
    UNROUTED = "UNROUTED"  # no authority is configured for this code: degraded mode

    @property
    def is_refusal(self) -> bool:
        """A verdict that makes a lodged declaration unacceptable."""
        return self in _REFUSALS

    @property
    def is_degraded(self) -> bool:
        """A verdict that could not be established automatically: check by hand."""
        return self in (Verdict.UNAVAILABLE, Verdict.UNROUTED)


_REFUSALS = frozenset(
    {
        Verdict.NOT_FOUND,
        Verdict.INVALID_STATUS,
        Verdict.ALREADY_USED,
        Verdict.QUANTITY_INSUFFICIENT,
        Verdict.MISMATCH,
    }
)


class Outcome(StrEnum):
    """The answer to the clearance system for one declaration version."""

    RELEASE = "RELEASE"
    CONTROL_DOCUMENTARY = "CONTROL_DOCUMENTARY"
    CONTROL_PHYSICAL = "CONTROL_PHYSICAL"
    REFUSE = "REFUSE"
    ADVICE = "ADVICE"
    CANCELLED = "CANCELLED"
