"""``gun-hub kafka start|stop|status`` and ``gun-hub topics create|list``."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import typer

from gun_hub.kafka.acls import acl_plan, apply_acls
from gun_hub.kafka.admin import ensure_topics
from gun_hub.kafka.client import from_settings
from gun_hub.kafka.local_broker import BrokerError, LocalBroker
from gun_hub.routing import RoutingTable, RoutingTableError, load_routing_table
from gun_hub.security.entitlements import parties
from gun_hub.settings import Settings, load_settings
from gun_hub.topics import TopicRegistry, topic_registry

app = typer.Typer(help="The embedded local Kafka broker (no Docker needed).", no_args_is_help=True)
topics_app = typer.Typer(help="The hub's topics, from the topic registry.", no_args_is_help=True)


def routing_for(settings: Settings) -> RoutingTable:
    """The validated routing table, or a clear message and exit code 2."""
    try:
        return load_routing_table(settings.hub.routing_table, settings.hub.extra_routes)
    except RoutingTableError as err:
        typer.echo(f"cannot start: {err}", err=True)
        raise typer.Exit(2) from None


def registry_for(settings: Settings) -> TopicRegistry:
    return topic_registry(settings.kafka.topic_prefix, routing_for(settings).authorities)


def local_broker(settings: Settings) -> LocalBroker:
    return LocalBroker(settings.broker, settings.kafka.partitions, parties(registry_for(settings)))


@app.command()
def start() -> None:
    """Fetch the jars once, format storage once, start the broker and wait until it answers."""
    settings = load_settings()
    broker = local_broker(settings)
    if (pid := broker.running_pid()) is not None:
        typer.echo(f"Kafka is already running (pid {pid}) on {broker.bootstrap_servers}")
        return
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


@app.command()
def stop() -> None:
    """Shut the broker down cleanly (SIGTERM, controlled shutdown)."""
    settings = load_settings()
    broker = local_broker(settings)
    if broker.stop():
        typer.echo("Kafka stopped")
    else:
        typer.echo("Kafka was not running")


@app.command()
def status() -> None:
    """Say whether the local broker runs, where, and where its log is."""
    settings = load_settings()
    state = local_broker(settings).status()
    typer.echo(f"Kafka is {state.describe()}")
    if not state.running:
        raise typer.Exit(3)


@app.command("secure-setup")
def secure_setup() -> None:
    """On the secured broker: create the topics as admin, grant each principal its ACLs,
    and write each principal's client settings to <home>/secure/<principal>.env (0600)."""
    settings = load_settings()
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
    try:
        apply_acls(broker, grants)
    except BrokerError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    for principal in parties(registry):
        path = write_client_env(broker, principal)
        typer.echo(f"{principal}: ACLs granted; client settings in {path}")


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
    settings = load_settings()
    created = asyncio.run(
        ensure_topics(
            from_settings(settings.kafka),
            registry_for(settings),
            settings.kafka.partitions,
            settings.kafka.replication_factor,
        )
    )
    typer.echo(f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else ""))


@topics_app.command("list")
def list_topics() -> None:
    """Print the registry: name, producer, consumer, payload."""
    for spec in registry_for(load_settings()).specs():
        typer.echo(f"{spec.name:<28} {spec.producer:>18} -> {spec.consumer:<28} {spec.payload}")
