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

from gun_contract.dead_letter import HEADER_ERROR_CLASS, HEADER_ERROR_KIND, SourcePosition
from gun_hub import metrics
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.audit_keeper import REPORTS_CHAINED_A_MINUTE
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
