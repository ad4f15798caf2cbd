"""A real adapter (aiokafka loop) running inside the test process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from adapters.base import load_adapter
from adapters.base.runner import AdapterRunner
from gun_hub.envelope import Envelope
from gun_hub.settings import Settings
from gun_hub.topics import TopicRegistry


@asynccontextmanager
async def running_adapter(
    authority: str, settings: Settings, topics: TopicRegistry, envelope: Envelope
) -> AsyncIterator[AdapterRunner]:
    """Start ``authority``'s adapter, wait until it consumes, stop it cleanly after."""
    spec = load_adapter(authority)
    runner = AdapterRunner(spec, settings, topics, envelope, spec.build_partner(settings.adapter))
    ready = asyncio.Event()
    task = asyncio.create_task(runner.run(ready))
    await asyncio.wait_for(ready.wait(), 30)
    try:
        yield runner
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)
