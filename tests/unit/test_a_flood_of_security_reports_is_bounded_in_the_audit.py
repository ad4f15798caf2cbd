"""A flood of security dead letters reaches the never-deleted audit trail bounded.

Any party may write ``gun.dlq`` (the clearance system, every adapter) and the hub chains
each security dead letter as an audit entry, in a topic never deleted: 23 bytes of header
made some 525 bytes of permanent evidence, the writer's quota bounding its side only, so a
sustained flood filled the broker's disks with what nothing can prune without breaking
the chain (found by review, stop 46). Now at most ``REPORTS_CHAINED_A_MINUTE`` reports a
minute of broker time are chained one by one on each partition; the first left out is
chained as the start of a flood, and the count of those left out comes with the next
report of a later minute, and in ``gun_hub_security_reports_left_out_total`` at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gun_contract.dead_letter import (
    HEADER_ERROR_CLASS,
    HEADER_ERROR_KIND,
    ErrorClass,
    SourcePosition,
    dead_letter_record,
)
from gun_contract.effects import OutgoingRecord
from gun_hub import metrics
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.audit_keeper import REPORTS_CHAINED_A_MINUTE
from gun_hub.security.own_dead_letters import vouched
from tests.unit.test_pipeline import Hub

SECURITY = [(HEADER_ERROR_CLASS, b"security"), (HEADER_ERROR_KIND, b"ENVELOPE_SIGNATURE")]
MINUTE = 1_800_000_000 // 60 * 60  # a broker time at the start of a minute


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


def entries(hub: Hub, offset: int, at: float) -> list[dict[str, Any]]:
    outbox = hub.audit_keeper.handle(SECURITY, SourcePosition("gun.dlq", 0, offset), at)
    return [entry for r in outbox.records if (entry := json.loads(r.value))["kind"] != "CHECKPOINT"]


def test_a_flood_is_chained_up_to_the_bound_then_counted(hub: Hub) -> None:
    left_out = metrics.SECURITY_REPORTS_LEFT_OUT
    before = left_out._value.get()
    flood = REPORTS_CHAINED_A_MINUTE + 250
    chained = [e for n in range(flood) for e in entries(hub, n, MINUTE + n * 0.01)]
    kinds = [e["kind"] for e in chained]
    assert kinds.count("SECURITY_REJECTION") == REPORTS_CHAINED_A_MINUTE
    [started] = [e for e in chained if e["kind"] == "SECURITY_REPORTS_LEFT_OUT"]
    assert started["from_dead_letter"] == f"gun.dlq/0/{REPORTS_CHAINED_A_MINUTE}"
    assert left_out._value.get() == before + 250
    # The next report, a minute later, brings the count, then is chained itself.
    later = entries(hub, flood, MINUTE + 60)
    assert [e["kind"] for e in later] == ["SECURITY_REPORTS_LEFT_OUT", "SECURITY_REJECTION"]
    assert later[0]["count"] == 250
    assert later[0]["to_dead_letter"] == f"gun.dlq/0/{flood - 1}"


def test_reports_of_a_quiet_day_are_each_chained(hub: Hub) -> None:
    chained = [e for n in range(50) for e in entries(hub, n, MINUTE + n * 61)]
    assert [e["kind"] for e in chained] == ["SECURITY_REJECTION"] * 50


def dead_letter_the_hub_writes(hub: Hub, sealed_at: float) -> tuple[bytes, list[Any]]:
    """A security dead letter as the hub's runtime sends it: vouched for."""
    record = dead_letter_record(
        hub.topics.dlq,
        b"<declaration/>",
        error_class=ErrorClass.SECURITY,
        kind="DECLARANT_CHANGED",
        reason="a version in another trader's name",
        source=SourcePosition(hub.topics.declarations, 0, 41, b"26FR000690I0000012"),
        component="hub.intake",
        reference="26FR000690I0000012",
    )
    sent = vouched(
        hub.outbox_cipher,
        OutgoingRecord("gun.dlq", None, record.value, list(record.headers)),
        sealed_at,
    )
    return sent.value, list(sent.headers)


def kinds_of(hub: Hub, value: bytes, headers: list[Any], offset: int, at: float) -> list[str]:
    outbox = hub.audit_keeper.handle(headers, SourcePosition("gun.dlq", 0, offset), at, value)
    return [json.loads(r.value)["kind"] for r in outbox.records]


def test_the_hubs_own_rejection_is_chained_whatever_a_flood_before_it(hub: Hub) -> None:
    """A flood of forged reports in a minute left the hub's own rejections of that minute
    out of the audit one by one (found by review of the bound, stop 46): the hub vouches
    for the dead letters it writes, and those are chained whatever the flood."""
    flood = REPORTS_CHAINED_A_MINUTE + 10
    for n in range(flood):
        entries(hub, n, MINUTE + n * 0.01)
    value, headers = dead_letter_the_hub_writes(hub, MINUTE + 10)
    chained = kinds_of(hub, value, headers, flood, MINUTE + 10.5)
    assert "SECURITY_REJECTION" in chained
    # A copy of it, anywhere else, is anybody's again: bounded with the flood.
    assert "SECURITY_REJECTION" not in kinds_of(hub, value, headers, flood + 1, MINUTE + 11)
    # Read again where it is (a rebalance), it is still the hub's.
    assert hub.audit_keeper._own.the_hubs(value, headers, MINUTE + 10.5, f"gun.dlq/0/{flood}")


def test_a_seal_far_from_the_dead_letters_broker_time_is_not_believed(hub: Hub) -> None:
    for n in range(REPORTS_CHAINED_A_MINUTE):
        entries(hub, n, MINUTE + n * 0.01)
    value, headers = dead_letter_the_hub_writes(hub, MINUTE - 3600)  # kept an hour, then sent
    assert "SECURITY_REJECTION" not in kinds_of(hub, value, headers, 9999, MINUTE + 20)
