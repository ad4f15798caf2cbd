"""An encoding a document declares is named in its refusal only in the hub's own
spelling of a registered encoding, never as the sender wrote it.

Found by review stop 40-S (S2): ``encoding="LIC-DGA-2026-12345"`` was refused with
"declared encoding 'LIC-DGA-2026-12345' is not accepted", copied into the REFUSE reason
and the dead letter's clear reason header: up to some 490 characters of the sender's
choosing, where docs/xml-safety.md says a malformed document's refusal copies nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gun_contract.dead_letter import HEADER_ERROR_REASON, SourcePosition, header_value
from gun_hub.domain.routing import RoutingTable
from tests.builders import declaration_xml
from tests.unit.test_pipeline import Hub

CANARY = "LIC-DGA-2026-12345"


def refused(routing_table: RoutingTable, keys_dir: Path, encoding: str) -> tuple[str, bytes]:
    """The dead letter's reason and every byte the hub emitted, for a declaration that
    declares ``encoding``."""
    data = declaration_xml().replace(b'encoding="UTF-8"', f'encoding="{encoding}"'.encode(), 1)
    hub = Hub(routing_table, keys_dir)
    out = hub.intake.handle(data, SourcePosition("gun.declarations", 0, 0, b"26FR000690I0000012"))
    [dead] = out.to(hub.topics.dlq)
    reasons = " ".join(r.text for d in hub.decision_objects(out) for r in d.reasons)
    emitted = b"".join(
        [reasons.encode()]
        + [v for r in out.records if r.topic != hub.topics.dlq for v in (r.value,)]
        + [value for r in out.records for _, value in r.headers]
    )
    return header_value(dead.headers, HEADER_ERROR_REASON) or "", emitted


def test_an_encoding_name_of_the_senders_choosing_is_not_quoted(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    reason, emitted = refused(routing_table, keys_dir, CANARY)
    assert "the declared encoding is not accepted; the contract is UTF-8" in reason
    assert CANARY.encode() not in emitted


@pytest.mark.parametrize(
    ("declared", "named"), [("iso-8859-1", "ISO-8859-1"), ("Utf-16", "UTF-16")]
)
def test_a_registered_encoding_is_named_in_the_hubs_spelling(
    routing_table: RoutingTable, keys_dir: Path, declared: str, named: str
) -> None:
    reason, _ = refused(routing_table, keys_dir, declared)
    assert f"declared encoding '{named}' is not accepted" in reason
