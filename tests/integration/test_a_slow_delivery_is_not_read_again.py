"""A record whose effects, or whose offset commit, are still on their way to the broker
is not read again.

The hub's agents go on with the next record while a record's effects are delivered
(runtime/settling.py); the record is marked handled once the broker acknowledged them.
Under load a delivery can take seconds (a commit of 8 s was seen in the two-worker
saturation run). The offset watchdog must count such a record as on its way: before
this test, it took it for one faust had dropped and sought back to it, so it and
everything fetched after it were handled again, more work on an already loaded worker
(32 such repairs in one `./tasks bench` run with two workers).

The worker is the hub's runtime (HubApp, handled_agent with its delivery window, the
offset watchdog) on the real broker (tests/integration/apps/slow_delivery.py).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.seeded_topics import seeded_topic

pytestmark = pytest.mark.broker

RECORDS = 50
SLOW = 10
# The watchdog ticks every second and judges a suspect after two: six looks are three
# judgements' worth.
LOOKS = 6
REPO = Path(__file__).resolve().parents[2]


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.mark.parametrize(
    "slow_commit",
    [
        pytest.param(False, id="a-slow-delivery"),
        # The records a commit covers were forgotten as handled when the commit began,
        # and faust records the offset only once the broker answers: in between the
        # watchdog found the last committed record unsettled, and read it again with
        # everything after it (the waves of repairs of the two-worker saturation runs).
        pytest.param(True, id="a-slow-offset-commit"),
    ],
)
async def test_a_record_whose_delivery_takes_longer_than_the_watchdogs_patience_is_handled_once(
    kafka_bootstrap: str, tmp_path: Path, slow_commit: bool
) -> None:
    topic = await seeded_topic(kafka_bootstrap, "slow", RECORDS)
    out = tmp_path / "handled.txt"
    log_file = (tmp_path / "worker.log").open("wb")
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.apps.slow_delivery",
        kafka_bootstrap,
        topic,
        f"g-{uuid.uuid4().hex[:8]}",
        str(out),
        str(SLOW),
        str(LOOKS),
        *(["--slow-commit"] if slow_commit else []),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    watchdog = out.with_suffix(".watchdog")
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        looks, read_again = 0, 0
        # Until the watchdog has looked LOOKS times (the slow delivery is released then)
        # and twice more, or has read something again.
        while looks < LOOKS + 2 and read_again == 0:
            assert loop.time() < deadline, f"the watchdog looked {looks} times in 60 s"
            assert worker.returncode is None, (tmp_path / "worker.log").read_text()[-3000:]
            await asyncio.sleep(0.2)  # the worker is another process: its files are polled
            looks, read_again = (int(n) for n in (_read(watchdog) or "0 0").split())
    finally:
        if worker.returncode is None:
            worker.terminate()
        await asyncio.wait_for(worker.wait(), 30)
        log_file.close()
    handled = Counter(int(line) for line in _read(out).split())
    assert set(handled) == set(range(RECORDS)), "records never handled"
    assert [offset for offset, times in handled.items() if times > 1] == [], "read again"
    assert read_again == 0
