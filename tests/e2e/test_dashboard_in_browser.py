"""The live operations dashboard, in headless Chromium, while declarations flow.

The page is served by the hub and updates itself: the figures a browser shows must change
as decisions are taken, without reloading. The screenshot is kept in
``test-artifacts/dashboard.png`` for whoever reviews the run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.browser import Page, headless_page
from tests.builders import declaration_xml
from tests.conftest import REPO
from tests.e2e.conftest import Pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

ARTIFACTS = REPO / "test-artifacts"


async def shown(
    page: Page, read: Callable[[], Awaitable[object]], wanted: Callable[[object], bool]
) -> object:
    """What the page shows once ``wanted`` holds for it (the page redraws every second)."""
    deadline = time.monotonic() + 45
    value = await read()
    while not wanted(value) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        value = await read()
    assert wanted(value), f"the page never showed what was expected; it shows {value!r}"
    return value


def keep_artifact(name: str, data: bytes) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / name).write_bytes(data)


def as_int(text: object) -> int:
    return int(str(text)) if str(text).isdigit() else -1


async def test_the_dashboard_shows_live_figures_while_declarations_flow(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    async with headless_page(tmp_path / "chromium") as page:
        await page.open(f"http://127.0.0.1:{pipeline.hub_port}/dashboard")
        assert await page.evaluate("document.title") == "gun-hub operations"
        await shown(page, lambda: page.text("#connection"), lambda v: v == "live")
        total = "#decisions-total"
        before = as_int(await shown(page, lambda: page.text(total), lambda v: as_int(v) >= 0))

        # The DGAL adapter's heartbeat reaches the page: its partner answers.
        await shown(
            page,
            lambda: page.text('#partners tr[data-authority="dgal"] td:nth-child(2)'),
            lambda v: v == "closed",
        )

        await pipeline.submit(
            [declaration_xml(reference=f"26FRDASHBOARD{n:05d}") for n in range(1, 21)]
        )
        after = as_int(
            await shown(page, lambda: page.text(total), lambda v: as_int(v) >= before + 20)
        )
        assert after == before + 20
        released = await page.text('#outcomes tr[data-outcome="RELEASE"] td:nth-child(2)')
        assert as_int(released) >= 1
        await shown(
            page,
            lambda: page.text('#lag tr[data-group="gun-adapter-dgal"] td:nth-child(2)'),
            lambda v: v == "0",
        )
        assert float(await page.text("#throughput")) > 0

        shot = await page.screenshot()
        assert len(shot) > 10_000  # a rendered page, not a blank one
        keep_artifact("dashboard.png", shot)
        assert page.errors == [], f"the page reported errors: {page.errors}"
