"""A partner's coded answers map to verdicts; anything unknown is an error, never a pass."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.base.certex import (
    CLEARANCE_VERDICTS,
    REFUSAL_VERDICTS,
    PartnerUnavailable,
    _map_answer,
)
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Verdict


def test_every_certex_refusal_code_has_a_verdict_and_none_is_valid() -> None:
    assert sorted(REFUSAL_VERDICTS) == [f"{n:02d}" for n in range(1, 12)]
    assert Verdict.VALID not in REFUSAL_VERDICTS.values()


@pytest.mark.parametrize(("code", "verdict"), sorted(REFUSAL_VERDICTS.items()))
def test_a_refusal_keeps_the_partners_code(code: str, verdict: Verdict) -> None:
    assert _map_answer(Operation.RESERVE, 200, {"result": "REFUSED", "code": code}) == (
        verdict,
        code,
        None,
    )


def test_write_off_outcomes_cover_codes_01_to_05() -> None:
    for operation in (Operation.WRITE_OFF, Operation.DELETE):
        assert sorted(CLEARANCE_VERDICTS[operation]) == ["01", "02", "03", "04", "05"]


@pytest.mark.parametrize(
    ("status", "payload"),
    [
        (200, {"result": "REFUSED", "code": "12"}),
        (200, {"result": "REFUSED"}),
        (200, {"result": "MAYBE"}),
        (200, {}),
        (404, {"error": "no such route"}),
        (418, {"result": "ACCEPTED"}),
    ],
)
def test_an_answer_the_adapter_does_not_know_is_unavailable_never_a_pass(
    status: int, payload: dict[str, Any]
) -> None:
    with pytest.raises(PartnerUnavailable):
        _map_answer(Operation.RESERVE, status, payload)


def test_an_unknown_write_off_outcome_is_unavailable() -> None:
    with pytest.raises(PartnerUnavailable):
        _map_answer(Operation.WRITE_OFF, 200, {"result": "DONE", "code": "09"})


FOLLOW_UPS = (Operation.WRITE_OFF, Operation.DELETE, Operation.GIVE_BACK)


@pytest.mark.parametrize("operation", FOLLOW_UPS)
@pytest.mark.parametrize("status", [400, 409, 410, 413, 422])
def test_a_follow_up_the_partner_rejects_is_a_definitive_refusal_not_an_outage(
    operation: Operation, status: int
) -> None:
    """A write-off, deletion or give-back the partner rejects (a 4xx: it read the call
    and will not apply it as sent) is not an outage: kept as UNAVAILABLE it was replayed
    every two seconds for ever, answered FOLLOW_UP_PENDING, and held its partition's
    commit (found by review in stop 30). It ends as a refusal that names the rejection:
    the hub records FOLLOW_UP_FAILED, for operations to look at."""
    verdict, code, detail = _map_answer(operation, status, {"error": "body does not match"})
    assert (verdict, code) == (
        Verdict.MISMATCH,
        f"HTTP{status}",
    )  # decision.xsd PartnerCodeType (stop 36)
    assert detail is not None
    assert f"rejected the call (HTTP {status})" in detail


@pytest.mark.parametrize("operation", FOLLOW_UPS)
@pytest.mark.parametrize("status", [401, 403, 407, 408, 421, 423, 425, 429])
def test_a_follow_up_the_partner_asks_to_send_again_later_stays_an_outage(
    operation: Operation, status: int
) -> None:
    """Timeout, too early, too many requests, locked, and the statuses of an access or a
    route to mend on the adapter's side (credentials expired or rotated, a proxy that
    wants its own, a misdirected request): the partner may take it later, replayed once
    mended. Taken for rejections, every follow-up of a credentials rotation would have
    ended unapplied for good (found by review in stop 31)."""
    with pytest.raises(PartnerUnavailable):
        _map_answer(operation, status, {"error": "slow down"})


@pytest.mark.parametrize("operation", [Operation.CHECK, Operation.RESERVE])
def test_a_check_or_reservation_the_partner_rejects_is_unavailable_never_a_refusal(
    operation: Operation,
) -> None:
    """The declaration is not refused for a call the partner would not read: degraded
    mode (documentary control), as for any answer the adapter cannot use."""
    with pytest.raises(PartnerUnavailable, match="rejected the call"):
        _map_answer(operation, 422, {"error": "body does not match"})
