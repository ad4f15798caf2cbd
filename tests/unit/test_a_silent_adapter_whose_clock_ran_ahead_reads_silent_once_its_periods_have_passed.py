"""An adapter replica that stopped reads silent three heartbeat periods after it was last
heard, whatever its own clock said.

docs/operations.md ("Health and metrics"): per authority the circuit is the worst among
the replicas "with a fresh heartbeat (at most three heartbeat periods old)", and
``gun_hub_partner_heartbeat_age_seconds`` is the freshest replica's age;
``GunHubAdapterSilent`` pages on "no signed heartbeat from an adapter for over a minute".
The heartbeat gate believes a heartbeat dated up to the envelope skew (300 s) ahead of
the reader's clock (gun_contract/heartbeats.py), and the view judges freshness and age on
that date, the adapter's own clock (ops/lag_metrics.py ``is_stale``, ``authority_health``;
dashboard.py ``_age`` clamps a negative age to 0). So a replica whose host clock runs four
minutes ahead, stopped, reads fresh with a heartbeat age of 0 and its last circuit
("closed") for four minutes after its last beat: operations see a healthy partner while
nothing answers its requests (the hub decides its declarations in degraded mode at each
deadline), and the silent-adapter alert fires minutes late. The contract judges
freshness by when the broker accepted a record (section 5), not by the sender's clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from gun_contract.health import CircuitStatus, PartnerHealth
from gun_contract.heartbeats import HeartbeatGate, signed_heartbeat
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.keystore import PartyKeys
from gun_contract.topics import topic_registry
from gun_hub.ops.lag_metrics import OpsState
from tests.conftest import envelope_of

AHEAD = timedelta(minutes=4)  # within the 300 s the gate allows
EVERY_S = 5.0


def test_a_silent_adapter_whose_clock_ran_ahead_reads_silent_once_its_periods_have_passed(
    keys_dir: Path,
) -> None:
    topics = topic_registry("gun", ("dgal",))
    heard = datetime.now(UTC)
    gate = HeartbeatGate(
        PartyKeys.load(keys_dir, "hub"),
        Entitlements.from_registry(topics),
        clock=heard.timestamp,
    )
    # The replica's last heartbeat, dated by its own clock (four minutes ahead), believed.
    last = PartnerHealth(
        authority="dgal",
        adapter="adapter.dgal",
        replica="a",
        circuit=CircuitStatus.CLOSED,
        pending_operations=0,
        at=heard + AHEAD,
        every_s=EVERY_S,
    )
    value = signed_heartbeat(envelope_of("dgal", topics, keys_dir), last, topics.ops_health)
    believed = gate.check(value, topic=topics.ops_health)
    state = OpsState(
        partners={believed.replica_key: believed}, expected_partners=frozenset({"dgal"})
    )
    # Then the replica stops: a minute later (twelve periods) nothing more was heard.
    now = (heard + timedelta(minutes=1)).timestamp()
    health = state.routed_partners(now)["dgal"]
    assert health.stale, "a replica silent for twelve of its periods still reads fresh"
    assert now - min(health.at.timestamp(), now) >= 60, "its heartbeat age reads 0"
