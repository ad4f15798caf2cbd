"""A faust worker on the hub's runtime one of whose records takes long to deliver.

Run as ``python -m tests.integration.apps.slow_delivery BOOTSTRAP TOPIC GROUP OUT SLOW
TICKS [--slow-commit]``. It handles every record of TOPIC as the hub's agents do
(``handled_agent`` with a delivery window, runtime/settling.py), appending each offset
handled to OUT. The effects of offset SLOW are acknowledged only once the offset
watchdog (ticking every second, so judging a suspect after two) has looked TICKS times:
a broker slow to answer one produce request. With ``--slow-commit`` every delivery is at
once, and the first commit of an offset past SLOW is answered only after those looks: a
slow offset commit. At each look the watchdog has taken it writes how many so far and
how many records it read again to OUT.watchdog.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from gun_hub.runtime.faust_app import HubApp, handled_agent, watch_offsets
from gun_hub.runtime.settling import Settling
from gun_hub.runtime.strict_consumer import StrictOffsetsConsumer
from tests.integration.apps import worker_app


def main(
    bootstrap: str,
    topic_name: str,
    group: str,
    out: Path,
    slow: int,
    ticks: int,
    slow_commit: bool,
) -> None:
    app = worker_app(HubApp, group, bootstrap, out, broker_commit_interval=0.5)
    topic = app.topic(topic_name, value_serializer="raw", key_serializer="raw")
    watchdog = watch_offsets(app, bootstrap, {topic_name}, interval_s=1.0)
    looked = asyncio.Event()
    tick = watchdog.tick

    async def counted_tick() -> None:
        await tick()
        counted_tick.looks += 1  # type: ignore[attr-defined]
        looks = counted_tick.looks  # type: ignore[attr-defined]
        written = out.with_suffix(".watchdog-new")
        written.write_text(f"{looks} {watchdog.read_again}\n")
        written.replace(out.with_suffix(".watchdog"))  # never read half written
        if counted_tick.looks >= ticks:  # type: ignore[attr-defined]
            looked.set()

    counted_tick.looks = 0  # type: ignore[attr-defined]
    watchdog.tick = counted_tick  # type: ignore[method-assign]

    async def delivered() -> None:
        return None

    if slow_commit:
        commit = StrictOffsetsConsumer._commit

        async def commit_slowly(self: Any, offsets: Any) -> Any:
            if not looked.is_set() and any(offset > slow for offset in offsets.values()):
                await looked.wait()
            return await commit(self, offsets)

        StrictOffsetsConsumer._commit = commit_slowly  # type: ignore[method-assign]

    async def handle(event: Any) -> Any:
        offset = event.message.offset
        with out.open("a") as handled:
            handled.write(f"{offset}\n")
        return looked.wait() if offset == slow and not slow_commit else delivered()

    handled_agent(app, topic, "handle", handle, Settling(limit=1000))

    app.main()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    slow_commit = "--slow-commit" in sys.argv
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    main(args[0], args[1], args[2], Path(args[3]), int(args[4]), int(args[5]), slow_commit)
