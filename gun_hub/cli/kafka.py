"""``gun-hub kafka start|stop|status`` and ``gun-hub topics create|list``."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from gun_contract.kafka.acls import acl_plan
from gun_contract.kafka.admin import ensure_topics
from gun_contract.kafka.client import from_settings
from gun_contract.kafka.quotas import quota_plan
from gun_contract.security.entitlements import parties
from gun_contract.settings import Settings
from gun_contract.topics import TopicRegistry, topic_registry
from gun_hub.cli.startup import cannot_start, run_on_the_cluster, settings_or_exit
from gun_hub.cli.tooling import require_tooling
from gun_hub.domain.routing import RoutingTable, RoutingTableError, load_routing_table

if TYPE_CHECKING:
    from gun_tools.local_broker import LocalBroker, LocalCluster

app = typer.Typer(
    help="The embedded local Kafka broker, or a local cluster (no Docker needed).",
    no_args_is_help=True,
)
topics_app = typer.Typer(help="The hub's topics, from the topic registry.", no_args_is_help=True)


@app.callback()
def _the_broker_is_tooling() -> None:
    # The embedded broker is development tooling: the image runs against a real cluster.
    require_tooling("kafka")


def routing_for(settings: Settings) -> RoutingTable:
    """The validated routing table, or a clear message and exit code 2."""
    try:
        return load_routing_table(settings.hub.routing_table, settings.hub.extra_routes)
    except RoutingTableError as err:
        cannot_start(str(err))


def registry_for(settings: Settings) -> TopicRegistry:
    return topic_registry(settings.kafka.topic_prefix, routing_for(settings).authorities)


def local_broker(settings: Settings) -> LocalBroker:
    from gun_tools.local_broker import LocalBroker

    return LocalBroker(settings.broker, settings.kafka.partitions, parties(registry_for(settings)))


def local_cluster(settings: Settings, nodes: int) -> LocalCluster:
    """The local cluster of ``nodes`` nodes, or a clear message and exit code 2."""
    from gun_tools.local_broker import BrokerError, LocalCluster

    try:
        return LocalCluster(settings.broker, settings.kafka.partitions, nodes)
    except BrokerError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None


def clusters_under_home(settings: Settings) -> list[int]:
    """Node counts of the clusters that have a folder under the broker's home (started
    once), and the configured one: what ``stop`` and ``status`` look at."""
    counts = {settings.broker.nodes} - {1}
    home = settings.broker.home
    for folder in home.glob("cluster-*") if home.is_dir() else ():
        suffix = folder.name.removeprefix("cluster-")
        if folder.is_dir() and suffix.isdigit() and int(suffix) >= 3:
            counts.add(int(suffix))
    return sorted(counts)


_NODES_HELP = (
    "1: the single broker; 3 or more: a local cluster, each node broker and KRaft "
    "controller, replication factor 3, min.insync.replicas 2 "
    "(default: GUN_HUB_BROKER__NODES, 1)"
)


@app.command()
def start(
    nodes: int | None = typer.Option(None, "--nodes", min=1, max=9, help=_NODES_HELP),
) -> None:
    """Fetch the jars once, format storage once, start the broker and wait until it answers."""
    from gun_tools.local_broker import BrokerError

    settings = settings_or_exit()
    count = settings.broker.nodes if nodes is None else nodes
    if nodes is None:
        count = _partly_running_cluster(settings) or count
    if count > 1:
        start_cluster(settings, count)
        return
    broker = local_broker(settings)
    if (pid := broker.running_pid()) is not None:
        typer.echo(f"Kafka is already running (pid {pid}) on {broker.bootstrap_servers}")
        return
    if broker.lost_pid is not None:  # said here, as status would have said it
        typer.echo(
            f"the broker (pid {broker.lost_pid}) had stopped without `kafka stop`; "
            f"its log: {broker.log_file}"
        )
    began = time.monotonic()
    try:
        status = broker.start()
    except BrokerError as err:
        typer.echo(f"Kafka did not start: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"Kafka {settings.broker.kafka_version} started in {time.monotonic() - began:.1f}s: "
        f"{status.describe()}"
    )


def _partly_running_cluster(settings: Settings) -> int | None:
    """The node count of a cluster under the home with a node running: ``start`` alone
    starts its dead nodes again (it ran a single broker beside it, while ``status`` and
    ``stop`` looked at the cluster: operator review of stop 48). A node found stopped
    without ``kafka stop`` is said, as ``status`` would have."""
    from gun_tools.local_broker import BrokerError, LocalCluster

    for count in clusters_under_home(settings):
        try:
            cluster = LocalCluster(settings.broker, settings.kafka.partitions, count)
        except BrokerError:
            continue  # a folder of a cluster these settings cannot run: not this one
        state = cluster.status()
        for node_id, node in enumerate(state.nodes, start=1):
            if node.lost_pid is not None:
                typer.echo(f"node {node_id}: {node.describe()}")
        if state.running_nodes:
            return count
    return None


def start_cluster(settings: Settings, count: int) -> None:
    from gun_tools.local_broker import BrokerError

    cluster = local_cluster(settings, count)
    state = cluster.status()
    if state.running:
        typer.echo(f"Kafka cluster is already {state.describe()}")
        return
    began = time.monotonic()
    try:
        state = cluster.start()
    except BrokerError as err:
        typer.echo(f"Kafka cluster did not start: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"Kafka {settings.broker.kafka_version} cluster started in "
        f"{time.monotonic() - began:.1f}s: {state.describe()}\n"
        f"Clients (also in {cluster.client_env_file}):\n"
        f"  GUN_HUB_KAFKA__BOOTSTRAP_SERVERS={cluster.bootstrap_servers}\n"
        f"  GUN_HUB_KAFKA__REPLICATION_FACTOR={cluster.replication_factor}"
    )


@app.command()
def stop(
    nodes: int | None = typer.Option(
        None,
        "--nodes",
        min=1,
        max=9,
        help="Stop only the single broker (1) or the cluster of this many nodes "
        "(default: whatever runs under GUN_HUB_BROKER__HOME).",
    ),
) -> None:
    """Shut the broker, or every node of a cluster, down cleanly (SIGTERM, controlled
    shutdown)."""
    settings = settings_or_exit()
    stopped = False
    if nodes in (None, 1) and local_broker(settings).stop():
        typer.echo("Kafka stopped")
        stopped = True
    counts = clusters_under_home(settings) if nodes is None else [nodes] if nodes > 1 else []
    for count in counts:
        if local_cluster(settings, count).stop():
            typer.echo(f"Kafka cluster of {count} nodes stopped")
            stopped = True
    if not stopped:
        typer.echo("Kafka was not running")


@app.command()
def status(
    nodes: int | None = typer.Option(
        None,
        "--nodes",
        min=1,
        max=9,
        help="Report only the single broker (1) or the cluster of this many nodes "
        "(default: the configured one and any other that runs under GUN_HUB_BROKER__HOME).",
    ),
) -> None:
    """Say whether the local broker (or each node of a cluster) runs, where, and where its
    log is. Exit code 3: nothing runs; 4: a cluster runs only partly."""
    settings = settings_or_exit()
    configured = settings.broker.nodes if nodes is None else nodes
    # (line, something runs, the configured one): what runs is shown, else the configured.
    reports: list[tuple[str, bool, bool]] = []
    partly = False
    if nodes in (None, 1):
        state = local_broker(settings).status()
        reports.append((f"Kafka is {state.describe()}", state.running, configured == 1))
    counts = clusters_under_home(settings) if nodes is None else [nodes] if nodes > 1 else []
    for count in counts:
        cluster_state = local_cluster(settings, count).status()
        up = cluster_state.running_nodes > 0
        reports.append((f"Kafka cluster is {cluster_state.describe()}", up, count == configured))
        partly |= up and not cluster_state.running
    running = any(up for _, up, _ in reports)
    shown = [line for line, up, _ in reports if up] or [line for line, _, mine in reports if mine]
    if not running and _answers(settings.broker.host, settings.broker.port):
        # "not running" while a Kafka of another folder (Compose, another checkout, a demo
        # kept with --keep-broker) answers there read as a free port (operator review of
        # stop 48): the broker of this folder does not run, something else listens.
        shown.append(
            f"but something listens on {settings.broker.host}:{settings.broker.port}: a "
            "Kafka not started from this folder? (its clients can use it as it is)"
        )
    typer.echo("\n".join(shown))
    if not running:
        raise typer.Exit(3)
    if partly:
        raise typer.Exit(4)


def _answers(host: str, port: int) -> bool:
    """Whether something accepts a connection on ``host:port`` (within half a second)."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@app.command("secure-setup")
