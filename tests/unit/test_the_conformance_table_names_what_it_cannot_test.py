"""The conformance kit's table says what certifying a partner system needs beyond its
scenarios: the partner's idempotency-key lifetime, which takes days to observe
(docs/partner-simulator.md, "How long a key must be remembered")."""

from __future__ import annotations

from adapters.conformance.kit import Outcome, table


def test_the_table_asks_for_the_partners_key_lifetime_after_the_results() -> None:
    printed = table("dgal", [Outcome("valid document", True, 0.4)]).splitlines()

    summary = printed.index("1 passed, 0 failed")
    assert any(
        "idempotency key" in line and "7 days" in line and "30 days" in line
        for line in printed[summary + 1 :]
    )
