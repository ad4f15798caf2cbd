"""A batch that fails is raised once, by the poll loop, and leaves nothing for asyncio to
report at garbage collection (adapters/base/batch_pipeline.py).

The loop makes room for its next batch (``BatchPipeline.room``): a batch that ended
there is forgotten, and its failure raised from the pipeline's note of it. The task's own
exception is never retrieved: asyncio logs a second traceback, "Task exception was never
retrieved", whenever the task is collected (and that of a second batch that failed is
said nowhere else).
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from adapters.base.batch_pipeline import BatchPipeline, Turn


async def test_a_batch_failed_while_the_loop_made_room_has_its_exception_retrieved() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        pipeline = BatchPipeline(most=1)

        async def fails(turn: Turn) -> None:
            await asyncio.sleep(0)
            raise RuntimeError("a send refused")

        pipeline.start(fails)
        with pytest.raises(RuntimeError, match="a send refused"):
            await pipeline.room()  # the poll loop's next batch: the replica stops
        with pytest.raises(RuntimeError, match="a send refused"):
            await pipeline.drain()  # as run() does then
        del pipeline
        for _ in range(3):
            gc.collect()
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    never_retrieved = [c["message"] for c in reported if "never retrieved" in c["message"]]
    assert never_retrieved == [], (
        f"the failed batch's task was left with its exception unretrieved: {never_retrieved}"
    )