def secure_setup() -> None:
    """On the secured broker: create the topics as admin, grant each principal its ACLs
    and set the client quotas of each party outside the hub, and write each principal's
    client settings to <home>/secure/<principal>.env (0600)."""
    from gun_tools.local_broker import BrokerError, apply_acls, apply_quotas

    settings = settings_or_exit()
    broker = local_broker(settings)
    if not broker.secure or broker.running_pid() is None:
        typer.echo(
            "start the secured broker first: GUN_HUB_BROKER__SECURE=true gun-hub kafka start",
            err=True,
        )
        raise typer.Exit(2)
    registry = registry_for(settings)
    asyncio.run(
        ensure_topics(
            broker.client_config("admin"),
            registry,
            settings.kafka.partitions,
            settings.kafka.replication_factor,
        )
    )
    grants = acl_plan(registry, settings.hub.app_id, settings.ops.clearance_group)
    quotas = {quota.principal: quota for quota in quota_plan(registry)}
    try:
        apply_acls(broker, grants)
        apply_quotas(broker, list(quotas.values()))
    except BrokerError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    for principal in parties(registry):
        path = write_client_env(broker, principal)
        limited = f"; quotas {quotas[principal].config()}" if principal in quotas else ""
        typer.echo(f"{principal}: ACLs granted{limited}; client settings in {path}")


def write_client_env(broker: LocalBroker, principal: str) -> Path:
    config = broker.client_config(principal)
    path = broker.secure_dir / f"{principal}.env"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(
            f"GUN_HUB_KAFKA__BOOTSTRAP_SERVERS={config.bootstrap_servers}\n"
            "GUN_HUB_KAFKA__SECURITY_PROTOCOL=SASL_SSL\n"
            f"GUN_HUB_KAFKA__SASL_USERNAME={principal}\n"
            f"GUN_HUB_KAFKA__SASL_PASSWORD={config.password}\n"
            f"GUN_HUB_KAFKA__SSL_CAFILE={config.ca_file}\n"
        )
    return path


@topics_app.command("create")
def create_topics() -> None:
    """Create every topic of the registry that does not exist yet."""
    settings = settings_or_exit()
    created = run_on_the_cluster(
        settings,
        ensure_topics(
            from_settings(settings.kafka),
            registry_for(settings),
            settings.kafka.partitions,
            settings.kafka.replication_factor,
        ),
    )
    typer.echo(f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else ""))


@topics_app.command("list")
def list_topics() -> None:
    """Print the registry: name, producer, consumer, payload."""
    for spec in registry_for(settings_or_exit()).specs():
        typer.echo(f"{spec.name:<28} {spec.producer:>18} -> {spec.consumer:<28} {spec.payload}")
