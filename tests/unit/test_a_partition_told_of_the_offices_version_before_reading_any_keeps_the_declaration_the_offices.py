"""A partition told of the office's version before it read any keeps the declaration the
office's.

A higher version read on a partition where no earlier one was (the clearance system's
producers split a reference) tells the others; one that has no case of the reference yet
(behind on its declarations) remembers a marker of that version (``Takeover._remember``):
its stage, an outcome RELEASE that is no decision, no ``Case.customs_acted``. Before
b7b66ca that stage kept a trader's later version out (``customs_acted_on``: the office's
stages, "decided or not"); b7b66ca reads the stage of an undecided case only and trusts
``customs_acted``, which ``_remember`` never sets. So: the office invalidates the trader's
declaration, the clearance system's INVALIDATED version 2 read on partition 1 and
decided CANCELLED there; partition 0, behind, is told and keeps its marker, then reads
the trader's version 1 (stale) and the trader's version 3 of the same goods through the
gateway: taken and decided from scratch, the invalidated declaration revived, where on
partition 1 the same version 3 is refused AMENDMENT_NOT_PERMITTED.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from gun_contract.dead_letter import HEADER_ERROR_KIND, SourcePosition, header_value
from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.intake import AMENDMENT_NOT_PERMITTED
from gun_hub.pipeline.takeover import Takeover
from tests.builders import declaration_xml
from tests.unit.test_decided_cases_leave_the_hot_table import RetainingHub
from tests.unit.test_pipeline import SOURCE

TRADER = "FR12345678901234"
REFERENCE = f"{TRADER}-INV-0001"
KEY = REFERENCE.encode()


def at(offset: int, partition: int) -> SourcePosition:
    return replace(SOURCE, partition=partition, offset=offset, key=KEY)


def through_the_gateway(hub: RetainingHub, version: int, offset: int, partition: int) -> Effects:
    xml = declaration_xml(reference=REFERENCE, version=version, declarant=TRADER)
    sealed = hub.sealed_by_gateway(xml)
    return hub.intake.handle(sealed, at(offset, partition))


def test_the_traders_version_after_the_offices_invalidation_told_to_a_partition_behind_is_refused(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    first = RetainingHub(routing_table, keys_dir)  # partition 0, behind
    other = RetainingHub(routing_table, keys_dir)  # partition 1

    invalidated = other.intake.handle(
        declaration_xml(reference=REFERENCE, version=2, stage=Stage.INVALIDATED, declarant=TRADER),
        at(0, 1),
    )
    given_back = other.answer(invalidated, "dgal", Verdict.VALID)
    assert [o for *_, o in other.decisions(invalidated) + other.decisions(given_back)] == [
        Outcome.CANCELLED
    ]
    # Partition 1 itself refuses the trader's next version (the reference behaviour).
    there = through_the_gateway(other, 3, 1, 1)
    assert [header_value(r.headers, HEADER_ERROR_KIND) for r in there.to(other.topics.dlq)] == [
        AMENDMENT_NOT_PERMITTED
    ]

    notices = [
        r.value for r in invalidated.to(other.topics.deadlines) if r.partition == 0 and r.key == KEY
    ]
    assert notices, "no notice to partition 0"
    handle = first._delivered(Takeover(first.context, first.store).handle)
    for offset, value in enumerate(notices):
        handle(REFERENCE, value, SourcePosition("gun.hub.deadlines", 0, offset))
    assert first.retained.get(KEY), "partition 0 kept no marker of version 2"

    first.intake.handle(
        declaration_xml(reference=REFERENCE, version=1, declarant=TRADER), at(0, 0)
    )  # the trader's version 1, read late: stale
    again = through_the_gateway(first, 3, 1, 0)
    kinds = [header_value(r.headers, HEADER_ERROR_KIND) for r in again.to(first.topics.dlq)]
    assert again.to(first.topics.requests("dgal")) == [], (
        "on partition 0 the trader's version 3 after the office's invalidation was taken "
        f"and asked of DGAL afresh (dead letters: {kinds})"
    )
    assert kinds == [AMENDMENT_NOT_PERMITTED]
