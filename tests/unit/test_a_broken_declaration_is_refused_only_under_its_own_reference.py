"""A declaration too broken to parse is refused only under its own reference (contract
section 6: "a REFUSE decision ... when the reference can be read").

The sniffer took the first ``<Reference>`` of the first 4 KiB: when the declaration's own
was malformed, that was a quoted document's, possibly another declaration's reference.
The hub then refused, and superseded, that other declaration's case, and its genuine
next version was later ignored as stale (found by review, stop 36).
"""

from __future__ import annotations

from pathlib import Path

from gun_contract.dead_letter import SourcePosition
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_pipeline import Hub

OTHER = "26FR000690I0000011"  # another trader's declaration, already decided
REF = "26FR000690I0000012"


def test_a_declaration_quoting_another_reference_is_never_refused_under_it(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """Scenario: OTHER v1 is released. REF v2 quotes OTHER as a document reference and
    has a typo in its own <Reference>, so it fails the schema. It is dead-lettered; no
    decision, status or deletion concerns OTHER, and OTHER's genuine v2 is decided, not
    ignored as stale. Found by review, stop 36."""
    hub = Hub(routing_table, keys_dir)
    sent = hub.intake.handle(
        declaration_xml(reference=OTHER), SourcePosition("gun.declarations", 0, 0)
    )
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.VALID)) == [(OTHER, 1, Outcome.RELEASE)]

    broken = declaration_xml(
        reference=REF, version=2, items=(goods_item(documents=(document(reference=OTHER),)),)
    ).replace(
        f"<Reference>{REF}</Reference>".encode(), b"<Reference>26fr000690i0000012</Reference>", 1
    )
    out = hub.intake.handle(broken, SourcePosition("gun.declarations", 0, 1))
    assert hub.decisions(out) == []
    assert hub.statuses(out) == []
    assert out.to(hub.topics.requests("dgal")) == []
    [dead] = out.to(hub.topics.dlq)
    assert dead.key is None

    genuine = hub.intake.handle(
        declaration_xml(reference=OTHER, version=2), SourcePosition("gun.declarations", 0, 2)
    )
    assert StatusKind.IGNORED_STALE_VERSION not in hub.status_kinds(genuine)
    assert hub.decisions(hub.answer(genuine, "dgal", Verdict.VALID)) == [
        (OTHER, 2, Outcome.RELEASE)
    ]
