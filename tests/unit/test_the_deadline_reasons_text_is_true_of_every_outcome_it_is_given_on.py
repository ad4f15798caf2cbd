"""What the DEADLINE reason tells the trader is true of every outcome it is given on.

An administration silent past the deadline (pipeline/deadlines.py) gives the decision a
``DEADLINE`` reason, whatever the outcome the other answers, the stage and the risk rules
make: a documentary control (degraded mode), a physical control (a risk rule), a refusal
(another authority refused: a refusal is certain, silence is not), advice (a pre-lodged
version: nothing is checked for good), a cancellation (a cancelled or invalidated version
whose deletion went unanswered), a release (the office released the goods it had held:
the write-off went unanswered). The trader reads one text per code, in French and English
(reasons.py, ``explain_codes``). It said "the documents are checked at the customs office
instead" on all of them: true of a control, false of a refusal, advice, a cancellation
and a release (a review of degraded mode, advice). Like UNAVAILABLE's, it must say what
is true of each, and leave what follows for the goods to the outcome and the other
reasons.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.web.redaction import trader_status
from tests.builders import declaration_xml
from tests.unit.test_pipeline import SOURCE, Hub
from tests.unit.test_risk_targeting_survives_degraded_mode import RULES, live_animals
from tests.unit.test_rollout_modes import REF, two_authorities

LATER = SourcePosition(SOURCE.topic, SOURCE.partition, SOURCE.offset + 1)


@dataclass(frozen=True)
class Claim:
    """Something a text may say of the goods or the documents, in each language, and the
    outcomes it is true of."""

    what: str
    en: tuple[str, ...]
    fr: tuple[str, ...]
    true_of: frozenset[Outcome]


CONTROLS = frozenset({Outcome.CONTROL_DOCUMENTARY, Outcome.CONTROL_PHYSICAL})
CLAIMS = (
    Claim(
        "the documents are checked at the customs office (instead)",
        ("checked at the customs office", "documentary control", "instead"),
        ("contrôlés au bureau", "contrôle documentaire", "au lieu"),
        CONTROLS,
    ),
    Claim(
        "the goods are held",
        ("held", "go to control", "present them"),
        ("retenues", "passent en contrôle", "présentez-les"),
        CONTROLS,
    ),
    Claim(
        "the goods are released",
        ("released", "does not stop", "not held"),
        ("libér", "n'arrête pas", "pas retenues"),
        frozenset({Outcome.RELEASE}),
    ),
    Claim("the goods are refused", ("refus",), ("refus",), frozenset({Outcome.REFUSE})),
    Claim("the declaration is cancelled", ("cancel",), ("annul",), frozenset({Outcome.CANCELLED})),
    Claim(
        "the check is advice only",
        ("advice", "advisory", "warning"),
        ("indicati", "avertissement"),
        frozenset({Outcome.ADVICE}),
    ),
)


def tick(hub: Hub, version: int) -> Effects:
    hub.now += timedelta(seconds=31)
    return hub.deadlines.handle(REF, version, SourcePosition(hub.topics.deadlines, 0, version))


def documentary_control(hub: Hub) -> list[Effects]:
    """DGAL silent: degraded mode."""
    return [hub.intake.handle(declaration_xml(), SOURCE), tick(hub, 1)]


def physical_control(hub: Hub) -> list[Effects]:
    """DGAL silent about live animals, which a risk rule sends to a physical control."""
    return [hub.intake.handle(live_animals(), SOURCE), tick(hub, 1)]


def refusal(hub: Hub) -> list[Effects]:
    """DGAL refuses its CHED, CITES stays silent about its permit."""
    sent = hub.intake.handle(two_authorities(), SOURCE)
    return [sent, hub.answer(sent, "dgal", Verdict.QUANTITY_INSUFFICIENT), tick(hub, 1)]


def advice(hub: Hub) -> list[Effects]:
    """A pre-lodged version, DGAL silent."""
    return [hub.intake.handle(declaration_xml(stage=Stage.PRELODGED), SOURCE), tick(hub, 1)]


def cancellation(hub: Hub) -> list[Effects]:
    """Controlled for DGAL's silence, then cancelled: the deletion goes unanswered."""
    cancelled = declaration_xml(version=2, stage=Stage.CANCELLED)
    return [*documentary_control(hub), hub.intake.handle(cancelled, LATER), tick(hub, 2)]


def release_after_control(hub: Hub) -> list[Effects]:
    """Controlled for DGAL's silence, then released by the office: the write-off goes
    unanswered."""
    released = declaration_xml(version=2, stage=Stage.RELEASED_AFTER_CONTROL)
    return [*documentary_control(hub), hub.intake.handle(released, LATER), tick(hub, 2)]


OUTCOMES: dict[Outcome, Callable[[Hub], list[Effects]]] = {
    Outcome.CONTROL_DOCUMENTARY: documentary_control,
    Outcome.CONTROL_PHYSICAL: physical_control,
    Outcome.REFUSE: refusal,
    Outcome.ADVICE: advice,
    Outcome.CANCELLED: cancellation,
    Outcome.RELEASE: release_after_control,
}


def deadline_read_by_the_trader(
    routing_table: RoutingTable, keys_dir: Path, outcome: Outcome
) -> dict[str, str]:
    """The DEADLINE reason of the decision ``outcome``'s story ends on, as the trader
    reads it (no confidential authority takes part)."""
    hub = Hub(routing_table, keys_dir, risk_rules=RULES)
    outboxes = OUTCOMES[outcome](hub)
    last = hub.decision_objects(outboxes[-1])
    assert [(d.outcome, "DEADLINE" in {r.code for r in d.reasons}) for d in last] == [
        (outcome, True)
    ]
    history = [s.model_dump(mode="json") for o in outboxes for s in hub.statuses(o)]
    seen = trader_status(REF, history, frozenset())
    assert seen["outcome"] == outcome.value
    deadline: list[dict[str, str]] = [r for r in seen["reasons"] if r["code"] == "DEADLINE"]
    [reason] = deadline
    return reason


@pytest.mark.parametrize("outcome", OUTCOMES, ids=[o.value for o in OUTCOMES])
def test_the_deadline_reasons_text_is_true_of_every_outcome_it_is_given_on(
    routing_table: RoutingTable, keys_dir: Path, outcome: Outcome
) -> None:
    deadline = deadline_read_by_the_trader(routing_table, keys_dir, outcome)
    # What it is about: an administration that did not answer in time.
    assert "did not answer" in deadline["en"]
    assert "n'a pas répondu" in deadline["fr"]
    false_here = [claim for claim in CLAIMS if outcome not in claim.true_of]
    said = [
        f"{language}: {claim.what} ({words!r})"
        for claim in false_here
        for language in ("en", "fr")
        for words in getattr(claim, language)
        if words in deadline[language]
    ]
    assert said == [], f"DEADLINE's text on {outcome.value} says what is false"
