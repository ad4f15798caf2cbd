"""DGA in advice mode at an office, silent past the deadline (or answering UNAVAILABLE at
once, its partner down): what the trader reads is what it reads of the same declaration
without the war-material licence.

Its silence holds nothing (docs/rollout.md, advice mode), and its document reads
``UNAVAILABLE`` then ``ADVISORY_ONLY`` in the decision. The trader's redaction
(web/redaction.py) leaves out the ``UNAVAILABLE`` a hidden authority alone gave (stop 57)
and ``rollout: dga advice`` from the requests sent, but kept the ``ADVISORY_ONLY`` beside
it: a release read "ADVISORY_ONLY" where the same declaration without the licence reads no
reason at all, and a documentary control gained an ``ADVISORY_ONLY`` no document the
trader sees explains: an administration it never sees named, checking in advice mode,
took part (a review of stop 58, second round). An advisory authority the trader sees keeps
its ``ADVISORY_ONLY`` whoever else is silent.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.rollout import ADVISORY_ONLY, RolloutMode
from gun_hub.domain.routing import RoutingTable
from gun_hub.web.redaction import trader_status
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_pipeline import SOURCE, Hub
from tests.unit.test_rollout_modes import OFFICE, REF, setting

CONFIDENTIAL = frozenset({"dga"})
LICENCE = document("LEMG", "LEMG-FR-2026-0042", 1, "5", "NAR")


def read_by_the_trader(
    routing_table: RoutingTable,
    keys_dir: Path,
    *,
    licence: bool,
    dgal: Verdict | None,
    dga: Verdict | None = None,
    cites: Verdict | bool | None = False,
) -> tuple[str, list[str]]:
    """A CHED (DGAL, enforced), the licence when ``licence`` (DGA in advice mode at the
    office), and a CITES permit (advice mode too) unless ``cites`` is False; each
    authority answers its verdict, None staying silent until the deadline. The outcome
    and the reason codes the trader reads."""
    hub = Hub(routing_table, keys_dir)
    hub.rollout.apply(setting("dga", RolloutMode.ADVICE, OFFICE))
    hub.rollout.apply(setting("cites", RolloutMode.ADVICE, OFFICE))
    documents = (
        document("N853", "CHEDP.FR.2026.0001234", 1, "10"),
        *((document("C638", "CITES-1"),) if cites is not False else ()),
        *((LICENCE,) if licence else ()),
    )
    item = goods_item(1, documents, commodity_code="9301100000")
    outboxes: list[Effects] = [hub.intake.handle(declaration_xml(items=(item,)), SOURCE)]
    answers = {"dgal": dgal}
    if licence:
        answers["dga"] = dga
    if cites is not False:
        answers["cites"] = cites if isinstance(cites, Verdict) else None
    for authority, verdict in answers.items():
        if verdict is not None:
            outboxes.append(hub.answer(outboxes[0], authority, verdict))
    if not [d for o in outboxes for d in hub.decision_objects(o)]:
        hub.now += timedelta(seconds=31)
        outboxes.append(hub.deadlines.handle(REF, 1, SourcePosition(hub.topics.deadlines, 0, 1)))
    [decision] = [d for o in outboxes for d in hub.decision_objects(o)]
    history = [s.model_dump(mode="json") for o in outboxes for s in hub.statuses(o)]
    seen = trader_status(REF, history, CONFIDENTIAL)
    assert seen["outcome"] == decision.outcome.value
    return seen["outcome"], [reason["code"] for reason in seen["reasons"]]


def test_a_release_over_a_silent_advisory_licence_reads_as_one_without_it(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    with_it = read_by_the_trader(routing_table, keys_dir, licence=True, dgal=Verdict.VALID)
    without = read_by_the_trader(routing_table, keys_dir, licence=False, dgal=Verdict.VALID)
    assert without == (Outcome.RELEASE.value, [])
    assert with_it == without


def test_a_licence_answered_unavailable_in_advice_mode_reads_as_one_without_it(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """Its partner down, DGA's adapter answers UNAVAILABLE at once: no deadline passes."""
    with_it = read_by_the_trader(
        routing_table, keys_dir, licence=True, dgal=Verdict.VALID, dga=Verdict.UNAVAILABLE
    )
    without = read_by_the_trader(routing_table, keys_dir, licence=False, dgal=Verdict.VALID)
    assert with_it == without == (Outcome.RELEASE.value, [])


def test_a_control_beside_a_silent_advisory_licence_reads_as_one_without_it(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """DGAL (enforced) silent too: the documentary control is DGAL's, its reasons alone."""
    with_it = read_by_the_trader(routing_table, keys_dir, licence=True, dgal=None)
    without = read_by_the_trader(routing_table, keys_dir, licence=False, dgal=None)
    assert without[0] == Outcome.CONTROL_DOCUMENTARY.value
    assert ADVISORY_ONLY not in without[1]
    assert with_it == without


def test_a_visible_advisory_authority_keeps_its_advisory_only_beside_a_silent_licence(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """CITES (advice mode, visible) silent or refusing: its ADVISORY_ONLY is the trader's
    to read, with or without the licence."""
    for cites in (None, Verdict.NOT_FOUND):
        with_it = read_by_the_trader(
            routing_table, keys_dir, licence=True, dgal=Verdict.VALID, cites=cites
        )
        without = read_by_the_trader(
            routing_table, keys_dir, licence=False, dgal=Verdict.VALID, cites=cites
        )
        assert without[0] == Outcome.RELEASE.value
        assert ADVISORY_ONLY in without[1], cites
        assert with_it == without, cites


def test_a_silent_advisory_licence_beside_a_valid_advisory_permit_reads_as_one_without_it(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """CITES in advice mode too, its permit valid: it gives no ADVISORY_ONLY, so the one
    the decision holds is DGA's."""
    with_it = read_by_the_trader(
        routing_table, keys_dir, licence=True, dgal=Verdict.VALID, cites=Verdict.VALID
    )
    without = read_by_the_trader(
        routing_table, keys_dir, licence=False, dgal=Verdict.VALID, cites=Verdict.VALID
    )
    assert with_it == without == (Outcome.RELEASE.value, [])
