"""Partners cannot write the audit trail (issue 11, item 3).

Any party may write ``gun.dlq``, and the hub turns security dead letters into audit
entries. Before the fix, the entry carried the dead letter's headers as written: a partner
could put text of its choosing into the hub's tamper-evident record ("released by the
officer on duty") and make it look like the hub's own finding. Now an entry keeps only what
the keeper can check (a rejection kind from a fixed list, a known component, a known topic
and integer position, a well-formed reference), says it is an unauthenticated report, and
takes the dead letter's position from the broker, never from the headers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from gun_contract.dead_letter import (
    HEADER_COMPONENT,
    HEADER_ERROR_CLASS,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    HEADER_REFERENCE,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    SourcePosition,
)
from gun_contract.envelope import EnvelopeRejectionKind
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.audit_keeper import (
    REPORTED_BY,
    SECURITY_REJECTION_KINDS,
    UNLISTED,
)
from tests.unit.test_pipeline import Hub

DLQ = SourcePosition("gun.dlq", 2, 17)
PLANTED = "officer Dupont approved the release of 26FR000690I0000012"


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


def entry_for(hub: Hub, headers: list[tuple[str, bytes]]) -> dict[str, Any]:
    outbox = hub.audit_keeper.handle(headers, DLQ)
    [entry] = [
        json.loads(r.value)
        for r in outbox.records
        if json.loads(r.value)["kind"] == "SECURITY_REJECTION"
    ]
    return dict(entry)


def test_text_a_partner_writes_in_a_dead_letter_never_enters_the_audit(hub: Hub) -> None:
    entry = entry_for(
        hub,
        [
            (HEADER_ERROR_CLASS, b"security"),
            (HEADER_ERROR_KIND, f"ENVELOPE_REPLAY {PLANTED}".encode()),
            (HEADER_ERROR_REASON, PLANTED.encode()),
            (HEADER_COMPONENT, f"hub.correlation ({PLANTED})".encode()),
            (HEADER_SOURCE_TOPIC, PLANTED.encode()),
            (HEADER_SOURCE_PARTITION, b"0; " + PLANTED.encode()),
            (HEADER_SOURCE_OFFSET, b"-1"),
            (HEADER_REFERENCE, PLANTED.encode()),
        ],
    )
    text = json.dumps(entry)
    for word in ("Dupont", "approved", "officer"):
        assert word not in text
    assert entry["rejection"] == UNLISTED
    assert entry["component"] == UNLISTED
    assert entry["origin"] == "?/?/?"
    assert entry["reference"] is None
    assert entry["reason"] == REPORTED_BY
    assert entry["dead_letter"] == "gun.dlq/2/17"  # where the broker says it was read


def test_a_well_formed_report_keeps_its_checked_fields_and_says_it_is_unauthenticated(
    hub: Hub,
) -> None:
    entry = entry_for(
        hub,
        [
            (HEADER_ERROR_CLASS, b"security"),
            (HEADER_ERROR_KIND, b"ENVELOPE_BAD_SIGNATURE"),
            (HEADER_ERROR_REASON, b"signature by 'dgal-sig-1' does not verify"),
            (HEADER_COMPONENT, b"adapter.dgal"),
            (HEADER_SOURCE_TOPIC, b"gun.requests.dgal"),
            (HEADER_SOURCE_PARTITION, b"3"),
            (HEADER_SOURCE_OFFSET, b"12345"),
            (HEADER_REFERENCE, b"26FR000690I0000012"),
        ],
    )
    assert entry["rejection"] == "ENVELOPE_BAD_SIGNATURE"
    assert entry["component"] == "adapter.dgal"
    assert entry["origin"] == "gun.requests.dgal/3/12345"
    assert entry["reference"] == "26FR000690I0000012"
    assert entry["reason"] == REPORTED_BY
    assert "unauthenticated" in REPORTED_BY


def test_every_rejection_kind_the_components_write_is_in_the_vocabulary() -> None:
    assert {kind.value for kind in EnvelopeRejectionKind} <= SECURITY_REJECTION_KINDS
    for kind in SECURITY_REJECTION_KINDS:
        assert re.fullmatch(r"[A-Z][A-Z_]{2,63}", kind)


@pytest.mark.parametrize(
    ("component", "kept"),
    [
        (b"hub.intake", "hub.intake"),
        (b"hub.correlation", "hub.correlation"),
        (b"clearance.reader", "clearance.reader"),
        (b"adapter.cites", "adapter.cites"),
        (b"adapter.nobody", UNLISTED),  # no such authority in the routing table
        (b"hub", UNLISTED),
        (b"\xff\xfe", UNLISTED),
    ],
)
def test_the_component_comes_from_a_fixed_list(hub: Hub, component: bytes, kept: str) -> None:
    entry = entry_for(hub, [(HEADER_ERROR_CLASS, b"security"), (HEADER_COMPONENT, component)])
    assert entry["component"] == kept


def test_a_flood_of_reports_makes_bounded_entries(hub: Hub) -> None:
    headers = [
        (HEADER_ERROR_CLASS, b"security"),
        (HEADER_ERROR_KIND, b"ENVELOPE_REPLAY"),
        (HEADER_ERROR_REASON, b"x" * 1_000_000),
    ]
    for offset in range(50):
        outbox = hub.audit_keeper.handle(headers, SourcePosition(DLQ.topic, DLQ.partition, offset))
        [entry] = outbox.records  # one each (the same dead letter twice is audited once)
        assert len(entry.value) < 2048
