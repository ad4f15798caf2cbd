"""Review of the read-back at a lag monitor's start (docs/adr/0029): ``recent_snapshots``
says it raises ``TimeoutError`` when ``gun.ops.lag`` cannot be read to its end within
``timeout_s``, and the monitor measures nothing until it returns (``LagMonitor.start``).
Only the reads are timed: the end offsets and the offsets for times are asked without a
bound of their own (aiokafka's request timeout, 40 s each by default, retried), so a
broker that stops answering after the reader started holds the monitor's first
measurement, and every lag gauge and snapshot, well beyond ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import TopicPartition

from gun_contract.kafka.client import ClientConfig
from gun_hub.ops import lag_follower

TIMEOUT_S = 0.5


class SilentBroker:
    """A reader whose broker stopped answering once it had started."""

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.partitions = partitions

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        await asyncio.sleep(3600)
        return {}

    async def stop(self) -> None:
        return None


async def test_the_read_back_gives_up_within_its_timeout_when_the_broker_is_silent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def one_partition(connect: Any, topic: str) -> list[int]:
        return [0]

    async def started(consumer: Any) -> None:
        return None

    monkeypatch.setattr(lag_follower, "topic_partitions", one_partition)
    monkeypatch.setattr(lag_follower, "reader_without_group", lambda *a, **k: SilentBroker())
    monkeypatch.setattr(lag_follower, "start_or_close", started)
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(
            lag_follower.recent_snapshots(
                ClientConfig(bootstrap_servers="kafka:9092"),
                "gun.ops.lag",
                60.0,
                timeout_s=TIMEOUT_S,
            ),
            TIMEOUT_S * 10,
        )
    waited = time.monotonic() - began
    assert waited < TIMEOUT_S * 4, (
        f"the read-back held the monitor's start {waited:.1f} s (timeout_s {TIMEOUT_S} s): "
        "the end offsets are asked without a bound"
    )
