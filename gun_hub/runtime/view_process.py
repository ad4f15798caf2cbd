"""The operations view as a process of its own: ``gun-hub view`` (issue 12, ADR 0015).

A hub worker with ``GUN_HUB_OPS__VIEW_ENABLED=false`` decides and serves its probes only;
this process serves the rest of what operators and traders ask, without faust agents:

* the feed (ops/feed.py) reading every partition of the status, facts, dead-letter and
  health topics into its own SQLite view (``GUN_HUB_OPS__VIEW_DATA_DIR``);
* the trader and officer listeners answering from it (the ``GUN_HUB_WEB__*`` settings,
  as on a hub worker), the officer listener with its whole desk: the dead letters (read
  back by position with its own log reader, audited and redriven with its own producer)
  and the rollout modes (followed from ``hub.rollout`` as every worker follows them, set
  with the same producer). Both desks seal with the hub's state key: this process is the
  hub party's, as the worker is;
* the lag the hub's monitor publishes (ops/lag_follower.py), for the dashboard;
* ``/livez``, ``/readyz`` and ``/metrics`` (``GUN_HUB_OPS__VIEW_WEB_PORT``): ready once
  the view has read the topics up to where they ended at start, the rollout modes are
  read and the producer is up.

Its cost (reading every status and fact record) is then paid once, whatever the number of
hub workers, instead of once per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from gun_contract.effects import OutgoingRecord
from gun_contract.kafka.client import from_settings, producer_options, start_or_close
from gun_contract.kafka.log_reader import LogReader
from gun_contract.private_files import make_private_folder
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import StateCipher
from gun_contract.settings import Settings
from gun_contract.topics import topic_registry
from gun_hub.domain.rollout import RolloutBoard
from gun_hub.domain.routing import load_routing_table
from gun_hub.ops.feed import OpsFeed
from gun_hub.ops.lag_follower import LagFollower
from gun_hub.ops.lag_metrics import OpsState, register_ops_metrics
from gun_hub.ops.view import FeedTopics, OpsView
from gun_hub.runtime.rollout_follower import RolloutFollower
from gun_hub.security.factory import build_heartbeat_gate
from gun_hub.web import HubWeb, build_web, confidential_authorities
from gun_hub.web.dead_letters import DeadLetterDesk
from gun_hub.web.listeners import Listener
from gun_hub.web.probes import probes_app
from gun_hub.web.rollout import RolloutDesk

log = logging.getLogger(__name__)

VIEW_FILE = "ops-view.sqlite3"


@dataclass
class ViewProcess:
    """What ``gun-hub view`` runs; nothing connects until :meth:`run`. Built inside the
    running event loop (aiokafka's clients bind to it)."""

    view: OpsView
    feed: OpsFeed
    rollout: RolloutFollower
    lags: LagFollower
    log_reader: LogReader
    producer: AIOKafkaProducer
    web: HubWeb | None
    probes: Listener
    producing: asyncio.Event

    async def run(self, stop: asyncio.Event, ending: Callable[[], None] = lambda: None) -> None:
        """Serve until ``stop`` is set; a reader that ends (the broker lost for good, the
        view's database gone) ends the process with its error, for its supervisor to
        restart it (the view resumes from the offsets it recorded)."""
        await self.probes.start()
        readers: list[asyncio.Task[None]] = []
        try:
            await start_or_close(self.producer)
            self.producing.set()
            readers = [
                asyncio.create_task(self.feed.run(), name="operations view feed"),
                asyncio.create_task(self.rollout.run(), name="rollout follower"),
                asyncio.create_task(self.lags.run(), name="lag follower"),
            ]
            if self.web is not None:
                await self.web.start()
            stopping = asyncio.create_task(stop.wait(), name="stop")
            done, _ = await asyncio.wait([stopping, *readers], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            for task in done:
                if task is not stopping:
                    task.result()  # its error, if it failed
                    raise RuntimeError(f"{task.get_name()} ended")
        finally:
            ending()  # the process's stop deadline (stop_deadline.py), before what waits
            for task in readers:
                task.cancel()
            for task in readers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self.web is not None:
                await self.web.stop()
            self.producing.clear()
            await self.producer.stop()
            await self.log_reader.close()
            self.view.close()  # its connection is the loop thread's
            await self.probes.stop()


def build_view_process(settings: Settings) -> ViewProcess:
    """The view process for ``settings`` (the keys, web and ops settings a hub worker
    reads); raises what names a configuration fault (keys, web settings)."""
    routing = load_routing_table(settings.hub.routing_table, settings.hub.extra_routes)
    topics = topic_registry(settings.kafka.topic_prefix, routing.authorities)
    connect = from_settings(settings.kafka)
    state = OpsState(expected_partners=frozenset(routing.authorities))
    # The lag series are the measuring worker's; this process exposes the partners' health.
    register_ops_metrics(state, lag=False)
    # 0700 when missing: what SQLite would make it, had it been first (review stop 39-C).
    make_private_folder(settings.ops.view_data_dir)
    view = OpsView(
        settings.ops.view_data_dir / VIEW_FILE,
        FeedTopics(
            status=topics.status, facts=topics.facts, dlq=topics.dlq, health=topics.ops_health
        ),
    )
    feed = OpsFeed(
        connect,
        view,
        state,
        heartbeats=build_heartbeat_gate(settings, topics),
        retention_s=settings.ops.view_retention_days * 86400.0,
        gather_ms=settings.ops.view_gather_ms,
    )
    # The operator actions and rollout settings are sealed with the hub's state key.
    cipher = StateCipher.load(settings.security.keys_dir, HUB_PARTY)
    rollout = RolloutFollower(connect, topics.rollout, cipher, RolloutBoard())
    log_reader = LogReader(connect)
    # Every action waits for all in-sync replicas: it is audited before it is done.
    producer = AIOKafkaProducer(**producer_options(connect), acks="all", linger_ms=0)
    producing = asyncio.Event()

    async def send_acknowledged(record: OutgoingRecord) -> int:
        metadata = await producer.send_and_wait(
            record.topic,
            record.value,
            key=record.key,
            partition=record.partition,
            headers=record.headers,
        )
        return int(metadata.offset)

    def waiting() -> list[str]:
        """What keeps the process from answering as the topics stand (empty: ready)."""
        awaited = []
        if not feed.caught_up.is_set():
            awaited.append("operations view catching up with the topics")
        if not rollout.caught_up.is_set():
            awaited.append("rollout modes not read yet")
        if not producing.is_set():
            awaited.append("producer not started")
        return awaited

    web = build_web(
        settings.web,
        view.path,
        state,
        confidential_authorities(routing),
        DeadLetterDesk(
            topics,
            log_reader,
            send_acknowledged,
            cipher,
            settings.web.dead_letter_operator_names(),
        ),
        RolloutDesk(
            topics,
            rollout.board,
            rollout.applied,
            send_acknowledged,
            cipher,
            settings.web.rollout_operator_names(),
            settings_read=rollout.caught_up.is_set,
        ),
    )
    if web is None:
        log.warning(
            "gun-hub view: neither GUN_HUB_WEB__TRADER_PORT nor __OFFICER_PORT is set; "
            "the view is kept, nobody can ask it"
        )
    return ViewProcess(
        view=view,
        feed=feed,
        rollout=rollout,
        lags=LagFollower(connect, topics.ops_lag, state),
        log_reader=log_reader,
        producer=producer,
        web=web,
        probes=Listener(
            "probes",
            probes_app(waiting),
            settings.ops.view_web_host,
            settings.ops.view_web_port,
            setting="GUN_HUB_OPS__VIEW_WEB_PORT",
        ),
        producing=producing,
    )
