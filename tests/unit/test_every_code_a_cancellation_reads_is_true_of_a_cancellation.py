"""Review of stop 59's cancellation texts (reasons.py ``_ON_CANCELLATION``): docs/decisions.md
now says "A code's text is true of every outcome it is given on", and the change gives
UNAVAILABLE and DEADLINE texts of their own on a CANCELLED decision. The other codes a
CANCELLED decision carries keep the texts of a lodging:

* ``UNROUTED``: a cancelled version quoting a document no administration checks (decide.py
  keeps a document with no authority among those it explains at a follow-up stage) reads
  "it is checked at the customs office; make sure the code is the right one";
* a deletion refused (``NOT_FOUND``: the partner holds no such reservation; ``ALREADY_USED``:
  CERTEX's 03 on a deletion, adapters/base/certex.py) reads "lodge an amended declaration",
  "quote a document that still has a balance";
* a give-back refused (``MISMATCH``: CERTEX's 02 or 05 on a give-back, the partner's ledger
  disagreeing) on an invalidation reads "correct the declaration".

Each is advice for a declaration to lodge again, given to a trader whose declaration is
cancelled (or invalidated by the office): nothing to amend, nothing to quote.
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
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_pipeline import SOURCE, Hub
from tests.unit.test_rollout_modes import REF

LATER = SourcePosition(SOURCE.topic, SOURCE.partition, SOURCE.offset + 1)


def tick(hub: Hub, version: int) -> Effects:
    hub.now += timedelta(seconds=31)
    return hub.deadlines.handle(REF, version, SourcePosition(hub.topics.deadlines, 0, version))


def with_an_unrouted_document(version: int = 1, stage: Stage = Stage.LODGED) -> bytes:
    """A sanitary certificate (DGAL) and a FLEGT licence no administration checks."""
    documents = (document("N853", "CHEDP-1"), document("C690", "FLEGT-1", None, None))
    return declaration_xml(version=version, stage=stage, items=(goods_item(1, documents),))


def cancelled_quoting_an_unrouted_document(hub: Hub) -> list[Effects]:
    """Controlled for the unrouted licence, then cancelled: DGAL deletes its reservation."""
    sent = hub.intake.handle(with_an_unrouted_document(), SOURCE)
    controlled = hub.answer(sent, "dgal", Verdict.VALID)
    cancelled = hub.intake.handle(with_an_unrouted_document(2, Stage.CANCELLED), LATER)
    return [sent, controlled, cancelled, hub.answer(cancelled, "dgal", Verdict.VALID)]


def cancelled_deletion_refused(verdict: Verdict) -> Callable[[Hub], list[Effects]]:
    def story(hub: Hub) -> list[Effects]:
        """Controlled for DGAL's silence, then cancelled: DGAL refuses the deletion."""
        sent = hub.intake.handle(declaration_xml(), SOURCE)
        controlled = tick(hub, 1)
        cancelled = hub.intake.handle(declaration_xml(version=2, stage=Stage.CANCELLED), LATER)
        return [sent, controlled, cancelled, hub.answer(cancelled, "dgal", verdict)]

    return story


def invalidated_give_back_refused(hub: Hub) -> list[Effects]:
    """Released and written off, then invalidated by the office: DGAL's ledger disagrees
    with the give-back."""
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    released = hub.answer(sent, "dgal", Verdict.VALID)
    invalidated = hub.intake.handle(declaration_xml(version=2, stage=Stage.INVALIDATED), LATER)
    return [sent, released, invalidated, hub.answer(invalidated, "dgal", Verdict.MISMATCH)]


@dataclass(frozen=True)
class Case:
    code: str
    story: Callable[[Hub], list[Effects]]
    # What the text says that is untrue of a cancelled declaration, in each language.
    en: tuple[str, ...]
    fr: tuple[str, ...]


CASES = (
    Case(
        "UNROUTED",
        cancelled_quoting_an_unrouted_document,
        ("checked at the customs office", "make sure the code is the right one"),
        ("contrôlé au bureau de douane", "vérifiez que le code est le bon"),
    ),
    Case(
        "NOT_FOUND",
        cancelled_deletion_refused(Verdict.NOT_FOUND),
        ("lodge an amended declaration",),
        ("déclaration rectificative",),
    ),
    Case(
        "ALREADY_USED",
        cancelled_deletion_refused(Verdict.ALREADY_USED),
        ("quote a document that still has a balance",),
        ("citez un document qui a encore un solde",),
    ),
    Case(
        "MISMATCH",
        invalidated_give_back_refused,
        ("correct the declaration",),
        ("corrigez la déclaration",),
    ),
)


@pytest.mark.parametrize("case", CASES, ids=[c.code for c in CASES])
def test_every_code_a_cancellation_reads_is_true_of_a_cancellation(
    routing_table: RoutingTable, keys_dir: Path, case: Case
) -> None:
    hub = Hub(routing_table, keys_dir)
    story = case.story(hub)
    assert [d.outcome for d in hub.decision_objects(story[-1])] == [Outcome.CANCELLED]
    history = [s.model_dump(mode="json") for o in story for s in hub.statuses(o)]
    seen = trader_status(REF, history, frozenset())
    assert seen["outcome"] == Outcome.CANCELLED.value
    reasons = {r["code"]: r for r in seen["reasons"]}
    text = reasons[case.code]
    said = [w for w in case.en if w in text["en"]] + [w for w in case.fr if w in text["fr"]]
    assert said == [], (
        f"{case.code} on a cancellation tells the trader {said!r}: advice for a declaration "
        "to lodge again, of one that is cancelled"
    )
