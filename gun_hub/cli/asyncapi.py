"""``gun-hub asyncapi``: write the AsyncAPI document of every topic, or check it is current."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from gun_contract.resources import schema_path
from gun_contract.settings import Settings
from gun_hub.cli.kafka import registry_for
from gun_hub.cli.startup import settings_or_exit
from gun_hub.cli.tooling import require_tooling

if TYPE_CHECKING:
    from gun_tools.asyncapi import Deployment
    from gun_tools.asyncapi.payloads import JsonObject

# The generator is imported when the command runs, not with the CLI: it builds its
# examples (keys, seals) at import, about a second of CPU that every process started as
# `gun-hub <command>` (hub, adapters, partner systems) paid for nothing.


def deployment_of(settings: Settings) -> Deployment:
    from gun_tools.asyncapi import Deployment

    return Deployment(
        broker=f"{settings.broker.host}:{settings.broker.port}",
        kafka_version=settings.broker.kafka_version,
        partitions=settings.kafka.partitions,
        replication_factor=settings.kafka.replication_factor,
        hub_group=settings.hub.app_id,
        clearance_group=settings.ops.clearance_group,
    )


def document_for(settings: Settings) -> JsonObject:
    """The document of this configuration (the committed one is that of the defaults)."""
    from gun_tools.asyncapi import build_document

    return build_document(registry_for(settings), deployment_of(settings))


def asyncapi(
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Where to write it [default: schemas/asyncapi.yaml]."
    ),
    check: bool = typer.Option(
        False, "--check", help="Write nothing; exit 1 if the file differs from the registry's."
    ),
) -> None:
    """Generate the AsyncAPI 3.0 document of every topic from the topic registry."""
    require_tooling("asyncapi")
    from gun_tools.asyncapi import render_yaml

    path = output or schema_path("asyncapi.yaml")
    document = document_for(settings_or_exit())
    text = render_yaml(document)
    if check:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != text:
            state = "is missing" if current is None else "is out of date"
            typer.echo(f"{path} {state}: regenerate it with `gun-hub asyncapi`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{path} is up to date")
        return
    path.write_text(text, encoding="utf-8")
    typer.echo(
        f"wrote {path}: {len(document['channels'])} channels, "
        f"{len(document['operations'])} operations"
    )


def register(app: typer.Typer) -> None:
    app.command()(asyncapi)
