"""Long-running processes: ``gun-hub hub``, ``gun-hub view``, ``gun-hub adapter``,
``gun-hub partner-sim``."""

from __future__ import annotations

import asyncio
import signal
import tempfile
from collections.abc import Collection, Sequence
from pathlib import Path

import typer

from gun_contract.kafka.acls import adapter_topics
from gun_contract.kafka.admin import (
    check_partition_counts,
    check_topic_configs,
    ensure_topics,
    wait_for_cluster,
)
from gun_contract.kafka.client import from_settings
from gun_contract.kafka.refusals import check_coordinators
from gun_contract.listening import PortNotBound
from gun_contract.logs import configure_logging
from gun_contract.private_files import make_private_folder
from gun_contract.security.keystore import KeystoreError
from gun_contract.settings import Settings
from gun_contract.stop_deadline import STOPPED_SHORT, StopDeadline, stopping
from gun_contract.topics import TopicSpec
from gun_hub.cli.kafka import registry_for, routing_for
from gun_hub.cli.startup import (
    CANNOT_START,
    RefusalOnRecord,
    cannot_start,
    not_authorised,
    ports_free,
    reach_cluster,
    refused_rights_stop_the_start,
    run_on_the_cluster,
    settings_or_exit,
)
from gun_hub.domain.risk import RiskRulesError, load_risk_rules
from gun_hub.security.factory import build_envelope, replay_memory
from gun_hub.security.web_auth import AccessConfigError
from gun_hub.web import WebConfigError


def prepare_cluster(
    settings: Settings,
    extra: Sequence[TopicSpec] = (),
    own: Collection[str] | None = None,
    *,
    wait_s: float = 60.0,
    groups: Sequence[str] = (),
    transactional_ids: Sequence[str] = (),
) -> None:
    """Wait for the cluster and create the topics (``extra``: the hub's changelogs), or on
    a secured cluster check them; a cluster that does not answer within ``wait_s``, or
    topics nothing can run on, stop the start in one sentence (exit 2).

    ``own``: the topics whose settings this component checks on a secured cluster, those
    its principal may DescribeConfigs (acls.py); None: every topic. ``groups`` and
    ``transactional_ids``: those the component will use, which its principal must be
    granted (a refusal stops the start naming the one refused)."""

    async def prepare() -> None:
        connect = from_settings(settings.kafka)
        await reach_cluster(
            settings, lambda seconds: wait_for_cluster(connect, timeout_s=seconds), timeout_s=wait_s
        )
        if settings.kafka.security_protocol == "SASL_SSL":
            # On a secured cluster topics are created by the admin (secure-setup), who
            # may have left a setting the contract relies on at the broker's default.
            specs = [*registry_for(settings).specs(), *extra]
            await check_partition_counts(connect, specs, settings.kafka.partitions)
            await check_topic_configs(
                connect, [spec for spec in specs if own is None or spec.name in own]
            )
            await check_coordinators(connect, groups, transactional_ids)
            return
        await ensure_topics(
            connect,
            registry_for(settings),
            settings.kafka.partitions,
            settings.kafka.replication_factor,
            extra,
        )

    run_on_the_cluster(settings, prepare())


def _listeners(settings: Settings) -> list[tuple[str, str, int, str]]:
    """The trader and officer listeners, as ``ports_free`` takes them."""
    web = settings.web
    return [
        ("trader listener", web.trader_host, web.trader_port, "GUN_HUB_WEB__TRADER_PORT"),
        ("officer listener", web.officer_host, web.officer_port, "GUN_HUB_WEB__OFFICER_PORT"),
    ]


def hub() -> None:
    """Run the hub worker (faust): intake, routing, correlation, decisions."""
    from gun_hub.cli.hub_worker import HubWorker, log_expected_ends_without_traceback
    from gun_hub.runtime.app import build_hub, hub_coordinated, table_changelogs
    from gun_hub.runtime.due_keys import DueKeysInUse

    settings = settings_or_exit()
    configure_logging(settings.log_level, component="hub", log_format=settings.log_format)
    routing = routing_for(settings)  # a bad routing table stops here with its reason
    try:
        load_risk_rules(settings.hub.risk_rules, routing.authorities)
    except RiskRulesError as err:
        cannot_start(str(err))
    ports_free(
        ("hub's web server", settings.hub.web_host, settings.hub.web_port, "GUN_HUB_HUB__WEB_PORT"),
        # A worker with the view off opens neither listener: their ports may be held by
        # the view in a process of its own on this host (review stop 39-O, O3).
        *(_listeners(settings) if settings.ops.view_enabled else []),
    )
    groups, transactional_ids = hub_coordinated(settings)
    prepare_cluster(
        settings, table_changelogs(settings), groups=groups, transactional_ids=transactional_ids
    )
    # 0700 when missing: the operations view and the tables' local state are in it.
    make_private_folder(settings.hub.data_dir)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        built = build_hub(settings)
    except (KeystoreError, WebConfigError, AccessConfigError, DueKeysInUse) as err:  # names it
        typer.echo(f"cannot start: {err}", err=True)
        raise typer.Exit(2) from None

    def last_words() -> tuple[int, str | None]:
        """A refusal of rights is still said in its sentence (exit 2), however the stop
        ended."""
        refused = worker.refusal()
        if refused is None:
            return STOPPED_SHORT, None
        return CANNOT_START, f"cannot start: {not_authorised(settings, refused)}"

    worker = HubWorker(
        built.app,
        loop=loop,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
        deadline=StopDeadline("the hub worker", settings.stop_within_s, last_words),
    )
    log_expected_ends_without_traceback()
    try:
        worker.execute_from_commandline()
    except SystemExit:
        # A refusal of the principal's rights surfaces inside faust (a changelog or the
        # leader topic created, a transactional producer initialised, a partition taken
        # by the publisher): a fault of the configuration, said as one.
        refused = worker.refusal()
        if refused is not None:
            cannot_start(not_authorised(settings, refused))
        raise


