"""The lag monitor on the real broker: an adapter stops, its lag rises, it comes back.

The hub measures every group's lag twice a second and publishes each snapshot on
``ops.lag`` and in ``/metrics``. While the DGAL adapter is stopped, declarations keep
arriving: its lag must rise (and be flagged as growing) on both; once restarted it must
drain its queue and the lag must return to zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from gun_contract.kafka.acls import adapter_group
from gun_hub.ops.lag import LagSnapshot
from gun_tools.processes import start_adapter
from tests.builders import declaration_xml
from tests.conftest import KafkaEnv
from tests.e2e.conftest import Pipeline, start_pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]


def dgal_group(pipeline: Pipeline) -> str:
    """The DGAL adapters' group: named after the test's topic prefix (acls.py)."""
    return adapter_group(pipeline.kafka.topics, "dgal")


@pytest.fixture
def watched_pipeline(kafka_env: KafkaEnv, samples: Path, tmp_path: Path) -> Iterator[Pipeline]:
    yield from start_pipeline(
        kafka_env,
        tmp_path,
        samples,
        partners=("dgal",),
        hub_env={"GUN_HUB_OPS__LAG_INTERVAL_S": "0.5", "GUN_HUB_OPS__LAG_GROWING_SAMPLES": "2"},
    )


class LagTopic:
    """Tails ``ops.lag`` and waits for a snapshot that satisfies a condition."""

    def __init__(self, consumer: AIOKafkaConsumer, pipeline: Pipeline) -> None:
        self._consumer = consumer
        self._pipeline = pipeline

    async def until(self, condition: Callable[[LagSnapshot], bool]) -> LagSnapshot:
        async with asyncio.timeout(90):
            while True:
                self._pipeline.group.check_alive()
                for records in (await self._consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        measured = LagSnapshot.model_validate_json(record.value or b"")
                        if condition(measured):
                            return measured


@contextlib.asynccontextmanager
async def lag_topic(pipeline: Pipeline) -> AsyncIterator[LagTopic]:
    consumer = AIOKafkaConsumer(
        pipeline.kafka.topics.ops_lag,
        bootstrap_servers=pipeline.kafka.bootstrap,
        auto_offset_reset="latest",
    )
    await consumer.start()
    try:
        yield LagTopic(consumer, pipeline)
    finally:
        await consumer.stop()


def metric_lag(pipeline: Pipeline) -> int | None:
    """``kafka_consumergroup_lag_sum`` of the DGAL adapter on its request topic."""
    pattern = (
        rf'^kafka_consumergroup_lag_sum\{{consumergroup="{dgal_group(pipeline)}",'
        rf'topic="{re.escape(pipeline.kafka.topics.requests("dgal"))}"\}} (\S+)$'
    )
    found = re.search(pattern, pipeline.metrics(), re.MULTILINE)
    return int(float(found.group(1))) if found else None


async def metric_until(pipeline: Pipeline, condition: Callable[[int | None], bool]) -> int | None:
    """Scrape ``/metrics`` (as Prometheus would) until the DGAL lag satisfies ``condition``."""
    deadline = time.monotonic() + 60
    value = metric_lag(pipeline)
    while not condition(value) and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        value = metric_lag(pipeline)
    return value


def dgal_lag(measured: LagSnapshot, topic: str) -> int:
    """The DGAL adapter's lag on this test's request topic (-1: not measured)."""
    group = topic.replace(".requests.", "-adapter-")  # the group of the same prefix
    lags = [p.lag for p in measured.partitions if p.group == group and p.topic == topic]
    return sum(lags) if lags else -1


async def test_a_stopped_adapter_shows_growing_lag_that_returns_to_zero_once_restarted(
    watched_pipeline: Pipeline,
) -> None:
    pipeline = watched_pipeline
    requests = pipeline.kafka.topics.requests("dgal")
    group = dgal_group(pipeline)
    async with lag_topic(pipeline) as snapshots:
        await snapshots.until(lambda s: dgal_lag(s, requests) == 0)
        pipeline.group.stop("adapter-dgal")

        # Declarations keep coming while the adapter is away: a steady stream, so that
        # every measurement sees more waiting than the one before.
        # It is told to stop rather than cancelled: a cancellation landing inside a
        # producer's start would leave its connections to the garbage collector.
        enough = asyncio.Event()

        async def keep_submitting() -> None:
            for n in range(1, 1000):
                if enough.is_set():
                    return
                await pipeline.submit([declaration_xml(reference=f"26FRLAGTEST{n:07d}")])
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await enough.wait()

        stream = asyncio.create_task(keep_submitting())
        try:
            growing = await snapshots.until(
                lambda s: (
                    (g := s.group(group)) is not None and g.growing and dgal_lag(s, requests) >= 10
                )
            )
        finally:
            enough.set()
            await stream
        scraped = await metric_until(pipeline, lambda v: v is not None and v >= 10)
        assert scraped is not None
        assert scraped >= 10
        assert f'gun_hub_consumergroup_lag_growing{{consumergroup="{group}"}} 1.0' in (
            pipeline.metrics()
        )
        peak = dgal_lag(growing, requests)

        table = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "gun_hub", "lag"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, **pipeline.group.base_env},
        )
        assert table.returncode == 0, table.stderr
        [row] = [line.split() for line in table.stdout.splitlines() if f" {requests} " in line]
        assert row[0] == group
        assert int(row[2]) >= peak

        assert pipeline.partner_port is not None
        start_adapter(pipeline.group, "dgal", pipeline.partner_port)
        drained = await snapshots.until(lambda s: dgal_lag(s, requests) == 0)
        assert drained.group(group) is not None
        await snapshots.until(lambda s: not s.group(group).growing)  # type: ignore[union-attr]
        assert await metric_until(pipeline, lambda v: v == 0) == 0
