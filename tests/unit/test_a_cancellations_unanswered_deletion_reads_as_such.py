"""What a cancellation whose deletion went unanswered tells the trader is about the
deletion, not a check (stop 58's open item: "UNAVAILABLE's and DEADLINE's texts fit a
cancellation's unanswered deletion poorly").

A cancelled version asks each partner to delete what the declaration reserved
(pipeline/intake.py); a partner silent past the deadline gives its document UNAVAILABLE
and the decision DEADLINE (pipeline/deadlines.py), and the decision is CANCELLED all the
same. The trader's lookup explains each code (reasons.py ``explain_codes``): the texts
said the document "was not checked automatically" and to "keep it ready for the customs
office", which a cancelled declaration has no use for. On a cancellation they say what
is true: the administration has not confirmed the reservation's release, and the
cancellation stands.
"""

from __future__ import annotations

from pathlib import Path

from gun_contract.effects import Effects
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.reasons import explain_codes
from gun_hub.domain.routing import RoutingTable
from gun_hub.web.redaction import trader_status
from tests.unit.test_pipeline import Hub
from tests.unit.test_rollout_modes import REF
from tests.unit.test_the_deadline_reasons_text_is_true_of_every_outcome_it_is_given_on import (
    cancellation,
    documentary_control,
)


def _reasons_read_by_the_trader(hub: Hub, story: list[Effects]) -> dict[str, dict[str, str]]:
    history = [s.model_dump(mode="json") for o in story for s in hub.statuses(o)]
    seen = trader_status(REF, history, frozenset())
    return {r["code"]: r for r in seen["reasons"]}


def test_a_cancellations_silent_partner_reads_as_a_deletion_not_confirmed(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    story = cancellation(hub)
    assert [d.outcome for d in hub.decision_objects(story[-1])] == [Outcome.CANCELLED]
    reasons = _reasons_read_by_the_trader(hub, story)
    for code in ("UNAVAILABLE", "DEADLINE"):
        text = reasons[code]
        assert "did not answer" in text["en"]
        assert "n'a pas répondu" in text["fr"]
        for said in ("not checked", "customs office", "Keep it ready"):
            assert said not in text["en"], f"{code} on a cancellation says {said!r}"
        for said in ("contrôlé", "bureau de douane", "Tenez-le"):
            assert said not in text["fr"], f"{code} on a cancellation says {said!r}"
        assert "reservation" in text["en"]
        assert "réservation" in text["fr"]
        assert "cancellation stands" in text["en"]
        assert "annulation" in text["fr"]


def test_a_control_for_a_silent_partner_keeps_its_texts(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """The texts of a check stay on every other outcome (here degraded mode)."""
    hub = Hub(routing_table, keys_dir)
    story = documentary_control(hub)
    reasons = _reasons_read_by_the_trader(hub, story)
    assert reasons["UNAVAILABLE"] == explain_codes(["UNAVAILABLE"])[0]
    assert reasons["DEADLINE"] == explain_codes(["DEADLINE"])[0]
    assert "not checked" in reasons["UNAVAILABLE"]["en"]
