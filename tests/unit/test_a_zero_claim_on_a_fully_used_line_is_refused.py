"""A claim of zero on a line that is fully used is not accepted.

The partner simulator refuses a claim that does not state how much it draws (CERTEX
``11``, review stop 36, D7: "the declaration was released and its write-off consumed
nothing, and the same certificate could be quoted without end, even once its line was
fully used"). A claim of ``0`` states a quantity that draws nothing, and the ledger's
only bound is ``wanted > left`` (``partner_sim/ledger.py``, ``evaluate``): 0 is never
more than what is left, so a line fully used by other declarations accepts it, the
declaration is released on a certificate with nothing left, and its write-off consumes
nothing: D7's symptom, through a zero. ``partner_sim/api.py`` bounds the quantity's digits,
not its sign or zero. (The declaration XSD bounds a quantity above zero, so the hub
never sends one: this is the reference partner's own ledger.) Found by review (exactness
of the quantity ledger).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from partner_sim.store import LedgerStore
from tests.unit.test_partner_ledger import REF, TODAY, ched, position


def test_a_zero_claim_on_a_line_other_declarations_used_up_is_refused(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "ledger.sqlite")
    store.load([ched()])
    assert store.reserve(REF, position("DECL-1", quantity="1000"), TODAY) is None
    refusal = store.reserve(REF, position("DECL-2", quantity="0"), TODAY)
    [line] = store.balances(REF)
    assert line.remaining == Decimal(0)
    # Before: None (ACCEPTED), DECL-2 holding 0 on a line with nothing left.
    assert refusal is not None
