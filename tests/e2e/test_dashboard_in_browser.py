"""The live operations dashboard, in headless Chromium, while declarations flow.

The page is served by the hub's officer listener and updates itself: the figures a
browser shows must change as decisions are taken, without reloading. It is for officers
only: without credentials the listener answers 401, and the probes port does not serve it
at all; the browser presents the officer's credentials (generated for the test) as a
browser does after its sign-in prompt. The screenshot is kept in
``test-artifacts/dashboard.png`` for whoever reviews the run.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from gun_contract.kafka.acls import adapter_group
from gun_hub.security.web_auth import LocalAccess
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


def status_of(url: str, authorization: str | None = None) -> int:
    request = urllib.request.Request(  # noqa: S310 - loopback URL
        url, headers={"Authorization": authorization} if authorization else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0  # nothing listens yet


async def test_the_dashboard_shows_live_figures_while_declarations_flow(
    officers_pipeline: tuple[Pipeline, LocalAccess, int], tmp_path: Path
) -> None:
    pipeline, access, officer_port = officers_pipeline
    dashboard = f"http://127.0.0.1:{officer_port}/dashboard"
    dgal_group = adapter_group(pipeline.kafka.topics, "dgal")
    # The listener opens with the hub's services, once its tables are recovered.
    deadline = time.monotonic() + 60
    while await asyncio.to_thread(status_of, dashboard) == 0:
        pipeline.group.check_alive()
        assert time.monotonic() < deadline, "the officer listener never opened"
        await asyncio.sleep(0.2)
    # Officers only: nobody else gets the page or its figures, on any port.
    for url in (dashboard, dashboard.replace("/dashboard", "/api/dashboard")):
        assert await asyncio.to_thread(status_of, url) == 401
    assert (
        await asyncio.to_thread(status_of, f"http://127.0.0.1:{pipeline.hub_port}/dashboard") == 404
    )
    async with headless_page(tmp_path / "chromium") as page:
        # What the browser sends once the officer has answered its sign-in prompt.
        await page.send("Network.enable")
        await page.send(
            "Network.setExtraHTTPHeaders",
            headers={"Authorization": access.officer_authorization()},
        )
        await page.open(dashboard)
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
            lambda: page.text(f'#lag tr[data-group="{dgal_group}"] td:nth-child(2)'),
            lambda v: v == "0",
        )
        assert float(await page.text("#throughput")) > 0

        shot = await page.screenshot()
        assert len(shot) > 10_000  # a rendered page, not a blank one
        keep_artifact("dashboard.png", shot)
        assert page.errors == [], f"the page reported errors: {page.errors}"
