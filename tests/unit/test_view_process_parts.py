"""What ``gun-hub view`` adds around the operations view (ADR 0015), without a broker:
the lag it shows comes from the snapshots the hub's monitor publishes, its metrics leave
the lag series to that monitor, and its probes say what it still waits for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError

from gun_contract.health import CircuitStatus, PartnerHealth
from gun_contract.kafka.client import ClientConfig
from gun_hub.ops.lag import GrowthWatch, LagSnapshot, partition_lags, snapshot
from gun_hub.ops.lag_follower import LagFollower
from gun_hub.ops.lag_metrics import OpsCollector, OpsState
from gun_hub.web.listeners import Listener
from gun_hub.web.probes import probes_app
from gun_tools.processes import free_port

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def measured(at: datetime, group: str) -> LagSnapshot:
    return snapshot(at, partition_lags(group, {}, {("t", 0): 5}), GrowthWatch())


def record(value: bytes, partition: int = 0, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="gun.ops.lag",
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=(),
    )


def test_the_view_process_shows_the_newest_lag_snapshot_whichever_partition_came_last() -> None:
    state = OpsState()
    follower = LagFollower(ClientConfig("unused:9092"), "gun.ops.lag", state)
    follower.apply(record(measured(NOW, "newer").to_bytes(), partition=1))
    # Read after it from another partition, but measured before: not what is shown.
    follower.apply(record(measured(NOW - timedelta(seconds=5), "older").to_bytes(), partition=0))
    assert state.lag is not None
    assert [g.group for g in state.lag.groups] == ["newer"]


def test_a_record_that_is_no_lag_snapshot_changes_nothing() -> None:
    kept = measured(NOW, "kept")
    state = OpsState(lag=kept)
    follower = LagFollower(ClientConfig("unused:9092"), "gun.ops.lag", state)
    follower.apply(record(b"not json"))
    follower.apply(record(b'{"at": "2026-11-22T12:00:00Z"}'))
    assert state.lag is kept


def test_a_snapshot_dated_far_ahead_is_skipped_not_kept_for_ever() -> None:
    """Kept as the newest, a snapshot dated in the year 9999 (anyone on a plaintext
    deployment may write the topic) hid every real measurement from the dashboard until
    the view restarted (found by review, stop 46). Past the clock skew ahead of the
    view's clock it is skipped, as the heartbeat gate skips one."""
    state = OpsState()
    follower = LagFollower(ClientConfig("unused:9092"), "gun.ops.lag", state, clock=lambda: NOW)
    follower.apply(record(measured(datetime(9999, 1, 1, tzinfo=UTC), "forged").to_bytes()))
    assert state.lag is None
    follower.apply(
        record(measured(NOW + timedelta(seconds=60), "a clock a little ahead").to_bytes())
    )
    follower.apply(record(measured(NOW, "now").to_bytes()))
    assert state.lag is not None
    assert [g.group for g in state.lag.groups] == ["a clock a little ahead"]


def test_without_lag_the_metrics_carry_the_partners_health_only() -> None:
    beat = PartnerHealth(
        authority="dgal",
        adapter="adapter.dgal",
        circuit=CircuitStatus.CLOSED,
        pending_operations=2,
        at=NOW,
        every_s=5.0,
    )
    state = OpsState(lag=measured(NOW, "gun-hub"), partners={("dgal", ""): beat})
    registry = CollectorRegistry()
    registry.register(OpsCollector(state, lag=False))
    text = generate_latest(registry).decode()
    assert "kafka_consumergroup_lag" not in text
    assert "gun_hub_consumergroup_lag_growing" not in text
    assert 'gun_hub_partner_pending_operations{authority="dgal"} 2.0' in text


@pytest.fixture
async def probes() -> AsyncIterator[tuple[str, list[str]]]:
    """The view process's probes on a free port, and the list its readiness reads."""
    waiting: list[str] = ["operations view catching up with the topics"]
    listener = Listener("probes", probes_app(lambda: list(waiting)), "127.0.0.1", free_port())
    await listener.start()
    try:
        yield f"http://127.0.0.1:{listener.port}", waiting
    finally:
        await listener.stop()


async def fetch(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def test_the_view_process_is_ready_once_nothing_is_awaited(
    probes: tuple[str, list[str]],
) -> None:
    url, waiting = probes
    assert await fetch(f"{url}/livez") == (200, {"status": "ok"})
    assert await fetch(f"{url}/readyz") == (
        503,
        {"status": "not ready", "waiting": ["operations view catching up with the topics"]},
    )
    waiting.clear()
    assert await fetch(f"{url}/readyz") == (200, {"status": "ready"})
    code, metrics = await fetch(f"{url}/metrics")
    assert code == 200
    assert "# TYPE" in metrics
    assert (await fetch(f"{url}/declarations/26FRVIEWPROC000001"))[0] == 404


def test_a_snapshot_without_a_time_zone_is_skipped_not_a_crash() -> None:
    """Compared with a kept snapshot's aware time, a naive one raised TypeError, and the
    view process stopped, again at every start until a newer snapshot landed (found by
    review in stop 34)."""
    kept = measured(NOW, "kept")
    state = OpsState(lag=kept)
    follower = LagFollower(ClientConfig("unused:9092"), "gun.ops.lag", state)
    follower.apply(record(b'{"at": "2030-01-01T00:00:00", "groups": [], "partitions": []}'))
    assert state.lag is kept


def test_a_heartbeat_counting_more_operations_than_a_float_holds_is_refused() -> None:
    """Turned into a float for /metrics, 10**400 pending operations raised OverflowError
    at every scrape, and every metric of the process was lost with it (found by review in
    stop 34): a heartbeat is held to what a gauge can show exactly."""
    fields = {
        "authority": "dgal",
        "adapter": "adapter-dgal",
        "circuit": "closed",
        "at": NOW.isoformat(),
        "every_s": 5.0,
    }
    with pytest.raises(ValidationError):
        PartnerHealth.model_validate(fields | {"pending_operations": 10**400})
    with pytest.raises(ValidationError):
        PartnerHealth.model_validate(fields | {"pending_operations": -1})
    assert PartnerHealth.model_validate(fields | {"pending_operations": 2**53}).pending_operations