def view() -> None:
    """Run the operations view without faust: the status and statistics view fed from the
    topics, the trader and officer listeners (GUN_HUB_WEB__*), probes on
    GUN_HUB_OPS__VIEW_WEB_PORT; beside hub workers run with GUN_HUB_OPS__VIEW_ENABLED=false
    (ADR 0015)."""
    from gun_hub.runtime.view_process import build_view_process

    settings = settings_or_exit()
    configure_logging(settings.log_level, component="view", log_format=settings.log_format)
    routing_for(settings)  # a bad routing table stops here with its reason
    ports_free(
        (
            "probes listener",
            settings.ops.view_web_host,
            settings.ops.view_web_port,
            "GUN_HUB_OPS__VIEW_WEB_PORT",
        ),
        *_listeners(settings),
    )
    prepare_cluster(settings)
    refusal = RefusalOnRecord(settings)

    async def run() -> None:
        # Built in the running loop: aiokafka's clients bind to it.
        process = build_view_process(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        deadline = StopDeadline("the operations view", settings.stop_within_s, refusal.last_words)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping(deadline, stop.set))
        try:
            with refusal.recording():
                await process.run(stop, deadline.start)
        finally:
            deadline.start()

    try:
        with refused_rights_stop_the_start(settings):
            asyncio.run(run())
    except (KeystoreError, WebConfigError, AccessConfigError, PortNotBound) as err:
        cannot_start(str(err))  # each names what is at fault (the file, the setting)


def adapter(
    authority: str = typer.Argument(help="Authority id, as in the routing table (dgal, ...)."),
) -> None:
    """Run one authority's adapter: its requests in, the partner asked, answers out."""
    from adapters.base import load_adapter
    from adapters.base.pending import PendingQueueInUse
    from adapters.base.runner import AdapterRunner

    settings = settings_or_exit()
    configure_logging(
        settings.log_level, component=f"adapter.{authority}", log_format=settings.log_format
    )
    try:
        spec = load_adapter(authority)
    except LookupError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    topics = registry_for(settings)
    prepare_cluster(settings, own=adapter_topics(topics, authority))

    # The runner tells the replay memory its confirmed commits: an id is forgotten only
    # once no partition can be read again from before a copy of it (ADR 0008).
    replay = replay_memory(
        settings.security, authority, topics, partitions=settings.kafka.partitions
    )
    try:
        envelope = build_envelope(settings.security, authority, topics, replay)
    except KeystoreError as err:  # names the key file at fault
        typer.echo(f"cannot start: {err}", err=True)
        raise typer.Exit(2) from None

    refusal = RefusalOnRecord(settings)

    async def run() -> None:
        runner = AdapterRunner(
            spec,
            settings,
            topics,
            envelope,
            spec.partner(settings.adapter),
            replay_memory=replay,
        )
        loop = asyncio.get_running_loop()
        deadline = StopDeadline(
            f"the {authority} adapter", settings.stop_within_s, refusal.last_words
        )
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping(deadline, runner.stop))
        try:
            with refusal.recording():
                await runner.run(ending=deadline.start)
        finally:
            deadline.start()

    try:
        with refused_rights_stop_the_start(settings):
            asyncio.run(run())
    except (KeystoreError, PendingQueueInUse, PortNotBound) as err:  # no state key, a
        # replica's file in use by another, the probes' port taken: the message names the
        # file or the setting
        cannot_start(str(err))


def partner_sim(
    authority: str = typer.Argument(help="Authority whose partner system to simulate."),
    documents: Path = typer.Option(..., exists=True, dir_okay=False, help="Documents file."),
    port: int = typer.Option(8701, help="HTTP port."),
    host: str = typer.Option("127.0.0.1", help="HTTP address."),
    db: Path | None = typer.Option(None, help="SQLite ledger (default: a fresh temp file)."),
) -> None:
    """Run a simulated partner system (its own documents, ledger and HTTP API)."""
    from aiohttp import web

    from partner_sim.documents import load_documents
    from partner_sim.server import build_app
    from partner_sim.store import LedgerStore

    settings = settings_or_exit()
    configure_logging(
        settings.log_level, component=f"partner-sim.{authority}", log_format=settings.log_format
    )
    try:
        loaded = load_documents(documents)
    except ValueError as err:
        typer.echo(f"{documents}: {err}", err=True)
        raise typer.Exit(2) from None
    if db is None:
        db = Path(tempfile.mkdtemp(prefix=f"gun-partner-{authority}-")) / "ledger.sqlite"
    store = LedgerStore(db)
    store.load(loaded)
    typer.echo(
        f"partner system {authority}: {len(loaded)} documents, ledger {db}, http://{host}:{port}",
        err=True,
    )
    web.run_app(build_app(store), host=host, port=port, print=None, access_log=None)


def register(app: typer.Typer) -> None:
    app.command()(hub)
    app.command()(view)
    app.command()(adapter)
    app.command("partner-sim")(partner_sim)
