"""Every decision made in degraded mode counts for each authority whose answer it lacks,
whatever made the answer missing (review stop 40-PR, PR1).

An adapter whose circuit to a partner that is down is open answers UNAVAILABLE at once:
no deadline passes, so ``gun_hub_deadlines_passed_total`` stays 0 and an alert reading
only it never fires during a whole outage. ``gun_hub_degraded_decisions_total{authority}``
counts the decision either way: an UNAVAILABLE answer, or the deadline passed.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from gun_contract.dead_letter import SourcePosition
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.rollout import RolloutMode
from gun_hub.domain.routing import RoutingTable
from tests.builders import declaration_xml
from tests.unit.test_pipeline import SOURCE, Hub
from tests.unit.test_rollout_modes import OFFICE, setting, two_authorities
from tests.unit.test_versions_and_recovery import REF


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


def degraded(authority: str) -> float:
    value = REGISTRY.get_sample_value("gun_hub_degraded_decisions_total", {"authority": authority})
    return value or 0.0


def deadlines_passed(authority: str) -> float:
    value = REGISTRY.get_sample_value("gun_hub_deadlines_passed_total", {"authority": authority})
    return value or 0.0


def test_an_unavailable_answer_counts_a_degraded_decision_with_no_deadline_passed(
    hub: Hub,
) -> None:
    before, deadlines_before = degraded("dgal"), deadlines_passed("dgal")
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    decided = hub.answer(sent, "dgal", Verdict.UNAVAILABLE)
    assert hub.decisions(decided) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    assert degraded("dgal") == before + 1
    assert deadlines_passed("dgal") == deadlines_before


def test_a_passed_deadline_counts_a_degraded_decision_too(hub: Hub) -> None:
    before = degraded("dgal")
    hub.intake.handle(declaration_xml(), SOURCE)
    hub.now += timedelta(seconds=31)
    ticked = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 0))
    assert hub.decisions(ticked) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    assert degraded("dgal") == before + 1


def test_a_decision_with_every_answer_counts_nothing(hub: Hub) -> None:
    before = degraded("dgal")
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]
    assert degraded("dgal") == before


def decisions(outcome: str) -> float:
    value = REGISTRY.get_sample_value("gun_hub_decisions_total", {"outcome": outcome})
    return value or 0.0


def test_a_decision_announced_again_is_not_counted_again(hub: Hub) -> None:
    """Announced again (its partition revoked while its delivery was on its way, or a
    worker restarted before the broker had it): the same decision, counted once, or
    ``GunHubDegradedDecisions`` fired again for an outage already counted (review of
    stop 47)."""
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    hub.broker_slow = True
    before, made_before = degraded("dgal"), decisions("CONTROL_DOCUMENTARY")
    first = hub.answer(sent, "dgal", Verdict.UNAVAILABLE)
    hub.context.give_up({0})  # the partition revoked (and assigned back)
    again = hub.answer(sent, "dgal", Verdict.UNAVAILABLE)
    assert hub.decisions(first) == hub.decisions(again) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    assert degraded("dgal") == before + 1
    assert decisions("CONTROL_DOCUMENTARY") == made_before + 1


def test_an_advisory_authority_silent_beside_a_degraded_one_is_not_counted_degraded(
    hub: Hub,
) -> None:
    """An authority in advice mode does not make the decision: its silence is no
    degraded decision, even beside an enforced one that is down (a ticket opened
    against the advisory partner otherwise; review of stop 47)."""
    hub.rollout.apply(setting("cites", RolloutMode.ADVICE, OFFICE))
    before_cites, before_dgal = degraded("cites"), degraded("dgal")
    sent = hub.intake.handle(two_authorities(), SOURCE)
    hub.answer(sent, "dgal", Verdict.UNAVAILABLE)
    decided = hub.answer(sent, "cites", Verdict.UNAVAILABLE)
    assert hub.decisions(decided) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    assert degraded("dgal") == before_dgal + 1
    assert degraded("cites") == before_cites
