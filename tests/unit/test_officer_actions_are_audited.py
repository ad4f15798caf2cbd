"""What an officer did through the hub enters the audit chain naming the officer; a record
on the operator-actions topic that no hub worker sealed is refused (ADR 0010)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gun_contract.dead_letter import (
    HEADER_ERROR_CLASS,
    HEADER_ERROR_KIND,
    SourcePosition,
    header_value,
)
from gun_contract.security.state_cipher import StateCipher, StateUnreadable
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.audit_keeper import OPERATOR_ACTION_UNVERIFIED
from gun_hub.security.operator_actions import (
    ActionKind,
    OperatorAction,
    open_action,
    seal_action,
)
from tests.unit.test_pipeline import Hub

AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
KEY = b"2:17"


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


def redrive_by(officer: str) -> OperatorAction:
    return OperatorAction(
        action=ActionKind.DLQ_REDRIVE,
        officer=officer,
        dead_letter="gun.dlq/2/17",
        origin="gun.declarations/2/5",
        reference="26FRRDV00000000001",
        at=AT,
    )


def test_an_action_sealed_by_the_hub_is_chained_naming_the_officer(hub: Hub) -> None:
    source = SourcePosition(hub.topics.operator_actions, 2, 40)
    sealed = seal_action(hub.outbox_cipher, KEY, redrive_by("alice"))
    outbox = hub.audit_keeper.operator_action(KEY, sealed, source)
    [record] = outbox.to(hub.topics.audit)
    assert record.partition == 2  # the chain of the dead letter's partition
    body = json.loads(record.value)
    assert body["kind"] == "OPERATOR_ACTION"
    assert (body["action"], body["officer"]) == ("DLQ_REDRIVE", "alice")
    assert (body["dead_letter"], body["origin"]) == ("gun.dlq/2/17", "gun.declarations/2/5")
    assert body["record"] == f"{hub.topics.operator_actions}/2/40"
    assert outbox.to(hub.topics.dlq) == []


def test_an_action_sealed_by_anyone_else_is_a_security_dead_letter(
    hub: Hub, keys_dir: Path
) -> None:
    """Written in clear by something without the hub's state key (a forgery naming
    another officer), sealed with another party's state key, or moved under another
    record key: never chained as an action."""
    source = SourcePosition(hub.topics.operator_actions, 2, 41)
    forged = redrive_by("mallory").model_dump_json().encode()
    adapters = seal_action(StateCipher.load(keys_dir, "dgal"), KEY, redrive_by("mallory"))
    moved = seal_action(hub.outbox_cipher, b"0:1", redrive_by("alice"))
    for value in (forged, adapters, moved, b""):
        outbox = hub.audit_keeper.operator_action(KEY, value, source)
        assert outbox.to(hub.topics.audit) == []
        [letter] = outbox.to(hub.topics.dlq)
        assert header_value(letter.headers, HEADER_ERROR_KIND) == OPERATOR_ACTION_UNVERIFIED
        assert header_value(letter.headers, HEADER_ERROR_CLASS) == "security"


def test_an_action_opens_only_under_the_key_it_was_sealed_for(hub: Hub) -> None:
    sealed = seal_action(hub.outbox_cipher, KEY, redrive_by("alice"))
    assert open_action(hub.outbox_cipher, KEY, sealed).officer == "alice"
    with pytest.raises(StateUnreadable):
        open_action(hub.outbox_cipher, b"2:18", sealed)
