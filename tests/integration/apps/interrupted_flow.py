"""A faust worker on the hub's runtime whose flow is interrupted as a rebalance does.

Run as ``python -m tests.integration.apps.interrupted_flow BOOTSTRAP TOPIC GROUP OUT
INTERRUPT_AT BUFFER [--stock] [--seek-to-committed [--commit-first]]``. It handles every
record of TOPIC, appending each handled offset to OUT; when it first handles offset
INTERRUPT_AT it suspends faust's flow for a moment and clears the agents' queues (BUFFER
records deep), exactly as faust's own ``on_partitions_revoked`` does, but keeps the
partition (no seek follows). ``--stock`` runs plain faust instead of HubApp.
``--seek-to-committed``: the partition is then sought to its committed offset, as faust
does when a rebalance gives it back, with no offset watchdog and no commit before (a
worker's first seconds), or with ``--commit-first`` what was handled before INTERRUPT_AT
committed first (the offset committed is written beside OUT, in OUT.committed).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import faust

from gun_hub.runtime.faust_app import HubApp, handled_agent, watch_offsets
from tests.integration.apps import worker_app


def main(
    bootstrap: str,
    topic_name: str,
    group: str,
    out: Path,
    interrupt_at: int,
    buffer: int,
    stock: bool,
    seek_to_committed: bool = False,
    commit_first: bool = False,
) -> None:
    app_class = faust.App if stock else HubApp
    app = worker_app(
        app_class,
        group,
        bootstrap,
        out,
        # Nothing committed before the seek, as in a worker's first seconds.
        broker_commit_interval=3600.0 if seek_to_committed else 0.5,
        stream_buffer_maxsize=buffer,
    )
    topic = app.topic(topic_name, value_serializer="raw", key_serializer="raw")
    interrupted = False

    async def handle(event: Any) -> None:
        nonlocal interrupted
        offset = event.message.offset
        await asyncio.sleep(0.002)  # the work: the fetcher runs ahead and fills the queue
        with out.open("a") as handled:
            handled.write(f"{offset}\n")
        if offset == interrupt_at and not interrupted:
            interrupted = True
            if commit_first:
                # Up to the records handled before this one. The commit point moves on
                # from the partition's start, which the watchdog learns in the hub.
                consumer = app.consumer
                await consumer.learn_starts(consumer.assignment())
                await consumer.commit()
                committed = [consumer._committed_offset.get(tp) for tp in consumer.assignment()]
                out.with_suffix(".committed").write_text(f"{committed}\n")
            app.flow_control.suspend()  # what on_partitions_revoked does first

            async def resume() -> None:
                await asyncio.sleep(0.5)
                app.flow_control.clear()
                if seek_to_committed:
                    await app.consumer.perform_seek()  # what the next assignment does
                app.flow_control.resume()

            # Held: a task the loop drops once done would be collected before it ran.
            resuming.append(asyncio.ensure_future(resume()))

    resuming: list[asyncio.Future[None]] = []
    handled_agent(app, topic, "handle", handle)
    if not stock and not seek_to_committed:
        watch_offsets(app, bootstrap, {topic_name}, interval_s=1.0)
    app.main()


if __name__ == "__main__":
    args = sys.argv[1:]
    stock, seek = "--stock" in args, "--seek-to-committed" in args
    commit_first = "--commit-first" in args
    args = [a for a in args if not a.startswith("--")]
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    main(
        args[0], args[1], args[2], Path(args[3]), int(args[4]), int(args[5]),
        stock, seek, commit_first,
    )  # fmt: skip
