"""A shadow authority that stays silent past the deadline reads, in the decision and to the
trader, as an authority not connected: its silence is no reason for the control.

docs/rollout.md: an authority in shadow mode is asked a CHECK, its answers "do not decide",
and the decision is taken "as if off" (its documents UNROUTED, AUTHORITY_NOT_CONNECTED).
It is awaited like any other up to the deadline (a slow pilot delays the decision). When
it stays silent, the deadline (pipeline/deadlines.py) named it all the same: the decision
said ``DEADLINE: no answer from cites within 30s`` beside AUTHORITY_NOT_CONNECTED, and the
trader's history read ``DEADLINE_PASSED: no answer from cites within 30s``, then a
control decided ``DEADLINE; AUTHORITY_NOT_CONNECTED`` (reasons.py: DEADLINE told the
trader "an administration did not answer within the time allowed: the documents are
checked at the customs office instead" then). The control comes from the authority not being
connected, whatever it answers: the same declaration with the authority off reads
AUTHORITY_NOT_CONNECTED alone. An enforced authority silent beside it is named alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gun_contract.effects import Effects
from gun_contract.model.decision import Decision
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.decide import DEGRADED_MODE
from gun_hub.domain.rollout import AUTHORITY_NOT_CONNECTED, RolloutMode
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.web.redaction import trader_history
from tests.unit.test_a_decision_without_a_partner_answer_is_counted_degraded import degraded
from tests.unit.test_pipeline import SOURCE, Hub
from tests.unit.test_rollout_modes import OFFICE, facts, setting, two_authorities
from tests.unit.test_the_deadline_reasons_text_is_true_of_every_outcome_it_is_given_on import tick

CONFIDENTIAL = frozenset({"dga"})


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


def trader_reads(hub: Hub, outboxes: list[Effects]) -> list[dict[str, Any]]:
    history = [s.model_dump(mode="json") for o in outboxes for s in hub.statuses(o)]
    return trader_history(history, CONFIDENTIAL)


def decided_detail(seen: list[dict[str, Any]]) -> list[str]:
    return [e["detail"] for e in seen if e["kind"] == StatusKind.DECIDED.value]


def decided_with_cites(
    routing_table: RoutingTable, keys_dir: Path, mode: RolloutMode
) -> tuple[Decision, list[dict[str, Any]]]:
    """DGAL (enforced) answers VALID; CITES, in ``mode`` at the office, says nothing (a
    shadow one until the deadline passes): the decision and what the trader reads."""
    hub = Hub(routing_table, keys_dir)
    hub.rollout.apply(setting("cites", mode, OFFICE))
    outboxes = [hub.intake.handle(two_authorities(), SOURCE)]
    outboxes.append(hub.answer(outboxes[0], "dgal", Verdict.VALID))
    if mode is RolloutMode.SHADOW:
        assert hub.decisions(outboxes[-1]) == []  # a shadow authority is awaited
        outboxes.append(tick(hub, 1))
    [decision] = [d for o in outboxes for d in hub.decision_objects(o)]
    return decision, trader_reads(hub, outboxes)


def test_a_silent_shadow_authority_reads_as_one_not_connected(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    before = degraded("cites")
    shadow, seen_shadow = decided_with_cites(routing_table, keys_dir, RolloutMode.SHADOW)
    off, seen_off = decided_with_cites(routing_table, keys_dir, RolloutMode.OFF)
    assert shadow.outcome is off.outcome is Outcome.CONTROL_DOCUMENTARY
    # The control is the authority not being connected, not its silence: no deadline,
    # no degraded mode, in the decision the clearance system receives ...
    assert [r.code for r in shadow.reasons] == [r.code for r in off.reasons]
    assert [r.code for r in shadow.reasons] == [AUTHORITY_NOT_CONNECTED]
    assert not any("cites" in r.text and "no answer" in r.text for r in shadow.reasons)
    # ... nor in what the trader reads.
    assert StatusKind.DEADLINE_PASSED.value not in {e["kind"] for e in seen_shadow}
    assert decided_detail(seen_shadow) == decided_detail(seen_off)
    assert degraded("cites") == before


def test_what_a_silent_shadow_authority_would_have_decided_is_still_kept(hub: Hub) -> None:
    """Its silence is the pilot's evidence (rollout.md), not the decision's reason."""
    hub.rollout.apply(setting("cites", RolloutMode.SHADOW, OFFICE))
    sent = hub.intake.handle(two_authorities(), SOURCE)
    hub.answer(sent, "dgal", Verdict.VALID)
    ticked = tick(hub, 1)
    [fact] = facts(hub, ticked)
    [use] = [u for u in fact.rollout if u.authority == "cites"]
    assert (use.mode, use.would_decide, use.reasons) == (
        "shadow",
        "CONTROL_DOCUMENTARY",
        [Verdict.UNAVAILABLE.value],
    )


def test_an_enforced_authority_silent_beside_a_silent_shadow_one_is_named_alone(
    hub: Hub,
) -> None:
    hub.rollout.apply(setting("cites", RolloutMode.SHADOW, OFFICE))
    before_cites, before_dgal = degraded("cites"), degraded("dgal")
    hub.intake.handle(two_authorities(), SOURCE)
    ticked = tick(hub, 1)
    [decision] = hub.decision_objects(ticked)
    assert decision.outcome is Outcome.CONTROL_DOCUMENTARY
    assert [r.code for r in decision.reasons] == [
        DEGRADED_MODE,
        "DEADLINE",
        AUTHORITY_NOT_CONNECTED,
        Verdict.UNAVAILABLE.value,
    ]
    [deadline] = [r.text for r in decision.reasons if r.code == "DEADLINE"]
    assert deadline == "no answer from dgal within 30s"
    [passed] = [s.detail for s in hub.statuses(ticked) if s.kind is StatusKind.DEADLINE_PASSED]
    assert passed == "no answer from dgal within 30s"
    assert degraded("dgal") == before_dgal + 1
    assert degraded("cites") == before_cites
