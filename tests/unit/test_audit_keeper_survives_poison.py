"""The audit keeper never fails on a dead letter's headers (issue 10, defect 3).

Any party may write ``gun.dlq``, so its headers can be anything: missing, null, not
UTF-8, megabytes long, repeated. A security dead letter still becomes one audit entry, of
bounded size, with what could be read; anything else is not audited; nothing raises.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from gun_hub.domain.routing import RoutingTable
from tests.poison_corpus import hostile_headers
from tests.unit.test_pipeline import Hub

DLQ = SourcePosition("gun.dlq", 2, 17)
MAX_AUDIT_ENTRY_BYTES = 16 * 1024
NAMES = [
    HEADER_ERROR_CLASS,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    HEADER_SOURCE_TOPIC,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_OFFSET,
    HEADER_COMPONENT,
    HEADER_REFERENCE,
]


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


def audited(hub: Hub, headers: Any) -> list[dict[str, Any]]:
    outbox = hub.audit_keeper.handle(headers, DLQ)
    entries = [json.loads(record.value) for record in outbox.records]
    for record in outbox.records:
        assert record.topic == hub.topics.audit
        assert len(record.value) < MAX_AUDIT_ENTRY_BYTES
    return [entry for entry in entries if entry["kind"] == "SECURITY_REJECTION"]


def test_a_genuine_security_dead_letter_is_audited(hub: Hub) -> None:
    [entry] = audited(
        hub,
        [
            (HEADER_ERROR_CLASS, b"security"),
            (HEADER_ERROR_KIND, b"ENVELOPE_REPLAY"),
            (HEADER_ERROR_REASON, b"jti seen at gun.responses.dgal/0/3"),
            (HEADER_SOURCE_TOPIC, b"gun.responses.dgal"),
            (HEADER_SOURCE_PARTITION, b"0"),
            (HEADER_SOURCE_OFFSET, b"9"),
            (HEADER_COMPONENT, b"hub.correlation"),
        ],
    )
    assert entry["rejection"] == "ENVELOPE_REPLAY"
    assert entry["origin"] == "gun.responses.dgal/0/9"
    assert entry["dead_letter"] == "gun.dlq/2/17"


HOSTILE: dict[str, Any] = {
    "null values": [(HEADER_ERROR_CLASS, b"security"), *((name, None) for name in NAMES[1:])],
    "null class": [(HEADER_ERROR_CLASS, None)],
    "byte names": [(name.encode(), b"\xff" * 10) for name in NAMES[:1]]
    + [(b"gun.error.class", b"security")],
    "megabyte values": [(HEADER_ERROR_CLASS, b"security")]
    + [(name, b"\xe2\x82\xac" * 1_000_000) for name in NAMES[1:]],
    "not utf-8": [(HEADER_ERROR_CLASS, b"security")]
    + [(n, b"\xc3\x28\xed\xa0\x80") for n in NAMES],
    "hostile corpus": hostile_headers(random.Random(1)),
    "repeated": [(HEADER_ERROR_CLASS, b"security")] * 500,
    "no headers": None,
    "empty": [],
    "text values": [(HEADER_ERROR_CLASS, "security"), (HEADER_ERROR_KIND, "K")],
    "pairs of the wrong shape": [(HEADER_ERROR_CLASS,), (HEADER_ERROR_CLASS, b"security", b"x"), 7],
    "a mapping": {HEADER_ERROR_CLASS: b"security", HEADER_ERROR_KIND: b"K"},
}


# Which of them report a security rejection, and so become one audit entry: a class
# header that reads "security" first (bytes or text, whatever else is broken). Counted,
# not looped over: a keeper that audited nothing passed a loop over its entries (tests'
# review of stop 48).
AUDITED = {
    "null values",
    "megabyte values",
    "not utf-8",
    "hostile corpus",
    "repeated",
    "text values",
    "a mapping",
}


@pytest.mark.parametrize(("name", "headers"), HOSTILE.items(), ids=HOSTILE.keys())
def test_no_header_content_makes_the_keeper_raise(hub: Hub, name: str, headers: Any) -> None:
    entries = audited(hub, headers)
    assert len(entries) == (1 if name in AUDITED else 0)
    for entry in entries:
        assert entry["dead_letter"] == "gun.dlq/2/17"
        for field in ("rejection", "reason", "component", "origin", "reference"):
            assert entry[field] is None or len(entry[field].encode()) <= 2048, field


def test_a_security_class_with_nothing_else_is_still_audited(hub: Hub) -> None:
    [entry] = audited(hub, [(HEADER_ERROR_CLASS, b"security")])
    assert entry["origin"] == "?/?/?"


def test_other_classes_are_not_audited(hub: Hub) -> None:
    assert audited(hub, [(HEADER_ERROR_CLASS, b"permanent")]) == []
    assert audited(hub, [(HEADER_ERROR_CLASS, b"s" * 100_000)]) == []


header_value = st.none() | st.binary(max_size=3000) | st.just(b"security")
header_name = st.sampled_from(NAMES) | st.text(max_size=20)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(header_name, header_value), max_size=20))
def test_any_headers_at_all(hub: Hub, headers: list[tuple[str, bytes | None]]) -> None:
    audited(hub, [(HEADER_ERROR_CLASS, b"security"), *headers])
    audited(hub, headers)
